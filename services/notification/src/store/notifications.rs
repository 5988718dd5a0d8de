//! Notifications and their delivery attempts in Postgres.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::model::{Channel, Locale, MessageClass, Outcome, Status, Suppression};

/// A notification about to be stored.
#[derive(Debug, Clone)]
pub struct NewNotification<'a> {
    pub notification_id: Uuid,
    pub customer_id: Uuid,
    pub channel: Channel,
    pub class: MessageClass,
    pub status: Status,
    pub suppression: Option<Suppression>,
    pub locale: Locale,
    pub template_key: &'a str,
    pub event_id: Option<Uuid>,
    pub title: &'a str,
    pub body: &'a str,
    /// Set exactly when `status` is PENDING.
    pub next_attempt_time: Option<DateTime<Utc>>,
    /// When delivered at creation (an IN_APP notice stored and due now).
    pub sent: bool,
}

/// A notification as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct NotificationRow {
    pub notification_id: Uuid,
    pub customer_id: Uuid,
    pub channel: i16,
    pub message_class: i16,
    pub status: i16,
    pub suppression_reason: i16,
    pub locale: String,
    pub template_key: String,
    pub event_id: Option<Uuid>,
    pub title: String,
    pub body: String,
    pub destination_masked: String,
    pub attempt_count: i32,
    pub next_attempt_time: Option<DateTime<Utc>>,
    pub create_time: DateTime<Utc>,
    pub sent_time: Option<DateTime<Utc>>,
    pub update_time: DateTime<Utc>,
}

impl NotificationRow {
    pub fn channel(&self) -> Option<Channel> {
        Channel::from_i16(self.channel)
    }
}

/// One delivery attempt as stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AttemptRow {
    pub notification_id: Uuid,
    pub attempt_number: i32,
    pub start_time: DateTime<Utc>,
    pub latency_ms: i64,
    pub outcome: i16,
    pub http_status: i32,
    pub error_message: String,
    pub provider_message_id: String,
}

/// A delivery attempt about to be recorded.
#[derive(Debug, Clone)]
pub struct NewAttempt {
    pub start_time: DateTime<Utc>,
    pub latency_ms: i64,
    /// `None`: not a delivery outcome (a render failure).
    pub outcome: Option<Outcome>,
    pub http_status: i32,
    pub error_message: String,
    pub provider_message_id: String,
}

pub const COLUMNS: &str = "notification_id, customer_id, channel, message_class, status, \
    suppression_reason, locale, template_key, event_id, title, body, destination_masked, \
    attempt_count, next_attempt_time, create_time, sent_time, update_time";

/// The first attempt a notification is stored with (delivered by storing it, or its
/// render failure).
#[derive(Debug, Clone)]
pub struct InitialAttempt {
    pub start_time: DateTime<Utc>,
    /// `None`: not a delivery outcome (a render failure).
    pub outcome: Option<Outcome>,
    pub error_message: String,
}

