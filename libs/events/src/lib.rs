//! Domain events (DESIGN §3, §7): the transactional outbox, the relay that publishes it
//! to one Redis Stream, and consumer groups that apply each event once. Nothing here
//! knows a service: producers call [`append`], consumers implement [`Handler`].
//!
//! ```text
//! producer tx ──append──▶ outbox (Postgres) ──relay──▶ <prefix>{events} (Redis Stream)
//!                                                        │ XREADGROUP per group
//!                                                        ▼
//!                    consumer tx: processed_events + handler effects ──▶ commit ──▶ XACK
//! ```
//!
//! Delivery is at least once, effects happen once per group (dedupe on the event id),
//! and one customer's events are published in commit order. docs/events.md has the
//! design, the knobs, the metrics and the operator's guide.
#![forbid(unsafe_code)]

pub mod config;
pub mod consumer;
pub mod metrics;
pub mod outbox;
pub mod relay;

use std::{future::Future, sync::Arc, time::Duration};

use microloan_platform::cache::Cache;
use sqlx::PgPool;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

pub use config::EventsConfig;
pub use consumer::{BatchFailure, Consumer, Fresh, GroupStart, Handler, HandlerError};
pub use metrics::EventsMetrics;
pub use outbox::{Appended, NewEvent, append, append_batch};
pub use relay::Relay;

/// The outbox and dedupe tables, applied in every service's database with the
/// service's own migrations (`App::MIGRATORS_SHARED`).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How long [`Events::stop`] waits for the background tasks before abandoning them
/// (an abandoned relay batch rolls back and is published again later; an abandoned
/// consumer batch rolls back and its entries, still pending, are handled again). Small
/// enough to fit the pod's termination budget beside the gRPC drain (docs/deploy.md:
/// preStop 10 s + drain 20 s + 10 s for the rest).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The events machinery of one service process: the relay and housekeeping, started
/// for every service (an empty outbox costs one idle `LISTEN`), plus the consumer
/// groups the service registers with [`Events::consume`].
#[derive(Debug)]
pub struct Events {
    pool: PgPool,
    cache: Cache,
    config: Arc<EventsConfig>,
    metrics: EventsMetrics,
    stop: CancellationToken,
    tasks: JoinSet<()>,
}

impl Events {
    /// Registers the metrics in `registry` (the server's, so they are served on the
    /// admin port) and starts the relay and housekeeping.
    pub fn start(
        config: EventsConfig,
        pool: PgPool,
        cache: Cache,
        registry: &prometheus::Registry,
    ) -> prometheus::Result<Self> {
        let metrics = EventsMetrics::register(registry)?;
        let config = Arc::new(config);
        let stop = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let relay = Relay::new(
            pool.clone(),
            cache.clone(),
            Arc::clone(&config),
            metrics.clone(),
        );
        tasks.spawn(relay.clone().run(stop.clone()));
        tasks.spawn(relay.run_housekeeping(stop.clone()));
        Ok(Self {
            pool,
            cache,
            config,
            metrics,
            stop,
            tasks,
        })
    }

    /// Starts a consumer of `group` (by convention the consuming service's name, or
    /// `<service>.<purpose>` when it has several) running `handler`.
    pub fn consume<H: Handler>(&mut self, group: &str, handler: H, start: GroupStart) {
        let consumer = Consumer::new(
            group,
            handler,
            self.pool.clone(),
            self.cache.clone(),
            Arc::clone(&self.config),
            self.metrics.clone(),
        )
        .starting_at(start);
        self.tasks.spawn(consumer.run(self.stop.clone()));
    }

    pub fn config(&self) -> &EventsConfig {
        &self.config
    }

    /// Stops every task: the relay after its current batch, consumers after their
    /// current event. Waits at most [`STOP_GRACE`].
    pub async fn stop(mut self) {
        self.stop.cancel();
        let joined = tokio::time::timeout(STOP_GRACE, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if joined.is_err() {
            tracing::warn!(
                grace_s = STOP_GRACE.as_secs(),
                "events tasks did not stop in time; abandoning them"
            );
            self.tasks.abort_all();
        }
    }
}

/// Runs `serve` (the gRPC server) with the events tasks beside it, then stops them:
/// the relay keeps publishing while in-flight calls drain, so their events leave too.
pub async fn serve_with<F>(events: Events, serve: F) -> anyhow::Result<()>
where
    F: Future<Output = anyhow::Result<()>>,
{
    let outcome = serve.await;
    events.stop().await;
    outcome
}

/// Exponential back-off between `BACKOFF_MIN` and a ceiling.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

const BACKOFF_MIN: Duration = Duration::from_millis(10);

impl Backoff {
    pub(crate) fn new(max: Duration) -> Self {
        Self {
            next: BACKOFF_MIN.min(max),
            max,
        }
    }

    pub(crate) fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(self.max);
        delay
    }

    pub(crate) fn reset(&mut self) {
        self.next = BACKOFF_MIN.min(self.max);
    }
}

/// Sleeps for `delay` unless `stop` is cancelled first; true if the sleep completed.
pub(crate) async fn sleep_or_stop(delay: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_ceiling_and_resets() {
        let mut backoff = Backoff::new(Duration::from_millis(50));
        let delays: Vec<u128> = (0..5).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [10, 20, 40, 50, 50]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Duration::from_millis(10));
    }
}
