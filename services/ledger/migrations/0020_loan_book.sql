-- The loan book (DESIGN §3-4, docs/ledger.md "Loan book"): credit lines, loans and their
-- instalments. Every row carries customer_id, the partition key (DESIGN §11): a
-- drawdown, repayment or accrual touches one customer's rows plus platform
-- sub-accounts.

-- One ledger credit line per customer: its credit_line_available account and limit.
-- limit_minor = available + utilised at every commit (VerifyIntegrity checks it); a
-- closed line keeps limit = utilised with available 0 (ledger.proto).
CREATE TABLE credit_lines (
    customer_id     uuid PRIMARY KEY,
    credit_line_id  uuid NOT NULL,
    account_id      uuid NOT NULL UNIQUE REFERENCES accounts (id),
    limit_minor     bigint NOT NULL CHECK (limit_minor >= 0),
    closed          boolean NOT NULL DEFAULT false,
    open_time       timestamptz NOT NULL DEFAULT now(),
    update_time     timestamptz NOT NULL DEFAULT now()
);

-- Loans. status: 1 ACTIVE, 2 PAID_OFF, 3 WRITTEN_OFF (LoanStatus numbers);
-- repayment_method: RepaymentMethod numbers. Rates are exact decimals.
CREATE TABLE loans (
    -- Listing order (newest first) and the page-token key.
    seq                     bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    loan_id                 uuid PRIMARY KEY,
    customer_id             uuid NOT NULL,
    credit_line_id          uuid NOT NULL,
    status                  smallint NOT NULL CHECK (status BETWEEN 1 AND 3),
    principal_minor         bigint NOT NULL CHECK (principal_minor > 0),
    term_months             integer NOT NULL CHECK (term_months BETWEEN 1 AND 60),
    repayment_method        smallint NOT NULL CHECK (repayment_method IN (1, 2)),
    daily_rate              numeric NOT NULL CHECK (daily_rate > 0),
    penalty_daily_rate      numeric NOT NULL CHECK (penalty_daily_rate > 0),
    apr                     numeric NOT NULL,
    disbursement_date       date NOT NULL,
    disburse_time           timestamptz NOT NULL DEFAULT now(),
    principal_account_id    uuid NOT NULL REFERENCES accounts (id),
    interest_account_id     uuid NOT NULL REFERENCES accounts (id),
    penalty_account_id      uuid NOT NULL REFERENCES accounts (id),
    paid_off_date           date,
    written_off_date        date,
    write_off_reason        smallint NOT NULL DEFAULT 0,
    written_off_minor       bigint,
    update_time             timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX loans_customer ON loans (customer_id, seq DESC);
CREATE INDEX loans_active ON loans (loan_id) WHERE status = 1;

-- The schedule and each instalment's progress (fen). interest_minor is the planned
-- interest; interest_accrued what end of day has accrued on it so far.
CREATE TABLE installments (
    loan_id             uuid NOT NULL REFERENCES loans (loan_id),
    sequence            integer NOT NULL CHECK (sequence >= 1),
    customer_id         uuid NOT NULL,
    due_date            date NOT NULL,
    period_days         integer NOT NULL,
    principal_minor     bigint NOT NULL CHECK (principal_minor >= 0),
    interest_minor      bigint NOT NULL CHECK (interest_minor >= 0),
    principal_paid      bigint NOT NULL DEFAULT 0 CHECK (principal_paid >= 0),
    interest_accrued    bigint NOT NULL DEFAULT 0 CHECK (interest_accrued >= 0),
    interest_paid       bigint NOT NULL DEFAULT 0 CHECK (interest_paid >= 0),
    penalty_charged     bigint NOT NULL DEFAULT 0 CHECK (penalty_charged >= 0),
    penalty_paid        bigint NOT NULL DEFAULT 0 CHECK (penalty_paid >= 0),
    settled_date        date,
    PRIMARY KEY (loan_id, sequence),
    CHECK (principal_paid <= principal_minor),
    CHECK (interest_paid <= interest_accrued),
    CHECK (penalty_paid <= penalty_charged)
);
CREATE INDEX installments_due ON installments (due_date) WHERE settled_date IS NULL;

-- Repayments applied, with their allocation (the Repayment message, encoded).
CREATE TABLE repayments (
    repayment_id        uuid PRIMARY KEY,
    loan_id             uuid NOT NULL REFERENCES loans (loan_id),
    customer_id         uuid NOT NULL,
    amount_minor        bigint NOT NULL CHECK (amount_minor > 0),
    value_date          date NOT NULL,
    repayment           bytea NOT NULL,
    create_time         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX repayments_loan ON repayments (loan_id, create_time);
