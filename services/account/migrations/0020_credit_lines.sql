-- Credit lines (account.proto CreditLine): the terms account owns (status, rate, grade,
-- the deciding decision, the cooldown clocks). Limits and balances live in the ledger.
-- cache_version orders what Redis holds of a line: every change bumps it in the same
-- transaction, and the cache refuses a value older than the one it has
-- (services/account/src/line_cache.rs).
CREATE TABLE credit_lines (
    credit_line_id          uuid PRIMARY KEY,
    customer_id             uuid NOT NULL REFERENCES customers (customer_id),
    status                  smallint NOT NULL CHECK (status BETWEEN 1 AND 3),
    status_reason           text NOT NULL DEFAULT '',
    daily_rate              numeric NOT NULL,
    penalty_daily_rate      numeric NOT NULL,
    risk_grade              smallint NOT NULL,
    decision_id             uuid,
    open_time               timestamptz NOT NULL DEFAULT now(),
    update_time             timestamptz NOT NULL DEFAULT now(),
    limit_change_time       timestamptz NOT NULL DEFAULT now(),
    increase_declined_time  timestamptz,
    cache_version           bigint NOT NULL DEFAULT 1
);
-- At most one ACTIVE or FROZEN line per customer.
CREATE UNIQUE INDEX credit_lines_one_open ON credit_lines (customer_id) WHERE status <> 3;
CREATE INDEX credit_lines_latest ON credit_lines (customer_id, open_time DESC);

-- Credit-line applications that did not open a line: declines (for the reapply
-- cooling-off) and MANUAL_REVIEW decisions waiting for an operator.
CREATE TABLE credit_applications (
    decision_id         uuid PRIMARY KEY,
    customer_id         uuid NOT NULL REFERENCES customers (customer_id),
    outcome             smallint NOT NULL,
    reasons             jsonb NOT NULL DEFAULT '[]',
    offered_limit_minor bigint,
    requested_limit_minor bigint,
    daily_rate          numeric,
    risk_grade          smallint NOT NULL DEFAULT 0,
    reapply_after_date  date,
    expire_time         timestamptz,
    resolved            boolean NOT NULL DEFAULT false,
    create_time         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX credit_applications_customer ON credit_applications (customer_id, create_time DESC);

-- Quotes (QuoteLoan): the priced terms Borrow may lock with quote_id until expire_time.
CREATE TABLE loan_quotes (
    quote_id            uuid PRIMARY KEY,
    customer_id         uuid NOT NULL REFERENCES customers (customer_id),
    principal_minor     bigint NOT NULL,
    term_months         integer NOT NULL,
    repayment_method    smallint NOT NULL,
    daily_rate          numeric NOT NULL,
    penalty_daily_rate  numeric NOT NULL,
    business_date       date NOT NULL,
    expire_time         timestamptz NOT NULL
);
CREATE INDEX loan_quotes_expire ON loan_quotes (expire_time);

-- Drawdowns account asked the ledger for: the loan id derived from the request and the
-- declared purpose (the ledger keeps the money, account the purpose).
CREATE TABLE drawdowns (
    loan_id      uuid PRIMARY KEY,
    customer_id  uuid NOT NULL REFERENCES customers (customer_id),
    purpose      smallint NOT NULL,
    decision_id  uuid,
    create_time  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX drawdowns_customer ON drawdowns (customer_id, create_time DESC);
