-- The general ledger: TigerBeetle's model on Postgres (DESIGN §3, docs/ledger.md).
-- Money is bigint fen; sums over many rows are computed as numeric and checked back
-- into bigint by the code that reads them.

-- The one business date of the ledger. Its first value is today's date in the
-- lender's time zone (Asia/Shanghai) at the moment this migration runs; only end of
-- day advances it.
CREATE TABLE business_date (
    singleton            boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    business_date        date NOT NULL,
    time_zone            text NOT NULL DEFAULT 'Asia/Shanghai',
    last_end_of_day_time timestamptz,
    end_of_day_running   boolean NOT NULL DEFAULT false
);
INSERT INTO business_date (business_date)
VALUES ((now() AT TIME ZONE 'Asia/Shanghai')::date);

-- Accounts. customer_id is the partition key (NULL for platform accounts, which are
-- split into sub-accounts 0..63 instead). The four balances are kept here and moved only
-- by transfers, under a row lock (see store/transfers.rs for the locking order).
CREATE TABLE accounts (
    id                             uuid PRIMARY KEY,
    code                           integer NOT NULL,
    currency                       text NOT NULL,
    customer_id                    uuid,
    loan_id                        uuid,
    sub_account                    integer NOT NULL DEFAULT 0 CHECK (sub_account BETWEEN 0 AND 63),
    linked                         boolean NOT NULL DEFAULT false,
    debits_must_not_exceed_credits boolean NOT NULL DEFAULT false,
    credits_must_not_exceed_debits boolean NOT NULL DEFAULT false,
    debits_posted                  bigint NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted                 bigint NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending                 bigint NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending                bigint NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    create_time                    timestamptz NOT NULL DEFAULT now(),
    CHECK (NOT (debits_must_not_exceed_credits AND credits_must_not_exceed_debits)),
    -- The balance flags, as a last line of defence under the code's own check. numeric
    -- so the sum itself can never overflow.
    CHECK (NOT debits_must_not_exceed_credits
           OR debits_posted::numeric + debits_pending <= credits_posted),
    CHECK (NOT credits_must_not_exceed_debits
           OR credits_posted::numeric + credits_pending <= debits_posted)
);
-- The chart-of-accounts key: one account per (code, currency, customer, loan, sub-account).
CREATE UNIQUE INDEX accounts_key
    ON accounts (code, currency, customer_id, loan_id, sub_account) NULLS NOT DISTINCT;
CREATE INDEX accounts_customer ON accounts (customer_id) WHERE customer_id IS NOT NULL;

-- Transfers: immutable. kind: 0 single-phase, 1 pending, 2 post_pending, 3 void_pending.
-- amount is the amount moved (for post_pending the amount posted, for void_pending the
-- amount released); requested_amount is what the client sent (0 = the full pending
-- amount), kept so a retry is recognised as the same transfer. seq is the listing order:
-- it is drawn after the accounts are locked, so the transfers of one account are in
-- commit order.
CREATE TABLE transfers (
    seq                bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    id                 uuid PRIMARY KEY,
    debit_account_id   uuid NOT NULL REFERENCES accounts (id),
    credit_account_id  uuid NOT NULL REFERENCES accounts (id),
    amount             bigint NOT NULL CHECK (amount >= 0),
    requested_amount   bigint NOT NULL CHECK (requested_amount >= 0),
    currency           text NOT NULL,
    code               integer NOT NULL,
    kind               smallint NOT NULL CHECK (kind BETWEEN 0 AND 3),
    linked             boolean NOT NULL,
    pending_id         uuid REFERENCES transfers (id),
    timeout_seconds    integer NOT NULL DEFAULT 0,
    customer_id        uuid,
    loan_id            uuid,
    description        text NOT NULL DEFAULT '',
    business_date      date NOT NULL,
    create_time        timestamptz NOT NULL DEFAULT now(),
    CHECK (debit_account_id <> credit_account_id),
    CHECK ((kind IN (2, 3)) = (pending_id IS NOT NULL))
);
CREATE INDEX transfers_debit_account ON transfers (debit_account_id, seq);
CREATE INDEX transfers_credit_account ON transfers (credit_account_id, seq);
CREATE INDEX transfers_customer ON transfers (customer_id, seq) WHERE customer_id IS NOT NULL;
CREATE INDEX transfers_loan ON transfers (loan_id, seq) WHERE loan_id IS NOT NULL;
-- At most one post or void per pending transfer, whatever the code does.
CREATE UNIQUE INDEX transfers_one_resolution ON transfers (pending_id) WHERE pending_id IS NOT NULL;

-- The mutable state of each pending (two-phase) transfer, kept apart so transfers stay
-- immutable. status: 1 pending, 2 posted, 3 voided, 4 expired (PendingStatus numbers).
CREATE TABLE pending_transfers (
    transfer_id       uuid PRIMARY KEY REFERENCES transfers (id),
    debit_account_id  uuid NOT NULL,
    credit_account_id uuid NOT NULL,
    amount            bigint NOT NULL CHECK (amount > 0),
    customer_id       uuid,
    status            smallint NOT NULL CHECK (status BETWEEN 1 AND 4),
    expires_at        timestamptz,
    resolve_time      timestamptz
);
CREATE INDEX pending_transfers_due ON pending_transfers (expires_at) WHERE status = 1;
CREATE INDEX pending_transfers_debit ON pending_transfers (debit_account_id) WHERE status = 1;
CREATE INDEX pending_transfers_credit ON pending_transfers (credit_account_id) WHERE status = 1;

-- request_id idempotency of whole batches uses the platform's idempotency_keys table
-- (libs/platform/migrations, applied through App::MIGRATORS_SHARED).
