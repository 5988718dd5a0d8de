//! The PageRank refresher (docs/scoring-features.md): every `interval`, and early when
//! a new known defaulter is recorded — at most once per [`TRIGGERED_GAP_MIN`], after
//! [`TRIGGER_SETTLE`] so the transaction that asked has committed.

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::{
    sync::Notify,
    time::{Instant, MissedTickBehavior},
};

use crate::{features::graph::PageRankOptions, metrics::Metrics, store};

/// Shortest time between two refreshes when asked for early.
pub const TRIGGERED_GAP_MIN: Duration = Duration::from_secs(60);
/// Pause between a request and the refresh it causes.
pub const TRIGGER_SETTLE: Duration = Duration::from_secs(1);

/// Asks the refresher for an early run (cheap; requests coalesce).
#[derive(Debug, Clone, Default)]
pub struct PageRankTrigger(Arc<Notify>);

impl PageRankTrigger {
    pub fn request(&self) {
        self.0.notify_one();
    }
}

/// Runs until aborted. A zero `interval` refreshes only when asked.
pub async fn refresh_pagerank(
    pool: PgPool,
    interval: Duration,
    trigger: PageRankTrigger,
    metrics: Metrics,
    graph: crate::features::cache::GraphCache,
) {
    let mut ticks = (!interval.is_zero()).then(|| {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticks
    });
    let mut last_run: Option<Instant> = None;
    loop {
        let tick = async {
            match ticks.as_mut() {
                Some(ticks) => {
                    ticks.tick().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = tick => {}
            () = trigger.0.notified() => {
                let earliest = last_run.map_or_else(Instant::now, |last| last + TRIGGERED_GAP_MIN);
                tokio::time::sleep_until(earliest.max(Instant::now() + TRIGGER_SETTLE)).await;
            }
        }
        last_run = Some(Instant::now());
        let started = std::time::Instant::now();
        match store::pagerank::refresh_pagerank(&pool, PageRankOptions::default()).await {
            Ok(Some(run)) => {
                // A refresh follows new defaulters: cached bad rates start over too.
                graph.clear();
                metrics.pagerank("done", Some(run.iterations));
                tracing::info!(
                    parties = run.parties,
                    arcs = run.arcs,
                    seeds = run.seeds,
                    iterations = run.iterations,
                    residual = run.residual,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "pagerank refreshed"
                );
            }
            Ok(None) => {
                metrics.pagerank("skipped", None);
                tracing::debug!("pagerank refresh running elsewhere");
            }
            Err(err) => {
                metrics.pagerank("failed", None);
                tracing::warn!(error = %err, "pagerank refresh failed");
            }
        }
    }
}