/// Inserts `new` (each with its initial attempt, if any) in one statement: the
/// notifications with `ON CONFLICT (event_id, channel) DO NOTHING` and the attempts of
/// those inserted. Returns the rows inserted, in no particular order; a notification
/// whose (event_id, channel) exists already is left out.
pub async fn insert_notifications(
    conn: &mut PgConnection,
    new: &[(NewNotification<'_>, Option<InitialAttempt>)],
) -> Result<Vec<NotificationRow>, sqlx::Error> {
    if new.is_empty() {
        return Ok(Vec::new());
    }
    let column = |f: &dyn Fn(&NewNotification<'_>, Option<&InitialAttempt>) -> String| {
        new.iter()
            .map(|(n, a)| f(n, a.as_ref()))
            .collect::<Vec<String>>()
    };
    let small = |f: &dyn Fn(&NewNotification<'_>) -> i16| {
        new.iter().map(|(n, _)| f(n)).collect::<Vec<i16>>()
    };
    sqlx::query_as(&format!(
        "WITH input AS ( \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int2[], $4::int2[], $5::int2[], \
                 $6::int2[], $7::text[], $8::text[], $9::uuid[], $10::text[], $11::text[], \
                 $12::timestamptz[], $13::bool[], $14::bool[], $15::timestamptz[], $16::int2[], \
                 $17::text[]) WITH ORDINALITY AS i(notification_id, customer_id, channel, \
                 message_class, status, suppression_reason, locale, template_key, event_id, \
                 title, body, next_attempt_time, sent, has_attempt, attempt_start, \
                 attempt_outcome, attempt_error, ordinal)), \
         inserted AS ( \
             INSERT INTO notifications (notification_id, customer_id, channel, message_class, \
                 status, suppression_reason, locale, template_key, event_id, title, body, \
                 next_attempt_time, sent_time, attempt_count) \
             SELECT notification_id, customer_id, channel, message_class, status, \
                 suppression_reason, locale, template_key, event_id, title, body, \
                 next_attempt_time, CASE WHEN sent THEN now() END, \
                 CASE WHEN has_attempt THEN 1 ELSE 0 END \
             FROM input ORDER BY ordinal \
             ON CONFLICT (event_id, channel) DO NOTHING \
             RETURNING {COLUMNS}), \
         attempts AS ( \
             INSERT INTO delivery_attempts (notification_id, attempt_number, start_time, \
                 latency_ms, outcome, http_status, error_message, provider_message_id) \
             SELECT i.notification_id, 1, i.attempt_start, 0, i.attempt_outcome, 0, \
                 i.attempt_error, '' \
             FROM input i JOIN inserted n ON n.notification_id = i.notification_id \
             WHERE i.has_attempt) \
         SELECT * FROM inserted"
    ))
    .bind(
        new.iter()
            .map(|(n, _)| n.notification_id)
            .collect::<Vec<_>>(),
    )
    .bind(new.iter().map(|(n, _)| n.customer_id).collect::<Vec<_>>())
    .bind(small(&|n| n.channel.as_i16()))
    .bind(small(&|n| n.class.as_i16()))
    .bind(small(&|n| n.status.as_i16()))
    .bind(small(&|n| n.suppression.map_or(0, Suppression::as_i16)))
    .bind(column(&|n, _| n.locale.as_str().to_owned()))
    .bind(column(&|n, _| n.template_key.to_owned()))
    .bind(new.iter().map(|(n, _)| n.event_id).collect::<Vec<_>>())
    .bind(column(&|n, _| n.title.to_owned()))
    .bind(column(&|n, _| n.body.to_owned()))
    .bind(
        new.iter()
            .map(|(n, _)| n.next_attempt_time)
            .collect::<Vec<_>>(),
    )
    .bind(new.iter().map(|(n, _)| n.sent).collect::<Vec<_>>())
    .bind(new.iter().map(|(_, a)| a.is_some()).collect::<Vec<_>>())
    .bind(
        new.iter()
            .map(|(_, a)| a.as_ref().map(|a| a.start_time))
            .collect::<Vec<_>>(),
    )
    .bind(
        new.iter()
            .map(|(_, a)| {
                a.as_ref()
                    .and_then(|a| a.outcome)
                    .map_or(0, Outcome::as_i16)
            })
            .collect::<Vec<_>>(),
    )
    .bind(column(&|_, a| {
        a.map_or(String::new(), |a| {
            crate::templates::truncate(&a.error_message, 512)
        })
    }))
    .fetch_all(conn)
    .await
}

/// The notification of (event_id, channel), if any.
pub async fn find_by_event(
    conn: &mut PgConnection,
    event_id: Uuid,
    channel: Channel,
) -> Result<Option<NotificationRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notifications WHERE event_id = $1 AND channel = $2"
    ))
    .bind(event_id)
    .bind(channel.as_i16())
    .fetch_optional(conn)
    .await
}

pub async fn find_notification(
    conn: &mut PgConnection,
    notification_id: Uuid,
) -> Result<Option<NotificationRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notifications WHERE notification_id = $1"
    ))
    .bind(notification_id)
    .fetch_optional(conn)
    .await
}

/// Attempts of `notification_ids`, oldest first per notification.
pub async fn attempts_of(
    conn: &mut PgConnection,
    notification_ids: &[Uuid],
) -> Result<Vec<AttemptRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT notification_id, attempt_number, start_time, latency_ms, outcome, \
             http_status, error_message, provider_message_id \
         FROM delivery_attempts WHERE notification_id = ANY($1) \
         ORDER BY notification_id, attempt_number",
    )
    .bind(notification_ids)
    .fetch_all(conn)
    .await
}

