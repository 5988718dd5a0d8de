//! The PageRank refresher (docs/scoring-features.md): every `interval`, and promptly when
//! a new known defaulter is recorded: [`TRIGGER_SETTLE`] after the request (so the
//! transaction that asked has committed). Never two refreshes at once (one task runs
//! them in turn); requests that arrive while one runs coalesce into one more refresh
//! after it, which starts no sooner than the last refresh took (at most half the time
//! refreshing while requests keep coming, e.g. during a bulk load of defaulters).

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use tokio::{
    sync::Notify,
    time::{Instant, MissedTickBehavior},
};

use crate::{features::graph::PageRankOptions, metrics::Metrics, store};

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

/// When a requested refresh may start: [`TRIGGER_SETTLE`] after the request, and no
/// sooner after the last refresh ended than that refresh took.
pub fn requested_start(requested: Instant, last: Option<(Instant, Duration)>) -> Instant {
    let settled = requested + TRIGGER_SETTLE;
    match last {
        Some((ended, took)) => settled.max(ended + took),
        None => settled,
    }
}

/// Runs until aborted. A zero `interval` refreshes only when asked. The schedule's
/// first tick is at start.
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
    // (end, duration) of the last refresh.
    let mut last: Option<(Instant, Duration)> = None;
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
                tokio::time::sleep_until(requested_start(Instant::now(), last)).await;
            }
        }
        let started = Instant::now();
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
        last = Some((Instant::now(), started.elapsed()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_waits_for_the_settle_and_as_long_as_the_last_refresh_took() {
        let now = Instant::now();
        assert_eq!(requested_start(now, None), now + TRIGGER_SETTLE);
        // A quick last refresh long ago: only the settle.
        let long_ago = (now - Duration::from_secs(600), Duration::from_millis(200));
        assert_eq!(requested_start(now, Some(long_ago)), now + TRIGGER_SETTLE);
        // A 5 s refresh that just ended: 5 s after its end.
        let just_ended = (now, Duration::from_secs(5));
        assert_eq!(
            requested_start(now, Some(just_ended)),
            now + Duration::from_secs(5)
        );
    }
}
