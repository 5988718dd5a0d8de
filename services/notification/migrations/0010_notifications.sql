-- Notifications, their delivery attempts, customers' preferences and notice locales
-- (docs/notification.md). Enum columns hold the proto enum numbers
-- (notification.proto: Channel, MessageClass, NotificationStatus, SuppressionReason,
-- AttemptOutcome); the CHECKs name the valid ranges.

CREATE TABLE notifications (
    notification_id    uuid PRIMARY KEY,
    customer_id        uuid NOT NULL,
    channel            smallint NOT NULL CHECK (channel BETWEEN 1 AND 4),
    message_class      smallint NOT NULL CHECK (message_class BETWEEN 1 AND 3),
    status             smallint NOT NULL CHECK (status BETWEEN 1 AND 5),
    suppression_reason smallint NOT NULL DEFAULT 0 CHECK (suppression_reason BETWEEN 0 AND 4),
    locale             text NOT NULL,
    template_key       text NOT NULL DEFAULT '',
    -- The event the notice is for; NULL for direct sends without one.
    event_id           uuid,
    title              text NOT NULL,
    body               text NOT NULL,
    -- Masked only ("+86 138****5678"); the phone itself is never stored.
    destination_masked text NOT NULL DEFAULT '',
    attempt_count      integer NOT NULL DEFAULT 0,
    -- When the next attempt is due; NULL unless PENDING.
    next_attempt_time  timestamptz,
    -- A worker's claim: until this instant no other worker takes the row.
    claim_token        uuid,
    claimed_until      timestamptz,
    create_time        timestamptz NOT NULL DEFAULT now(),
    sent_time          timestamptz,
    update_time        timestamptz NOT NULL DEFAULT now(),
    -- A redelivered event (or a second Send with its event_id) makes no second notice.
    CONSTRAINT notifications_event_channel_unique UNIQUE (event_id, channel),
    CHECK ((status = 1) = (next_attempt_time IS NOT NULL)),
    CHECK ((status = 5) = (suppression_reason <> 0))
);

-- The workers' queue: due PENDING rows of one channel, oldest due first.
CREATE INDEX notifications_due ON notifications (channel, next_attempt_time)
    WHERE status = 1;
-- ListNotifications: a customer's notices, newest first.
CREATE INDEX notifications_customer_created
    ON notifications (customer_id, create_time DESC, notification_id DESC);
-- Subscribe: a customer's delivered IN_APP notices in delivery order.
CREATE INDEX notifications_customer_in_app_sent
    ON notifications (customer_id, sent_time, notification_id)
    WHERE channel = 1 AND status = 2;

CREATE TABLE delivery_attempts (
    notification_id     uuid NOT NULL REFERENCES notifications ON DELETE CASCADE,
    attempt_number      integer NOT NULL CHECK (attempt_number >= 1),
    start_time          timestamptz NOT NULL,
    latency_ms          bigint NOT NULL CHECK (latency_ms >= 0),
    outcome             smallint NOT NULL CHECK (outcome BETWEEN 0 AND 6),
    http_status         integer NOT NULL DEFAULT 0,
    error_message       text NOT NULL DEFAULT '' CHECK (char_length(error_message) <= 512),
    provider_message_id text NOT NULL DEFAULT '',
    PRIMARY KEY (notification_id, attempt_number)
);

CREATE TABLE preferences (
    customer_id        uuid PRIMARY KEY,
    -- NULL = not set: the customer's locale applies.
    locale             text CHECK (locale IN ('zh-CN', 'en')),
    -- [{"channel": 1, "enabled": true, "marketing_enabled": false}, ...]
    channels           jsonb NOT NULL DEFAULT '[]',
    quiet_start_minute integer NOT NULL CHECK (quiet_start_minute BETWEEN 0 AND 1439),
    quiet_end_minute   integer NOT NULL CHECK (quiet_end_minute BETWEEN 0 AND 1439),
    quiet_time_zone    text NOT NULL,
    update_time        timestamptz NOT NULL DEFAULT now()
);

-- Each customer's locale as account reported it (CustomerCreated, or a GetCustomer
-- look-up); the default notice locale when the preferences set none.
CREATE TABLE customer_locales (
    customer_id uuid PRIMARY KEY,
    locale      text NOT NULL CHECK (locale IN ('zh-CN', 'en')),
    update_time timestamptz NOT NULL DEFAULT now()
);