/// Filters of ListNotifications (all AND-ed; empty lists mean any).
#[derive(Debug, Clone)]
pub struct ListFilter {
    pub customer_id: Uuid,
    pub channels: Vec<i16>,
    pub statuses: Vec<i16>,
    pub class: Option<i16>,
    pub start_time: Option<DateTime<Utc>>,
    pub end_time: Option<DateTime<Utc>>,
    /// Continue after this (create_time, notification_id), newest first.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    pub limit: i64,
}

pub async fn list_notifications(
    conn: &mut PgConnection,
    filter: &ListFilter,
) -> Result<Vec<NotificationRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notifications \
         WHERE customer_id = $1 \
           AND (cardinality($2::smallint[]) = 0 OR channel = ANY($2)) \
           AND (cardinality($3::smallint[]) = 0 OR status = ANY($3)) \
           AND ($4::smallint IS NULL OR message_class = $4) \
           AND ($5::timestamptz IS NULL OR create_time >= $5) \
           AND ($6::timestamptz IS NULL OR create_time < $6) \
           AND ($7::timestamptz IS NULL OR (create_time, notification_id) < ($7, $8)) \
         ORDER BY create_time DESC, notification_id DESC \
         LIMIT $9"
    ))
    .bind(filter.customer_id)
    .bind(&filter.channels)
    .bind(&filter.statuses)
    .bind(filter.class)
    .bind(filter.start_time)
    .bind(filter.end_time)
    .bind(filter.after.map(|(time, _)| time))
    .bind(filter.after.map(|(_, id)| id))
    .bind(filter.limit)
    .fetch_all(conn)
    .await
}

/// A customer's delivered IN_APP notices sent at or after `since`, in delivery order.
pub async fn in_app_sent_since(
    pool: &PgPool,
    customer_id: Uuid,
    since: DateTime<Utc>,
    limit: i64,
) -> Result<Vec<NotificationRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM notifications \
         WHERE customer_id = $1 AND channel = $2 AND status = $3 AND sent_time >= $4 \
         ORDER BY sent_time, notification_id LIMIT $5"
    ))
    .bind(customer_id)
    .bind(Channel::InApp.as_i16())
    .bind(Status::Sent.as_i16())
    .bind(since)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// A notification claimed by a worker.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    pub notification_id: Uuid,
    pub customer_id: Uuid,
    pub message_class: i16,
    pub locale: String,
    pub template_key: String,
    pub event_id: Option<Uuid>,
    pub title: String,
    pub body: String,
    pub attempt_count: i32,
}

/// Claims up to `limit` due PENDING notifications of `channel` for `lease`, skipping
/// rows other workers hold (`FOR UPDATE SKIP LOCKED`) or have claimed.
pub async fn claim_due(
    pool: &PgPool,
    channel: Channel,
    claim_token: Uuid,
    lease: std::time::Duration,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE notifications n SET claim_token = $1, \
             claimed_until = now() + make_interval(secs => $2) \
         FROM (SELECT notification_id FROM notifications \
               WHERE status = $3 AND channel = $4 AND next_attempt_time <= now() \
                 AND (claimed_until IS NULL OR claimed_until < now()) \
               ORDER BY next_attempt_time LIMIT $5 FOR UPDATE SKIP LOCKED) due \
         WHERE n.notification_id = due.notification_id \
         RETURNING n.notification_id, n.customer_id, n.message_class, n.locale, \
             n.template_key, n.event_id, n.title, n.body, n.attempt_count",
    )
    .bind(claim_token)
    .bind(lease.as_secs_f64())
    .bind(Status::Pending.as_i16())
    .bind(channel.as_i16())
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The state a delivery attempt leaves a notification in.
#[derive(Debug, Clone)]
pub struct Settled {
    pub status: Status,
    pub suppression: Option<Suppression>,
    pub next_attempt_time: Option<DateTime<Utc>>,
    pub destination_masked: Option<String>,
}

/// One claimed notification's delivery, ready to be recorded.
#[derive(Debug, Clone)]
pub struct Settlement {
    pub notification_id: Uuid,
    /// The attempt made, if any (`None`: suppressed at delivery time).
    pub attempt: Option<NewAttempt>,
    /// The attempts counted once this one is recorded.
    pub attempt_count: i32,
    pub settled: Settled,
}

