//! The in-app stream (Subscribe): replays a customer's IN_APP notices delivered after
//! the client's last one, then streams new ones live, with heartbeats when idle.
//!
//! Order and gaps: notices are streamed in delivery order (`sent_time`, then id). A
//! transaction may commit a little after its `sent_time`, so each look-up reaches back
//! [`LOOKBACK`] and skips the ids already streamed: a notice committed late is still
//! streamed, once. The stream is woken at once by this replica's deliveries and polls
//! for other replicas'.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use microloan_proto::notification::v1::{Heartbeat, SubscribeResponse, subscribe_response::Item};
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use uuid::Uuid;

use crate::{
    config::StreamConfig,
    metrics::Metrics,
    signals::Signals,
    store::notifications::{AttemptRow, NotificationRow, attempts_of, in_app_sent_since},
};

/// How far back each look-up reaches for notices that committed late.
const LOOKBACK: Duration = Duration::from_secs(5);
/// Notices replayed after a reconnect, at most (SubscribeRequest.resume_after_id).
pub const REPLAY_MAX: i64 = 500;
/// Notices one live look-up reads at most.
const BATCH_MAX: i64 = 100;

/// Open streams per customer on this replica.
#[derive(Debug, Clone, Default)]
pub struct OpenStreams(Arc<Mutex<HashMap<Uuid, usize>>>);

/// Holds one open stream's place; gives it back when dropped.
#[derive(Debug)]
pub struct StreamSlot {
    streams: OpenStreams,
    customer_id: Uuid,
    metrics: Metrics,
}

impl OpenStreams {
    /// A slot for another stream of `customer_id`, or `None` at the limit.
    pub fn open(&self, customer_id: Uuid, max: usize, metrics: &Metrics) -> Option<StreamSlot> {
        let mut open = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        let count = open.entry(customer_id).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        metrics.streams(1);
        Some(StreamSlot {
            streams: self.clone(),
            customer_id,
            metrics: metrics.clone(),
        })
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self
            .streams
            .0
            .lock()
            .unwrap_or_else(|poison| poison.into_inner());
        if let Some(count) = open.get_mut(&self.customer_id) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.customer_id);
            }
        }
        self.metrics.streams(-1);
    }
}

/// Where a stream starts: after a delivered notice (resume), or now.
#[derive(Debug, Clone, Copy)]
pub struct Start {
    /// Notices sent at or after this instant are candidates...
    pub since: DateTime<Utc>,
    /// ...except this one (the client's last).
    pub after_id: Option<Uuid>,
}

/// Everything a stream needs.
#[derive(Debug, Clone)]
pub struct StreamContext {
    pub pool: PgPool,
    pub config: StreamConfig,
    pub signals: Signals,
    pub stop: CancellationToken,
}

pub type StreamItem = Result<SubscribeResponse, Status>;

/// Streams into `sender` until the client goes away or the server stops.
pub async fn run(
    context: StreamContext,
    customer_id: Uuid,
    start: Start,
    slot: StreamSlot,
    sender: mpsc::Sender<StreamItem>,
    to_proto: impl Fn(
        &NotificationRow,
        &[AttemptRow],
    ) -> microloan_proto::notification::v1::Notification
    + Send,
) {
    let _slot = slot;
    let mut wake = context.signals.in_app();
    // Ids streamed, with their sent time, kept for the look-back window.
    let mut streamed: HashMap<Uuid, DateTime<Utc>> = HashMap::new();
    if let Some(after_id) = start.after_id {
        streamed.insert(after_id, start.since);
    }
    let floor = start.since;
    let mut cursor = start.since;
    let mut limit = REPLAY_MAX;
    let mut last_sent = tokio::time::Instant::now();
    loop {
        let from = (cursor - chrono::Duration::from_std(LOOKBACK).unwrap_or_default()).max(floor);
        match in_app_sent_since(&context.pool, customer_id, from, limit).await {
            Ok(rows) => {
                let attempts = attempts_for(&context.pool, &rows).await;
                for row in rows {
                    let Some(sent_time) = row.sent_time else {
                        continue;
                    };
                    if streamed.contains_key(&row.notification_id) {
                        continue;
                    }
                    let item = Item::Notification(to_proto(&row, &attempts));
                    if sender
                        .send(Ok(SubscribeResponse { item: Some(item) }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    streamed.insert(row.notification_id, sent_time);
                    cursor = cursor.max(sent_time);
                    last_sent = tokio::time::Instant::now();
                }
            }
            Err(err) => {
                tracing::warn!(%customer_id, error = %err, "subscribe: look-up failed; polling again")
            }
        }
        limit = BATCH_MAX;
        let horizon = cursor - chrono::Duration::from_std(LOOKBACK * 2).unwrap_or_default();
        streamed.retain(|_, sent| *sent >= horizon);
        let heartbeat_at = last_sent + context.config.heartbeat;
        tokio::select! {
            () = context.stop.cancelled() => return,
            () = sender.closed() => return,
            _ = wake.changed() => {}
            () = tokio::time::sleep(context.config.poll_interval) => {}
            () = tokio::time::sleep_until(heartbeat_at) => {
                let beat = Item::Heartbeat(Heartbeat {
                    server_time: Some(microloan_platform::convert::timestamp(Utc::now())),
                });
                if sender.send(Ok(SubscribeResponse { item: Some(beat) })).await.is_err() {
                    return;
                }
                last_sent = tokio::time::Instant::now();
            }
        }
    }
}

/// The attempts of `rows` (empty if the look-up fails: the notices still stream).
async fn attempts_for(pool: &PgPool, rows: &[NotificationRow]) -> Vec<AttemptRow> {
    if rows.is_empty() {
        return Vec::new();
    }
    let ids: Vec<Uuid> = rows.iter().map(|row| row.notification_id).collect();
    let found = match pool.acquire().await {
        Ok(mut conn) => attempts_of(&mut conn, &ids).await,
        Err(err) => Err(err),
    };
    found.unwrap_or_else(|err| {
        tracing::warn!(error = %err, "subscribe: cannot read attempts; streaming without them");
        Vec::new()
    })
}
