-- Decisions (Evaluate) and the fraud lists (docs/scoring-decisions.md). A decision is
-- stored whole (the Decision and its explanation as protobuf bytes, so ExplainDecision
-- replays exactly what was decided) beside the columns the anti-fraud rules and the PSI
-- query by.
CREATE TABLE decisions (
    decision_id         uuid        NOT NULL PRIMARY KEY,
    customer_id         uuid        NOT NULL,
    purpose             smallint    NOT NULL,
    outcome             smallint    NOT NULL,
    score               integer     NOT NULL,
    model_version       text        NOT NULL,
    offered_limit_fen   bigint,
    drawdown_amount_fen bigint,
    decide_time         timestamptz NOT NULL,
    decision            bytea       NOT NULL,
    explanation         bytea       NOT NULL
);
CREATE INDEX decisions_customer ON decisions (customer_id, decide_time);
-- The PSI reads one model's live scores in a time window.
CREATE INDEX decisions_model_time ON decisions (model_version, decide_time);

-- Customers whose fraud is confirmed (a loan written off with reason FRAUD, or an
-- operator's entry): they seed the fraud-ring rule.
CREATE TABLE fraud_confirmations (
    customer_id  uuid        NOT NULL PRIMARY KEY,
    source       text        NOT NULL,
    confirm_time timestamptz NOT NULL
);

-- Blacklisted identifiers: kind is an IdentifierKind (1 device, 2 phone hash, 3
-- national-id hash) or 0 for a customer id. Confirmed fraud adds the customer and every
-- identifier linked to it; operators may insert rows (source 'operator').
CREATE TABLE fraud_blacklist (
    kind       smallint    NOT NULL,
    identifier text        NOT NULL,
    source     text        NOT NULL,
    add_time   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, identifier)
);
