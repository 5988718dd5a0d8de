//! The reservation-expiry sweep (ledger.proto's two-phase timeout rule): a pending
//! transfer whose `timeout_seconds` have passed releases its reservation even if no
//! batch and no read ever touches its accounts again. Batches and `GetAccount` still
//! expire lazily what they touch; this background task bounds how long a past-due
//! reservation can keep counting as pending to about one interval.

use std::time::Duration;

use sqlx::PgPool;

use crate::store::transfers::expire_due_reservations;

/// Reservations one sweep transaction expires at most: short transactions, few locks.
pub const SWEEP_BATCH: i64 = 500;
/// Transactions one tick runs at most; a larger backlog waits for the next tick.
pub const SWEEP_BATCHES_PER_TICK_MAX: u32 = 20;

/// Sweeps every `interval` until the task is dropped (the caller aborts it at
/// shutdown: an aborted sweep's transaction rolls back and changes nothing).
pub async fn run(pool: PgPool, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match sweep(&pool).await {
            Ok(0) => {}
            Ok(accounts) => tracing::info!(accounts, "ledger: expired due reservations"),
            Err(err) => tracing::warn!(%err, "ledger: reservation-expiry sweep failed"),
        }
    }
}

/// One tick: expires due reservations in batches of [`SWEEP_BATCH`] until none is left
/// (or [`SWEEP_BATCHES_PER_TICK_MAX`] batches ran). Returns the accounts released on.
pub async fn sweep(pool: &PgPool) -> Result<u64, crate::error::LedgerError> {
    let mut total = 0;
    for _ in 0..SWEEP_BATCHES_PER_TICK_MAX {
        let released = expire_due_reservations(pool, None, SWEEP_BATCH).await?;
        if released == 0 {
            break;
        }
        total += released;
    }
    Ok(total)
}
