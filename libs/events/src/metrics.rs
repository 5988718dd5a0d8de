//! The events metrics, registered in the service's Prometheus registry so they are
//! served on its admin port with the RPC metrics. Names are listed in docs/events.md.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

#[derive(Debug, Clone)]
pub struct EventsMetrics {
    /// Outbox rows not yet published.
    pub outbox_backlog: IntGauge,
    /// Age of the oldest unpublished row (0 when there is none).
    pub outbox_oldest_unpublished_age_seconds: Gauge,
    /// Events the relay has published (a republication after a crash counts again).
    pub published_total: IntCounter,
    /// Relay rounds that failed (Redis or Postgres unavailable) and backed off.
    pub relay_errors_total: IntCounter,
    /// Events handled and acknowledged, by group (skipped duplicates included).
    pub consumed_total: IntCounterVec,
    /// Deliveries of an event already delivered before (retries, take-overs), by group.
    pub redeliveries_total: IntCounterVec,
    /// Handler failures, by group.
    pub handler_errors_total: IntCounterVec,
    /// Events moved to the dead-letter stream, by group.
    pub dead_letters_total: IntCounterVec,
    /// Stream entries not yet delivered to the group (`XINFO GROUPS` lag), by group.
    pub consumer_lag: IntGaugeVec,
    /// Entries delivered to the group but not acknowledged, by group.
    pub consumer_pending: IntGaugeVec,
}

impl EventsMetrics {
    /// Creates the metrics and registers them in `registry` (once per registry).
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let by_group =
            |name: &str, help: &str| IntCounterVec::new(Opts::new(name, help), &["group"]);
        let gauge_by_group =
            |name: &str, help: &str| IntGaugeVec::new(Opts::new(name, help), &["group"]);
        let metrics = Self {
            outbox_backlog: IntGauge::new(
                "events_outbox_backlog",
                "Outbox rows not yet published",
            )?,
            outbox_oldest_unpublished_age_seconds: Gauge::new(
                "events_outbox_oldest_unpublished_age_seconds",
                "Age of the oldest unpublished outbox row in seconds (0 when none)",
            )?,
            published_total: IntCounter::new(
                "events_published_total",
                "Events the relay published to the stream",
            )?,
            relay_errors_total: IntCounter::new(
                "events_relay_errors_total",
                "Relay rounds that failed and backed off",
            )?,
            consumed_total: by_group(
                "events_consumed_total",
                "Events handled (or skipped as already processed) and acknowledged",
            )?,
            redeliveries_total: by_group(
                "events_redeliveries_total",
                "Deliveries of an event that was delivered before",
            )?,
            handler_errors_total: by_group("events_handler_errors_total", "Handler failures")?,
            dead_letters_total: by_group(
                "events_dead_letters_total",
                "Events moved to the dead-letter stream",
            )?,
            consumer_lag: gauge_by_group(
                "events_consumer_lag",
                "Stream entries not yet delivered to the consumer group",
            )?,
            consumer_pending: gauge_by_group(
                "events_consumer_pending",
                "Entries delivered to the consumer group and not yet acknowledged",
            )?,
        };
        let collectors: [Box<dyn prometheus::core::Collector>; 10] = [
            Box::new(metrics.outbox_backlog.clone()),
            Box::new(metrics.outbox_oldest_unpublished_age_seconds.clone()),
            Box::new(metrics.published_total.clone()),
            Box::new(metrics.relay_errors_total.clone()),
            Box::new(metrics.consumed_total.clone()),
            Box::new(metrics.redeliveries_total.clone()),
            Box::new(metrics.handler_errors_total.clone()),
            Box::new(metrics.dead_letters_total.clone()),
            Box::new(metrics.consumer_lag.clone()),
            Box::new(metrics.consumer_pending.clone()),
        ];
        for collector in collectors {
            registry.register(collector)?;
        }
        Ok(metrics)
    }

    /// Metrics that are not exposed anywhere: for tests and tools that run a relay or
    /// consumer without a server.
    pub fn unregistered() -> Self {
        // A fresh registry accepts each name once, so this cannot fail.
        Self::register(&Registry::new()).expect("fresh registry")
    }
}
