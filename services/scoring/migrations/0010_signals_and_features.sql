-- Signals (IngestSignals and the ledger's events) and the incremental feature store
-- (docs/scoring-features.md). Raw signals are append-only logs; the *_adjacency,
-- *_months, identity_* and credit_* tables are what a signal updates in place, so a
-- feature read never rescans the logs. Customer-keyed tables lead with customer_id
-- (DESIGN §11); graph tables are keyed by party id (a customer UUID as text, or "ext:…").

-- Social edges as received (one row per SocialEdge).
CREATE TABLE social_edges (
    edge_id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source_party_id text        NOT NULL,
    target_party_id text        NOT NULL,
    kind            smallint    NOT NULL,
    weight          numeric     NOT NULL CHECK (weight > 0),
    occur_time      timestamptz NOT NULL,
    receive_time    timestamptz NOT NULL DEFAULT now()
);

-- The undirected social graph, one row per (party, neighbour), stored in both
-- directions, with the weight kept per SocialEdgeKind (units never mixed): events add
-- their weight, standing relations (CONTACT, GROUP_MEMBER) are presence flags (0/1)
-- whose first_seen time does not move.
CREATE TABLE social_adjacency (
    party_id           text        NOT NULL,
    neighbour_id       text        NOT NULL,
    transfer_fen       numeric     NOT NULL DEFAULT 0,
    red_packet_fen     numeric     NOT NULL DEFAULT 0,
    messages           numeric     NOT NULL DEFAULT 0,
    calls              numeric     NOT NULL DEFAULT 0,
    contact            smallint    NOT NULL DEFAULT 0,
    group_member       smallint    NOT NULL DEFAULT 0,
    first_seen_time    timestamptz NOT NULL,
    last_seen_time     timestamptz NOT NULL,
    PRIMARY KEY (party_id, neighbour_id),
    CHECK (party_id <> neighbour_id)
);

-- Behaviour events as received.
CREATE TABLE behaviour_events (
    customer_id     uuid        NOT NULL,
    event_id        bigint GENERATED ALWAYS AS IDENTITY,
    flow            smallint    NOT NULL,
    category        smallint    NOT NULL,
    amount_fen      bigint      NOT NULL CHECK (amount_fen > 0),
    occur_time      timestamptz NOT NULL,
    counterparty_id text,
    receive_time    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, event_id)
);

-- Monthly totals per customer (month of occur_time in Asia/Shanghai, first day).
CREATE TABLE behaviour_months (
    customer_id     uuid   NOT NULL,
    month           date   NOT NULL,
    income_fen      bigint NOT NULL DEFAULT 0,
    spend_fen       bigint NOT NULL DEFAULT 0,
    risky_spend_fen bigint NOT NULL DEFAULT 0,
    events          bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (customer_id, month)
);

-- Distinct counterparties per customer and category (e.g. lenders for OTHER_LENDER).
CREATE TABLE behaviour_counterparties (
    customer_id     uuid        NOT NULL,
    category        smallint    NOT NULL,
    counterparty_id text        NOT NULL,
    first_seen_time timestamptz NOT NULL,
    PRIMARY KEY (customer_id, category, counterparty_id)
);

-- Identity sightings as received (velocity counting reads these by time).
CREATE TABLE identity_sightings (
    customer_id  uuid        NOT NULL,
    sighting_id  bigint GENERATED ALWAYS AS IDENTITY,
    kind         smallint    NOT NULL,
    identifier   text        NOT NULL,
    context      smallint    NOT NULL,
    observe_time timestamptz NOT NULL,
    receive_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, sighting_id)
);
CREATE INDEX identity_sightings_identifier ON identity_sightings (kind, identifier, observe_time);

-- Which customers each identifier was seen with.
CREATE TABLE identity_links (
    kind            smallint    NOT NULL,
    identifier      text        NOT NULL,
    customer_id     uuid        NOT NULL,
    first_seen_time timestamptz NOT NULL,
    last_seen_time  timestamptz NOT NULL,
    sightings       bigint      NOT NULL,
    PRIMARY KEY (kind, identifier, customer_id)
);
CREATE INDEX identity_links_customer ON identity_links (customer_id);

-- Distinct customers per identifier, kept by the insert of a new link.
CREATE TABLE identifier_customers (
    kind       smallint NOT NULL,
    identifier text     NOT NULL,
    customers  bigint   NOT NULL,
    PRIMARY KEY (kind, identifier)
);

-- Components of the customers-linked-by-a-shared-identifier graph (union-find kept
-- incrementally: a merge relabels the smaller side). A customer with no identifier
-- has no row: a component of one.
CREATE TABLE identity_components (
    customer_id  uuid NOT NULL PRIMARY KEY,
    component_id uuid NOT NULL
);
CREATE INDEX identity_components_component ON identity_components (component_id);

CREATE TABLE identity_component_stats (
    component_id uuid   NOT NULL PRIMARY KEY,
    size         bigint NOT NULL CHECK (size > 0),
    defaulters   bigint NOT NULL CHECK (defaulters >= 0)
);

-- Repayment outcomes as received or derived from ledger events.
CREATE TABLE repayment_outcomes (
    customer_id          uuid        NOT NULL,
    outcome_id           bigint GENERATED ALWAYS AS IDENTITY,
    loan_id              uuid        NOT NULL,
    installment_sequence integer     NOT NULL,
    due_date             date,
    outcome              smallint    NOT NULL,
    days_past_due        integer     NOT NULL,
    amount_due_fen       bigint      NOT NULL,
    amount_paid_fen      bigint      NOT NULL,
    observe_time         timestamptz NOT NULL,
    receive_time         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, outcome_id)
);

-- Each instalment's current state: paid after a MISSED becomes LATE, WRITTEN_OFF is
-- final, otherwise the latest observation wins; days_past_due only grows.
CREATE TABLE installment_states (
    customer_id          uuid        NOT NULL,
    loan_id              uuid        NOT NULL,
    installment_sequence integer     NOT NULL,
    outcome              smallint    NOT NULL,
    days_past_due        integer     NOT NULL,
    observe_time         timestamptz NOT NULL,
    PRIMARY KEY (customer_id, loan_id, installment_sequence)
);

-- Every party with a credit history (any repayment outcome): its worst days past due
-- and, once it qualifies (scoring.proto header), when it became a known defaulter.
CREATE TABLE credit_parties (
    party_id        text        NOT NULL PRIMARY KEY,
    max_days_past_due integer   NOT NULL,
    defaulter_since timestamptz
);
CREATE INDEX credit_parties_defaulters ON credit_parties (party_id) WHERE defaulter_since IS NOT NULL;

-- The customer's credit line as the ledger's and account's events report it.
CREATE TABLE credit_lines (
    customer_id   uuid        NOT NULL PRIMARY KEY,
    limit_fen     bigint      NOT NULL,
    available_fen bigint      NOT NULL,
    update_time   timestamptz NOT NULL
);

-- The last personalised-PageRank refresh over the stored graph (docs/scoring-features.md).
CREATE TABLE pagerank_scores (
    party_id text             NOT NULL PRIMARY KEY,
    score    double precision NOT NULL
);

CREATE TABLE pagerank_runs (
    run_id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    finish_time  timestamptz      NOT NULL DEFAULT now(),
    parties      bigint           NOT NULL,
    edges        bigint           NOT NULL,
    seeds        bigint           NOT NULL,
    iterations   integer          NOT NULL,
    residual     double precision NOT NULL
);
