//! The relay: publishes committed outbox rows to the Redis Stream, in id order per
//! partition, and the housekeeping beside it (backlog gauges, retention sweep).
//!
//! One round: find the partitions with unpublished rows; for each, in one Postgres
//! transaction, take the partition's advisory lock (`pg_try_advisory_xact_lock`: a
//! partition another relay holds is skipped, never waited for), claim up to
//! `relay_batch_size_max` rows in id order, `XADD` them in one `MULTI`/`EXEC`, mark them
//! published and commit. The lock lasts until that commit, so no two relays publish a
//! partition at once, and batches of one partition follow each other in id order.
//!
//! A crash between `EXEC` and the commit publishes the batch again on the next round
//! (delivery is at least once; consumers deduplicate on the event id).

use std::{sync::Arc, time::Duration};

use microloan_platform::cache::Cache;
use sqlx::{PgPool, postgres::PgListener};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::{
    Backoff,
    config::EventsConfig,
    metrics::EventsMetrics,
    outbox::{NOTIFY_CHANNEL, PARTITIONS, RELAY_LOCK_CLASS},
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
/// Batches one round publishes from a partition before moving to the next one, so a
/// deep partition cannot starve the others.
const ROUND_BATCHES_PER_PARTITION_MAX: u32 = 8;

/// Publishes one service's outbox. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Relay {
    pool: PgPool,
    cache: Cache,
    config: Arc<EventsConfig>,
    metrics: EventsMetrics,
}

/// How one partition's batch went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Batch {
    /// Another relay holds the partition.
    Busy,
    /// Published this many rows (0: nothing to do).
    Published(usize),
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
        let mut backoff = Backoff::new(self.config.relay_backoff_max);
        // Relays start at different partitions so replicas rarely collide on one.
        let mut first_partition = (Uuid::new_v4().as_u128() % u128::from(PARTITIONS)) as u16;
        while !stop.is_cancelled() {
            // Listen before publishing: a commit during the round then wakes the next.
            if listener.is_none() {
                listener = match self.listen().await {
                    Ok(listener) => Some(listener),
                    Err(err) => {
                        tracing::warn!(%err, "events relay cannot LISTEN; polling instead");
                        None
                    }
                };
            }
            first_partition = (first_partition + 1) % PARTITIONS;
            match self.publish_round(first_partition).await {
                Ok(more) => {
                    backoff.reset();
                    if more {
                        continue;
                    }
                }
                Err(err) => {
                    self.metrics.relay_errors_total.inc();
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %err, retry_ms = delay.as_millis() as u64, "events relay: publishing failed; the outbox keeps the events");
                    if !sleep_or_stop(delay, &stop).await {
                        return;
                    }
                    continue;
                }
            }
            let woken = tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.config.relay_poll_interval) => Ok(()),
                result = wait_for_notification(listener.as_mut()) => result,
            };
            if let Err(err) = woken {
                tracing::warn!(%err, "events relay lost its LISTEN connection; reconnecting");
                listener = None;
            }
        }
    }

    async fn listen(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(NOTIFY_CHANNEL).await?;
        Ok(listener)
    }

    /// Publishes every partition that has work, starting at `first_partition`.
    /// Returns whether work is probably left (a partition filled its batches).
    pub async fn publish_round(&self, first_partition: u16) -> anyhow::Result<bool> {
        // One probe per partition on the partial index: cheap when the outbox is empty.
        let waiting: Vec<i16> = sqlx::query_scalar(
            "SELECT p::int2 FROM generate_series(0, $1 - 1) AS p
             WHERE EXISTS (SELECT 1 FROM outbox WHERE partition = p AND published_at IS NULL)",
        )
        .bind(i32::from(PARTITIONS))
        .fetch_all(&self.pool)
        .await?;
        let mut more = false;
        for offset in 0..PARTITIONS {
            let partition = ((first_partition + offset) % PARTITIONS) as i16;
            if !waiting.contains(&partition) {
                continue;
            }
            for _ in 0..ROUND_BATCHES_PER_PARTITION_MAX {
                match self.publish_batch(partition).await? {
                    Batch::Busy => break,
                    Batch::Published(count) if count < self.config.relay_batch_size_max => break,
                    Batch::Published(_) => more = true,
                }
            }
        }
        Ok(more)
    }

    async fn publish_batch(&self, partition: i16) -> anyhow::Result<Batch> {
        let mut tx = self.pool.begin().await?;
        let claimed: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1, $2)")
            .bind(RELAY_LOCK_CLASS)
            .bind(i32::from(partition))
            .fetch_one(&mut *tx)
            .await?;
        if !claimed {
            tx.rollback().await?;
            return Ok(Batch::Busy);
        }
        // SKIP LOCKED: only relays lock outbox rows and they hold the partition lock,
        // so in practice nothing is skipped; it keeps a relay from ever queueing
        // behind another transaction's row locks.
        let rows: Vec<(i64, Uuid, Uuid, String, Vec<u8>)> = sqlx::query_as(
            "SELECT id, event_id, customer_id, event_type, payload FROM outbox
             WHERE partition = $1 AND published_at IS NULL
             ORDER BY id LIMIT $2
             FOR UPDATE SKIP LOCKED",
        )
        .bind(partition)
        .bind(self.config.relay_batch_size_max as i64)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(Batch::Published(0));
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
            "UPDATE outbox SET published_at = now()
             WHERE partition = $1 AND published_at IS NULL AND id = ANY($2)",
        )
        .bind(partition)
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
        Ok(Batch::Published(rows.len()))
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
