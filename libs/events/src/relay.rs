//! The relay: publishes committed outbox rows to the Redis Stream in id order, and the
//! housekeeping beside it (backlog gauges, retention sweep).
//!
//! One batch, in one Postgres transaction: try the advisory lock of each partition
//! (`pg_try_advisory_xact_lock`: a partition another relay holds is skipped, never
//! waited for), claim up to `relay_batch_size_max` unpublished rows of the partitions
//! won, in id order, `XADD` them in one `MULTI`/`EXEC`, mark them published, commit.
//! The locks last until that commit, so no two relays publish a partition at once and
//! a partition's batches follow each other in id order; a customer lives in one
//! partition, so its events reach the stream in id order, which `append` makes commit
//! order.
//!
//! A crash between `EXEC` and the commit publishes the batch again on the next round
//! (delivery is at least once; consumers deduplicate on the event id).
//!
//! Wake-up: an `append` in this process wakes the relay, which then polls every
//! `LINGER_STEP` for up to `LINGER` (the producer's commit follows its append within
//! milliseconds); `NOTIFY` on [`NOTIFY_CHANNEL`] (from [`crate::outbox::wake_relays`])
//! wakes it too; otherwise it looks every `relay_poll_interval`.

use std::{sync::Arc, time::Duration};

use tokio::time::Instant;

use microloan_platform::cache::Cache;
use sqlx::{PgPool, postgres::PgListener};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    Backoff,
    config::EventsConfig,
    metrics::EventsMetrics,
    outbox::{self, NOTIFY_CHANNEL, PARTITIONS, RELAY_LOCK_CLASS},
    sleep_or_stop,
};

/// How often the backlog gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);
/// How often published rows and old dedupe records are swept.
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// Rows one sweep statement deletes: short statements, short locks.
const SWEEP_BATCH_ROWS: i64 = 10_000;
/// Statements one sweep runs at most; the rest waits for the next sweep.
const SWEEP_BATCHES_MAX: u32 = 100;
/// After a wake-up, how long the relay keeps polling for the rows to commit.
const LINGER: Duration = Duration::from_millis(100);
/// How often it polls meanwhile.
const LINGER_STEP: Duration = Duration::from_millis(2);

/// Publishes one service's outbox. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Relay {
    pool: PgPool,
    cache: Cache,
    config: Arc<EventsConfig>,
    metrics: EventsMetrics,
}

impl Relay {
    pub fn new(
        pool: PgPool,
        cache: Cache,
        config: Arc<EventsConfig>,
        metrics: EventsMetrics,
    ) -> Self {
        Self {
            pool,
            cache,
            config,
            metrics,
        }
    }

