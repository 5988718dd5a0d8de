//! The population's records as scoring.proto messages, and batches for IngestSignals.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use microloan_proto::{
    common::v1::Money,
    google::r#type::Date,
    scoring::v1::{self as proto, IngestSignalsRequest, signal::Kind},
};
use prost_types::Timestamp;

use crate::SignalRef;

/// Most signals in one IngestSignals batch (scoring.proto).
pub const BATCH_SIGNALS_MAX: usize = 1_000;

fn timestamp(time: DateTime<Utc>) -> Option<Timestamp> {
    Some(Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    })
}

fn cny(minor_units: i64) -> Option<Money> {
    Some(Money {
        currency_code: "CNY".to_owned(),
        minor_units,
    })
}

fn date(date: NaiveDate) -> Option<Date> {
    Some(Date {
        year: date.year(),
        month: date.month() as i32,
        day: date.day() as i32,
    })
}

/// One record as a scoring.proto `Signal`.
pub fn to_signal(signal: SignalRef<'_>) -> proto::Signal {
    let kind = match signal {
        SignalRef::Edge(edge) => Kind::SocialEdge(proto::SocialEdge {
            source_party_id: edge.source_party_id.clone(),
            target_party_id: edge.target_party_id.clone(),
            kind: edge.kind as i32,
            weight: edge.weight.to_string(),
            occur_time: timestamp(edge.occur_time),
        }),
        SignalRef::Behaviour(event) => Kind::BehaviourEvent(proto::BehaviourEvent {
            customer_id: event.customer_id.to_string(),
            flow: event.flow as i32,
            category: event.category as i32,
            amount: cny(event.amount_fen),
            occur_time: timestamp(event.occur_time),
            counterparty_id: event.counterparty_id.clone().unwrap_or_default(),
        }),
        SignalRef::Sighting(sighting) => Kind::IdentitySighting(proto::IdentitySighting {
            customer_id: sighting.customer_id.to_string(),
            kind: sighting.kind as i32,
            identifier: sighting.identifier.clone(),
            context: sighting.context as i32,
            observe_time: timestamp(sighting.observe_time),
        }),
        SignalRef::Outcome(outcome) => Kind::RepaymentOutcome(proto::RepaymentOutcome {
            customer_id: outcome.customer_id.to_string(),
            loan_id: outcome.loan_id.to_string(),
            installment_sequence: outcome.installment_sequence,
            due_date: date(outcome.due_date),
            outcome: outcome.outcome as i32,
            days_past_due: outcome.days_past_due,
            amount_due: cny(outcome.amount_due_fen),
            amount_paid: cny(outcome.amount_paid_fen),
            observe_time: timestamp(outcome.observe_time),
        }),
    };
    proto::Signal { kind: Some(kind) }
}

/// `signals` in IngestSignals batches of at most `batch_signals` (1..=1000), with
/// request ids `<prefix>-<batch index>` (so a replay of the same stream is deduplicated;
/// the prefix must be letters, digits, '_' or '-', at most 50 characters).
pub fn batches(
    signals: Vec<proto::Signal>,
    prefix: &str,
    batch_signals: usize,
) -> Vec<IngestSignalsRequest> {
    let size = batch_signals.clamp(1, BATCH_SIGNALS_MAX);
    let mut out = Vec::with_capacity(signals.len().div_ceil(size));
    let mut rest = signals.into_iter().peekable();
    while rest.peek().is_some() {
        let chunk: Vec<proto::Signal> = rest.by_ref().take(size).collect();
        out.push(IngestSignalsRequest {
            request_id: format!("{prefix}-{:07}", out.len()),
            signals: chunk,
        });
    }
    out
}
