//! The notification metrics, registered in the service's registry (served on the admin
//! port). Names are listed in docs/notification.md.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry};

use crate::model::{Channel, Outcome, Status};

#[derive(Debug, Clone)]
pub struct Metrics {
    /// Notifications created, by channel and initial status.
    created_total: IntCounterVec,
    /// Delivery attempts, by channel and outcome.
    attempts_total: IntCounterVec,
    /// Notifications that reached a final status through delivery, by channel and status.
    settled_total: IntCounterVec,
    /// How long one provider call (or store/log) took, by channel.
    attempt_seconds: HistogramVec,
    /// Open Subscribe streams on this replica.
    open_streams: IntGaugeVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            created_total: IntCounterVec::new(
                Opts::new(
                    "notification_created_total",
                    "Notifications created, by channel and initial status",
                ),
                &["channel", "status"],
            )?,
            attempts_total: IntCounterVec::new(
                Opts::new(
                    "notification_delivery_attempts_total",
                    "Delivery attempts, by channel and outcome",
                ),
                &["channel", "outcome"],
            )?,
            settled_total: IntCounterVec::new(
                Opts::new(
                    "notification_settled_total",
                    "Notifications settled by the workers, by channel and resulting status",
                ),
                &["channel", "status"],
            )?,
            attempt_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "notification_delivery_attempt_seconds",
                    "Duration of one delivery attempt, by channel",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["channel"],
            )?,
            open_streams: IntGaugeVec::new(
                Opts::new(
                    "notification_subscribe_open_streams",
                    "Open Subscribe streams on this replica",
                ),
                &["replica"],
            )?,
        };
        registry.register(Box::new(metrics.created_total.clone()))?;
        registry.register(Box::new(metrics.attempts_total.clone()))?;
        registry.register(Box::new(metrics.settled_total.clone()))?;
        registry.register(Box::new(metrics.attempt_seconds.clone()))?;
        registry.register(Box::new(metrics.open_streams.clone()))?;
        Ok(metrics)
    }

    pub fn created(&self, channel: Channel, status: Status) {
        self.created_total
            .with_label_values(&[channel.name(), status_name(status)])
            .inc();
    }

    pub fn attempted(&self, channel: Channel, outcome: Outcome, seconds: f64) {
        self.attempts_total
            .with_label_values(&[channel.name(), outcome.name()])
            .inc();
        self.attempt_seconds
            .with_label_values(&[channel.name()])
            .observe(seconds);
    }

    pub fn settled(&self, channel: Channel, status: Status) {
        self.settled_total
            .with_label_values(&[channel.name(), status_name(status)])
            .inc();
    }

    pub fn streams(&self, delta: i64) {
        self.open_streams.with_label_values(&["self"]).add(delta);
    }
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Pending => "PENDING",
        Status::Sent => "SENT",
        Status::Failed => "FAILED",
        Status::DeadLettered => "DEAD_LETTERED",
        Status::Suppressed => "SUPPRESSED",
    }
}
