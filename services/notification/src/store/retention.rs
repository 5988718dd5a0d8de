//! Retention: notifications in a final state (SENT, FAILED, SUPPRESSED, DEAD_LETTERED)
//! older than the configured retention are deleted with their attempts (`ON DELETE
//! CASCADE`); PENDING ones are never deleted. Bounded statements, short locks.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::model::Status;

/// Rows one statement deletes at most.
pub const DELETE_BATCH: i64 = 1_000;
/// Statements one sweep runs at most; the rest waits for the next sweep.
pub const DELETE_BATCHES_PER_SWEEP_MAX: u32 = 100;

/// How often the sweep runs (the first one at start-up).
pub const SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3_600);

/// Sweeps every [`SWEEP_INTERVAL`] until `stop`.
pub async fn run(pool: PgPool, retention: std::time::Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(SWEEP_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let cutoff = chrono::Duration::from_std(retention)
            .ok()
            .and_then(|retention| Utc::now().checked_sub_signed(retention))
            .unwrap_or(DateTime::<Utc>::MIN_UTC);
        match delete_settled_before(&pool, cutoff).await {
            Ok(0) => {}
            Ok(deleted) => {
                tracing::info!(deleted, "notification: swept notifications past retention")
            }
            Err(err) => tracing::warn!(%err, "notification: retention sweep failed"),
        }
    }
}

/// The smallest UUIDv7 of `instant`'s millisecond: every notification id (UUIDv7,
/// time-ordered) created before `instant` is below it, so the sweep walks the primary
/// key instead of needing an index of its own.
pub fn first_id_at(instant: DateTime<Utc>) -> Uuid {
    let millis = instant.timestamp_millis().max(0) as u64 & 0xFFFF_FFFF_FFFF;
    // 48 bits of milliseconds, version 7, the RFC 4122 variant, zeros elsewhere.
    Uuid::from_u128((u128::from(millis) << 80) | (0x7 << 76) | (0b10 << 62))
}

/// Deletes the final-state notifications created before `cutoff`. Returns how many.
pub async fn delete_settled_before(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
) -> Result<u64, sqlx::Error> {
    let below = first_id_at(cutoff);
    let mut deleted = 0;
    for _ in 0..DELETE_BATCHES_PER_SWEEP_MAX {
        let batch = sqlx::query(
            "DELETE FROM notifications WHERE notification_id IN ( \
                 SELECT notification_id FROM notifications \
                 WHERE notification_id < $1 AND create_time < $2 AND status <> $3 \
                 ORDER BY notification_id LIMIT $4)",
        )
        .bind(below)
        .bind(cutoff)
        .bind(Status::Pending.as_i16())
        .bind(DELETE_BATCH)
        .execute(pool)
        .await?
        .rows_affected();
        deleted += batch;
        if batch < DELETE_BATCH as u64 {
            break;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_id_of_an_instant_bounds_every_id_made_before_it() {
        let made = Uuid::now_v7();
        let now = Utc::now() + chrono::Duration::milliseconds(1);
        let bound = first_id_at(now);
        assert_eq!(bound.get_version_num(), 7);
        assert!(
            made < bound,
            "an id made before the instant is below its bound"
        );
        assert!(bound < first_id_at(now + chrono::Duration::milliseconds(1)));
        let after = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            now.timestamp() as u64,
            now.timestamp_subsec_nanos(),
        ));
        assert!(
            after >= bound,
            "an id of the instant itself is not below it"
        );
    }
}