    /// Publishes until `stop` is cancelled: after every commit it is woken by `NOTIFY`,
    /// and at least every `relay_poll_interval` without one. While Redis or Postgres
    /// fails it backs off exponentially up to `relay_backoff_max`; the rows wait.
    pub async fn run(self, stop: CancellationToken) {
        let mut listener: Option<PgListener> = None;
        let mut appended = outbox::appended();
        let mut backoff = Backoff::new(self.config.relay_backoff_max);
        // Start as if woken: rows may have waited while no relay ran.
        let mut linger_until = Instant::now() + LINGER;
        let mut busy = false;
        while !stop.is_cancelled() {
            if listener.is_none() {
                listener = match self.listen().await {
                    Ok(listener) => Some(listener),
                    Err(err) => {
                        tracing::warn!(%err, "events relay cannot LISTEN; polling instead");
                        None
                    }
                };
            }
            // While busy, skip the probe: the last batch found work.
            match self.publish(!busy).await {
                Ok(published) => {
                    backoff.reset();
                    busy = published > 0;
                    if busy {
                        // More may be waiting: go again at once. (No new linger: an
                        // append since the last wait shows as a change below.)
                        continue;
                    }
                }
                Err(err) => {
                    busy = false;
                    self.metrics.relay_errors_total.inc();
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %err, retry_ms = delay.as_millis() as u64, "events relay: publishing failed; the outbox keeps the events");
                    if !sleep_or_stop(delay, &stop).await {
                        return;
                    }
                    continue;
                }
            }
            if Instant::now() < linger_until {
                if !sleep_or_stop(LINGER_STEP, &stop).await {
                    return;
                }
                continue;
            }
            let woken = tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.config.relay_poll_interval) => Ok(false),
                changed = appended.changed() => Ok(changed.is_ok()),
                result = wait_for_notification(listener.as_mut()) => result.map(|()| true),
            };
            match woken {
                Ok(true) => linger_until = Instant::now() + LINGER,
                Ok(false) => {}
                Err(err) => {
                    tracing::warn!(%err, "events relay lost its LISTEN connection; reconnecting");
                    listener = None;
                }
            }
        }
    }

    async fn listen(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        Ok(listener)
    }

    /// Publishes one batch: the oldest unpublished rows of the partitions no other
    /// relay holds. Returns how many rows it published (0: nothing was waiting, or
    /// other relays hold every partition that has work).
    pub async fn publish_batch(&self) -> anyhow::Result<usize> {
        self.publish(true).await
    }

    async fn publish(&self, probe: bool) -> anyhow::Result<usize> {
        // One cheap probe on the partial index before opening a transaction: this is
        // all an idle relay does.
        if probe {
            let waiting: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM outbox WHERE published_at IS NULL)",
            )
            .fetch_one(&self.pool)
            .await?;
            if !waiting {
                return Ok(0);
            }
        }
        // Without waiting for the WAL flush: if Postgres lost this commit in a crash,
        // the rows would only be published again, which at-least-once allows and
        // consumers absorb. It saves a disk flush per batch.
        let mut tx = self
            .pool
            .begin_with("BEGIN; SET LOCAL synchronous_commit = off")
            .await?;
        // The volatile lock calls keep the CTE from being inlined: it runs once, and a
        // row is read only if its partition's lock is ours. SKIP LOCKED: only relays
        // lock outbox rows and they hold the partition locks, so nothing is skipped in
        // practice; it keeps a relay from ever queueing behind another's row locks.
        let rows: Vec<(i64, Uuid, Uuid, String, Vec<u8>)> = sqlx::query_as(
            "WITH claimed AS (
                 SELECT p::int2 AS partition FROM generate_series(0, $2 - 1) AS p
                 WHERE pg_try_advisory_xact_lock($1, p))
             SELECT id, event_id, customer_id, event_type, payload FROM outbox
             WHERE published_at IS NULL AND partition IN (SELECT partition FROM claimed)
             ORDER BY id LIMIT $3
             FOR UPDATE SKIP LOCKED",
        )
        .bind(RELAY_LOCK_CLASS)
        .bind(i32::from(PARTITIONS))
        .bind(self.config.relay_batch_size_max as i64)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            return Ok(0);
        }
        debug_assert!(
            rows.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "id order"
        );
        // MULTI/EXEC: Redis appends the whole batch or none of it, so a failure never
        // leaves half a batch to be published twice. One stream key, so this holds on
        // Redis Cluster too.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (_, event_id, customer_id, event_type, payload) in &rows {
            pipe.cmd("XADD")
                .arg(&self.config.stream)
                .arg("MAXLEN")
                .arg("~")
                .arg(self.config.stream_length_max)
                .arg("*")
                .arg("event")
                .arg(payload.as_slice())
                // Readable copies for operators (`XRANGE`); consumers read `event`.
                .arg("event_id")
                .arg(event_id.to_string())
                .arg("type")
                .arg(event_type)
                .arg("customer_id")
                .arg(customer_id.to_string())
                .ignore();
        }
        let mut redis = self.cache.connection().await?;
        pipe.query_async::<()>(&mut redis).await?;
        let ids: Vec<i64> = rows.iter().map(|row| row.0).collect();
        let marked = sqlx::query(
            "UPDATE outbox SET published_at = now() WHERE published_at IS NULL AND id = ANY($1)",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        debug_assert_eq!(
            marked as usize,
            rows.len(),
            "the claimed rows are locked by us"
        );
        tx.commit().await?;
        self.metrics.published_total.inc_by(rows.len() as u64);
        Ok(rows.len())
    }

    /// Refreshes the backlog gauges every few seconds and sweeps old rows every
    /// minute, until `stop` is cancelled. Failures are logged and retried next time.
    pub async fn run_housekeeping(self, stop: CancellationToken) {
        let mut since_sweep = SWEEP_INTERVAL;
        loop {
            if let Err(err) = self.refresh_gauges().await {
                tracing::debug!(%err, "events: cannot read the outbox backlog");
            }
            if since_sweep >= SWEEP_INTERVAL {
                since_sweep = Duration::ZERO;
                match self.sweep().await {
                    Ok((outbox, processed)) if outbox + processed > 0 => {
                        tracing::info!(outbox, processed, "events: swept rows past retention");
                    }
                    Ok(_) => {}
                    Err(err) => tracing::warn!(%err, "events: retention sweep failed"),
                }
            }
            if !sleep_or_stop(GAUGE_INTERVAL, &stop).await {
                return;
            }
            since_sweep += GAUGE_INTERVAL;
        }
    }

    pub async fn refresh_gauges(&self) -> Result<(), sqlx::Error> {
        let (backlog, age_seconds): (i64, f64) = sqlx::query_as(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0)::float8
             FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        self.metrics.outbox_backlog.set(backlog);
        self.metrics
            .outbox_oldest_unpublished_age_seconds
            .set(age_seconds.max(0.0));
        Ok(())
    }

    /// Deletes published outbox rows older than the outbox retention and dedupe
    /// records older than the processed retention, in bounded statements. Returns
    /// the rows deleted from each.
    pub async fn sweep(&self) -> Result<(u64, u64), sqlx::Error> {
        let outbox = self
            .sweep_table("outbox", "published_at", self.config.outbox_retention)
            .await?;
        let processed = self
            .sweep_table(
                "processed_events",
                "processed_at",
                self.config.processed_retention,
            )
            .await?;
        Ok((outbox, processed))
    }

    /// Deletes rows of `table` whose `column` is older than `retention`,
    /// in statements of at most `SWEEP_BATCH_ROWS` (by `ctid`: short statements, short
    /// locks).
    async fn sweep_table(
        &self,
        table: &'static str,
        column: &'static str,
        retention: Duration,
    ) -> Result<u64, sqlx::Error> {
        let statement = format!(
            "DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                 SELECT ctid FROM {table}
                 WHERE {column} < now() - make_interval(secs => $1)
                 LIMIT $2))"
        );
        let mut total = 0;
        for _ in 0..SWEEP_BATCHES_MAX {
            let deleted = sqlx::query(&statement)
                .bind(retention.as_secs_f64())
                .bind(SWEEP_BATCH_ROWS)
                .execute(&self.pool)
                .await?
                .rows_affected();
            total += deleted;
            if deleted < SWEEP_BATCH_ROWS as u64 {
                break;
            }
        }
        Ok(total)
    }
}

/// Waits for the next notification, then takes the ones already buffered with it (a
/// burst of commits needs one round, not one round each). Without a listener it
/// never returns, leaving the wake-up to the polling interval.
async fn wait_for_notification(listener: Option<&mut PgListener>) -> Result<(), sqlx::Error> {
    let Some(listener) = listener else {
        return std::future::pending().await;
    };
    listener.recv().await?;
    while listener.next_buffered().is_some() {}
    Ok(())
}
