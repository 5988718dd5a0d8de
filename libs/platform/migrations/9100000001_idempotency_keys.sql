-- request_id idempotency of mutating RPCs (proto/README.md), shared by every service
-- (libs/platform/src/idempotency.rs): the first request with a key stores the SHA-256
-- of its body and, in the same transaction as its effects, its encoded response. Keys
-- are scoped to the caller and the RPC and kept for at least 7 days.
CREATE TABLE idempotency_keys (
    caller       text NOT NULL,
    rpc          text NOT NULL,
    request_id   text NOT NULL,
    request_hash bytea NOT NULL,
    response     bytea,
    create_time  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller, rpc, request_id)
);
CREATE INDEX idempotency_keys_create_time ON idempotency_keys (create_time);
