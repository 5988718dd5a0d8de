//! The scoring metrics, registered in the service's registry (served on the admin port).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

use crate::ingest::KindCounts;

#[derive(Debug, Clone)]
pub struct Metrics {
    /// IngestSignals batches by result: applied, duplicate, refused (stream aborted).
    batches_total: IntCounterVec,
    /// Signals stored, by kind.
    signals_accepted_total: IntCounterVec,
    /// Signals rejected as invalid.
    signals_rejected_total: IntCounter,
    /// PageRank refreshes by result: done, skipped (another replica), failed.
    pagerank_refreshes_total: IntCounterVec,
    /// Iterations of the last completed PageRank refresh.
    pagerank_iterations: IntGauge,
    /// Evaluate decisions, by outcome.
    decisions_total: IntCounterVec,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            batches_total: IntCounterVec::new(
                Opts::new(
                    "scoring_signal_batches_total",
                    "IngestSignals batches, by result (applied, duplicate, refused)",
                ),
                &["result"],
            )?,
            signals_accepted_total: IntCounterVec::new(
                Opts::new("scoring_signals_accepted_total", "Signals stored, by kind"),
                &["kind"],
            )?,
            signals_rejected_total: IntCounter::new(
                "scoring_signals_rejected_total",
                "Signals rejected as invalid",
            )?,
            pagerank_refreshes_total: IntCounterVec::new(
                Opts::new(
                    "scoring_pagerank_refreshes_total",
                    "PageRank refreshes, by result (done, skipped, failed)",
                ),
                &["result"],
            )?,
            pagerank_iterations: IntGauge::new(
                "scoring_pagerank_iterations",
                "Power iterations of the last completed PageRank refresh",
            )?,
            decisions_total: IntCounterVec::new(
                Opts::new(
                    "scoring_decisions_total",
                    "Evaluate decisions, by outcome (approved, declined, manual_review)",
                ),
                &["outcome"],
            )?,
        };
        registry.register(Box::new(metrics.batches_total.clone()))?;
        registry.register(Box::new(metrics.signals_accepted_total.clone()))?;
        registry.register(Box::new(metrics.signals_rejected_total.clone()))?;
        registry.register(Box::new(metrics.pagerank_refreshes_total.clone()))?;
        registry.register(Box::new(metrics.pagerank_iterations.clone()))?;
        registry.register(Box::new(metrics.decisions_total.clone()))?;
        Ok(metrics)
    }

    pub fn batch(&self, result: &str) {
        self.batches_total.with_label_values(&[result]).inc();
    }

    pub fn signals(&self, counts: &KindCounts, rejected: usize) {
        for (kind, count) in [
            ("social_edge", counts.social_edges),
            ("behaviour_event", counts.behaviour_events),
            ("identity_sighting", counts.identity_sightings),
            ("repayment_outcome", counts.repayment_outcomes),
        ] {
            self.signals_accepted_total
                .with_label_values(&[kind])
                .inc_by(u64::try_from(count).unwrap_or(0));
        }
        self.signals_rejected_total.inc_by(rejected as u64);
    }

    pub fn pagerank(&self, result: &str, iterations: Option<u32>) {
        self.pagerank_refreshes_total
            .with_label_values(&[result])
            .inc();
        if let Some(iterations) = iterations {
            self.pagerank_iterations.set(i64::from(iterations));
        }
    }

    /// One decision of `outcome` (a DecisionOutcome number).
    pub fn decision(&self, outcome: i32) {
        let label = match microloan_proto::common::v1::DecisionOutcome::try_from(outcome) {
            Ok(microloan_proto::common::v1::DecisionOutcome::Approved) => "approved",
            Ok(microloan_proto::common::v1::DecisionOutcome::Declined) => "declined",
            Ok(microloan_proto::common::v1::DecisionOutcome::ManualReview) => "manual_review",
            _ => "unspecified",
        };
        self.decisions_total.with_label_values(&[label]).inc();
    }
}
