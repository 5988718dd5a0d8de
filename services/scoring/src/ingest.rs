//! One IngestSignals batch: checked, deduplicated on its request_id, parsed, and applied
//! in one transaction (all of its valid signals or none).

use microloan_platform::idempotency::{self, RequestKey};
use microloan_proto::scoring::v1::IngestSignalsRequest;
use prost::Message;
use sqlx::PgPool;

use crate::{
    error::ScoringError,
    features::cache::GraphCache,
    signals::{BATCH_SIGNALS_MAX, Problem, Signals, parse_batch},
    store::signals::{Applied, apply_signals},
};

/// The idempotency scope's RPC name.
const RPC: &str = "IngestSignals";

/// What became of one batch.
#[derive(Debug, Clone, PartialEq)]
pub enum BatchOutcome {
    /// Its request_id was already applied with the same body: nothing stored.
    Duplicate,
    Applied {
        /// The valid signals, by kind (stored).
        counts: KindCounts,
        /// `(signal_index, problem)` of each rejected signal.
        rejected: Vec<(usize, Problem)>,
        effects: Applied,
    },
}

/// Accepted signals per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KindCounts {
    pub social_edges: i64,
    pub behaviour_events: i64,
    pub identity_sightings: i64,
    pub repayment_outcomes: i64,
}

impl KindCounts {
    fn of(signals: &Signals) -> Self {
        let count = |len: usize| i64::try_from(len).unwrap_or(i64::MAX);
        Self {
            social_edges: count(signals.edges.len()),
            behaviour_events: count(signals.behaviours.len()),
            identity_sightings: count(signals.sightings.len()),
            repayment_outcomes: count(signals.outcomes.len()),
        }
    }

    pub fn total(&self) -> i64 {
        self.social_edges
            + self.behaviour_events
            + self.identity_sightings
            + self.repayment_outcomes
    }
}

/// The stream-aborting problems of a batch: a bad request_id, more than 1000 signals.
pub fn check_batch(request: &IngestSignalsRequest) -> Result<(), ScoringError> {
    let mut violations = Vec::new();
    if let Some(problem) = idempotency::request_id_problem(&request.request_id) {
        violations.push(("request_id".to_owned(), problem.to_owned()));
    }
    if request.signals.len() > BATCH_SIGNALS_MAX {
        violations.push((
            "signals".to_owned(),
            format!(
                "at most {BATCH_SIGNALS_MAX} signals per batch, got {}",
                request.signals.len()
            ),
        ));
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(ScoringError::InvalidArgument(violations))
    }
}

/// Applies one batch for `caller` (its idempotency scope); once committed, drops the
/// cached neighbourhood features it may change from `graph`.
pub async fn apply_batch(
    pool: &PgPool,
    graph: &GraphCache,
    caller: &str,
    request: &IngestSignalsRequest,
) -> Result<BatchOutcome, ScoringError> {
    check_batch(request)?;
    let body = IngestSignalsRequest {
        request_id: String::new(),
        signals: request.signals.clone(),
    }
    .encode_to_vec();
    let key = RequestKey {
        caller,
        rpc: RPC,
        request_id: &request.request_id,
        body: &body,
    };
    let mut tx = pool.begin().await?;
    if idempotency::claim(&mut tx, key).await?.is_some() {
        return Ok(BatchOutcome::Duplicate);
    }
    let (signals, rejected) = parse_batch(&request.signals);
    let effects = apply_signals(&mut tx, &signals).await?;
    let counts = KindCounts::of(&signals);
    debug_assert_eq!(
        counts.total() + rejected.len() as i64,
        request.signals.len() as i64,
        "every signal is stored or rejected"
    );
    // The batch's accepted count, as the record of its first application.
    let record = counts.total().to_le_bytes();
    idempotency::record_response(&mut tx, key, &record).await?;
    tx.commit().await?;
    graph.invalidate(signals.touched_parties().iter().map(String::as_str));
    Ok(BatchOutcome::Applied {
        counts,
        rejected,
        effects,
    })
}
