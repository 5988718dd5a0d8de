-- Events (libs/events, DESIGN §3 and §7). Defined once here and applied in every
-- service's database together with the service's own migrations
-- (microloan_platform::db::migrate_all); versions from 9000000000 up are reserved for
-- libs/events so they never collide with a service's.

-- The transactional outbox: one row per event, written in the producer's transaction
-- (so it exists if and only if the state change committed) and published to the Redis
-- Stream by the relay. Keyed by customer_id first so a distributed Postgres can
-- colocate a customer's events with the customer's other rows (DESIGN §11).
CREATE TABLE outbox (
    -- Within one customer, id order is commit order: `append` serializes a customer's
    -- writers with a transaction-level advisory lock taken before the row gets its id.
    id           bigserial   NOT NULL,
    event_id     uuid        NOT NULL,
    customer_id  uuid        NOT NULL,
    -- hash(customer_id) mod the partition count: the unit a relay claims.
    partition    smallint    NOT NULL CHECK (partition >= 0),
    event_type   text        NOT NULL,
    -- The encoded microloan.events.v1.Event, exactly as it goes on the stream.
    payload      bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    PRIMARY KEY (customer_id, id),
    UNIQUE (customer_id, event_id)
);

-- The relay's work list: a partition's unpublished rows in id order. Partial, so it
-- stays as small as the backlog.
CREATE INDEX outbox_unpublished ON outbox (partition, id) WHERE published_at IS NULL;

-- The retention sweep deletes published rows oldest first.
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- What each consumer group of this service has applied: written in the same
-- transaction as the handler's effects, so a redelivered event is recognised and
-- skipped (delivery is at least once; effects happen once).
CREATE TABLE processed_events (
    consumer_group text        NOT NULL,
    customer_id    uuid        NOT NULL,
    event_id       uuid        NOT NULL,
    processed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, consumer_group, event_id)
);

CREATE INDEX processed_events_processed_at ON processed_events (processed_at);
