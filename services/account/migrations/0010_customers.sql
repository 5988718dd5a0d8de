-- Customers (account.proto). PII (name, national id, phone) is sealed with AES-256-GCM
-- (services/account/src/pii.rs) and found by keyed hash (HMAC-SHA256 with its own key);
-- the masked forms are stored beside it so that reads need no decryption. customer_id
-- is the partition key (DESIGN §11).
CREATE TABLE customers (
    customer_id          uuid PRIMARY KEY,
    status               smallint NOT NULL CHECK (status BETWEEN 1 AND 3),
    status_reason        text NOT NULL DEFAULT '',
    name_sealed          bytea NOT NULL,
    national_id_sealed   bytea NOT NULL,
    phone_sealed         bytea NOT NULL,
    national_id_hash     bytea NOT NULL,
    phone_hash           bytea NOT NULL,
    name_masked          text NOT NULL,
    national_id_masked   text NOT NULL,
    phone_masked         text NOT NULL,
    annual_income_minor  bigint NOT NULL CHECK (annual_income_minor >= 0),
    locale               text NOT NULL CHECK (locale IN ('zh-CN', 'en')),
    device_id            text NOT NULL DEFAULT '',
    create_time          timestamptz NOT NULL DEFAULT now(),
    update_time          timestamptz NOT NULL DEFAULT now()
);
-- One customer per national id. (On a distributed Postgres this unique index needs a
-- lookup table keyed by the hash; see docs/account.md.)
CREATE UNIQUE INDEX customers_national_id_hash ON customers (national_id_hash);
CREATE INDEX customers_phone_hash ON customers (phone_hash);

-- Operator changes, who/what/when/before/after (the issue's audit requirement). Values
-- never hold PII: customers appear by id and masked fields only.
CREATE TABLE audit_log (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor        text NOT NULL,
    role         text NOT NULL,
    rpc          text NOT NULL,
    request_id   text NOT NULL,
    customer_id  uuid,
    before       jsonb,
    after        jsonb,
    create_time  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_log_customer ON audit_log (customer_id, id);