/// Records a batch of deliveries of one claim token in one statement (so atomically,
/// in one round trip and one commit): each notification's new state and its attempt.
/// Returns the ids settled; a notification whose claim was lost to another worker (its
/// token changed) is left out and nothing of it is written.
pub async fn settle_claimed(
    pool: &PgPool,
    claim_token: Uuid,
    batch: &[Settlement],
) -> Result<Vec<Uuid>, sqlx::Error> {
    if batch.is_empty() {
        return Ok(Vec::new());
    }
    let attempt = |f: &dyn Fn(&NewAttempt) -> String| {
        batch
            .iter()
            .map(|s| s.attempt.as_ref().map_or(String::new(), f))
            .collect::<Vec<String>>()
    };
    sqlx::query_scalar(
        "WITH input AS ( \
             SELECT * FROM unnest($1::uuid[], $2::int2[], $3::int2[], $4::timestamptz[], \
                 $5::int4[], $6::text[], $7::bool[], $8::timestamptz[], $9::int8[], \
                 $10::int2[], $11::int4[], $12::text[], $13::text[]) \
                 AS i(notification_id, status, suppression_reason, next_attempt_time, \
                      attempt_count, destination_masked, has_attempt, start_time, latency_ms, \
                      outcome, http_status, error_message, provider_message_id)), \
         settled AS ( \
             UPDATE notifications n SET status = i.status, \
                 suppression_reason = i.suppression_reason, \
                 next_attempt_time = i.next_attempt_time, attempt_count = i.attempt_count, \
                 destination_masked = COALESCE(i.destination_masked, n.destination_masked), \
                 sent_time = CASE WHEN i.status = $14 THEN now() END, \
                 claim_token = NULL, claimed_until = NULL, update_time = now() \
             FROM input i \
             WHERE n.notification_id = i.notification_id AND n.claim_token = $15 \
             RETURNING n.notification_id), \
         attempt AS ( \
             INSERT INTO delivery_attempts (notification_id, attempt_number, start_time, \
                 latency_ms, outcome, http_status, error_message, provider_message_id) \
             SELECT i.notification_id, i.attempt_count, i.start_time, i.latency_ms, i.outcome, \
                 i.http_status, i.error_message, i.provider_message_id \
             FROM input i JOIN settled s ON s.notification_id = i.notification_id \
             WHERE i.has_attempt) \
         SELECT notification_id FROM settled",
    )
    .bind(batch.iter().map(|s| s.notification_id).collect::<Vec<_>>())
    .bind(
        batch
            .iter()
            .map(|s| s.settled.status.as_i16())
            .collect::<Vec<_>>(),
    )
    .bind(
        batch
            .iter()
            .map(|s| s.settled.suppression.map_or(0, Suppression::as_i16))
            .collect::<Vec<_>>(),
    )
    .bind(
        batch
            .iter()
            .map(|s| s.settled.next_attempt_time)
            .collect::<Vec<_>>(),
    )
    .bind(batch.iter().map(|s| s.attempt_count).collect::<Vec<_>>())
    .bind(
        batch
            .iter()
            .map(|s| s.settled.destination_masked.clone())
            .collect::<Vec<Option<String>>>(),
    )
    .bind(
        batch
            .iter()
            .map(|s| s.attempt.is_some())
            .collect::<Vec<_>>(),
    )
    .bind(
        batch
            .iter()
            .map(|s| s.attempt.as_ref().map(|a| a.start_time))
            .collect::<Vec<_>>(),
    )
    .bind(
        batch
            .iter()
            .map(|s| s.attempt.as_ref().map_or(0, |a| a.latency_ms))
            .collect::<Vec<_>>(),
    )
    .bind(
        batch
            .iter()
            .map(|s| {
                s.attempt
                    .as_ref()
                    .and_then(|a| a.outcome)
                    .map_or(0, Outcome::as_i16)
            })
            .collect::<Vec<_>>(),
    )
    .bind(
        batch
            .iter()
            .map(|s| s.attempt.as_ref().map_or(0, |a| a.http_status))
            .collect::<Vec<_>>(),
    )
    .bind(attempt(&|a| {
        crate::templates::truncate(&a.error_message, 512)
    }))
    .bind(attempt(&|a| a.provider_message_id.clone()))
    .bind(Status::Sent.as_i16())
    .bind(claim_token)
    .fetch_all(pool)
    .await
}
