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

/// Inserts `new`; `None` when a notification for the same (event_id, channel) exists.
pub async fn insert_notification(
    conn: &mut PgConnection,
    new: &NewNotification<'_>,
) -> Result<Option<NotificationRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO notifications (notification_id, customer_id, channel, message_class, \
             status, suppression_reason, locale, template_key, event_id, title, body, \
             next_attempt_time, sent_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, \
             CASE WHEN $13 THEN now() END) \
         ON CONFLICT (event_id, channel) DO NOTHING \
         RETURNING {COLUMNS}"
    ))
    .bind(new.notification_id)
    .bind(new.customer_id)
    .bind(new.channel.as_i16())
    .bind(new.class.as_i16())
    .bind(new.status.as_i16())
    .bind(new.suppression.map_or(0, Suppression::as_i16))
    .bind(new.locale.as_str())
    .bind(new.template_key)
    .bind(new.event_id)
    .bind(new.title)
    .bind(new.body)
    .bind(new.next_attempt_time)
    .bind(new.sent)
    .fetch_optional(conn)
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

/// Records attempt number `attempt_count + 1` of a notification.
pub async fn insert_attempt(
    conn: &mut PgConnection,
    notification_id: Uuid,
    attempt_number: i32,
    attempt: &NewAttempt,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO delivery_attempts (notification_id, attempt_number, start_time, \
             latency_ms, outcome, http_status, error_message, provider_message_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(notification_id)
    .bind(attempt_number)
    .bind(attempt.start_time)
    .bind(attempt.latency_ms)
    .bind(attempt.outcome.map_or(0, Outcome::as_i16))
    .bind(attempt.http_status)
    .bind(crate::templates::truncate(&attempt.error_message, 512))
    .bind(&attempt.provider_message_id)
    .execute(conn)
    .await?;
    Ok(())
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

/// Records `attempt` (if any) and the new state of a claimed notification in one
/// statement (so atomically, in one round trip); false (nothing written) when the
/// claim was lost to another worker.
pub async fn settle_claimed(
    pool: &PgPool,
    claimed: &Claimed,
    claim_token: Uuid,
    attempt: Option<&NewAttempt>,
    settled: &Settled,
) -> Result<bool, sqlx::Error> {
    let attempt_count = claimed.attempt_count + i32::from(attempt.is_some());
    let settled_rows: i64 = sqlx::query_scalar(
        "WITH settled AS ( \
             UPDATE notifications SET status = $3, suppression_reason = $4, \
                 next_attempt_time = $5, attempt_count = $6, \
                 destination_masked = COALESCE($7, destination_masked), \
                 sent_time = CASE WHEN $3 = $8 THEN now() END, \
                 claim_token = NULL, claimed_until = NULL, update_time = now() \
             WHERE notification_id = $1 AND claim_token = $2 \
             RETURNING notification_id), \
         attempt AS ( \
             INSERT INTO delivery_attempts (notification_id, attempt_number, start_time, \
                 latency_ms, outcome, http_status, error_message, provider_message_id) \
             SELECT notification_id, $6, $10, $11, $12, $13, $14, $15 FROM settled \
             WHERE $9) \
         SELECT count(*) FROM settled",
    )
    .bind(claimed.notification_id)
    .bind(claim_token)
    .bind(settled.status.as_i16())
    .bind(settled.suppression.map_or(0, Suppression::as_i16))
    .bind(settled.next_attempt_time)
    .bind(attempt_count)
    .bind(settled.destination_masked.as_deref())
    .bind(Status::Sent.as_i16())
    .bind(attempt.is_some())
    .bind(attempt.map(|a| a.start_time))
    .bind(attempt.map_or(0, |a| a.latency_ms))
    .bind(attempt.and_then(|a| a.outcome).map_or(0, Outcome::as_i16))
    .bind(attempt.map_or(0, |a| a.http_status))
    .bind(attempt.map_or(String::new(), |a| {
        crate::templates::truncate(&a.error_message, 512)
    }))
    .bind(attempt.map_or("", |a| a.provider_message_id.as_str()))
    .fetch_one(pool)
    .await?;
    Ok(settled_rows == 1)
}
