//! Credit-history features from instalment states and the credit line, pure.

use chrono::{DateTime, Utc};
use microloan_proto::scoring::v1::RepaymentOutcomeKind;

/// An instalment's current state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InstallmentState {
    pub outcome: RepaymentOutcomeKind,
    /// The worst seen.
    pub days_past_due: i32,
    /// The latest observation.
    pub observe_time: DateTime<Utc>,
}

/// A new observation of an instalment folded into its state: WRITTEN_OFF is final;
/// paid (EARLY, ON_TIME, LATE) after a MISSED is LATE, and EARLY or ON_TIME after a
/// LATE stays LATE; otherwise the later observation wins. Days past due only grow.
/// `store::signals` applies the same rule in SQL.
pub fn merge_installment_state(old: &InstallmentState, new: &InstallmentState) -> InstallmentState {
    use RepaymentOutcomeKind::{Early, Late, Missed, OnTime, WrittenOff};
    let outcome = match (old.outcome, new.outcome) {
        (WrittenOff, _) | (_, WrittenOff) => WrittenOff,
        (Missed, Early | OnTime | Late) | (Late, Early | OnTime) => Late,
        _ if new.observe_time >= old.observe_time => new.outcome,
        _ => old.outcome,
    };
    InstallmentState {
        outcome,
        days_past_due: old.days_past_due.max(new.days_past_due),
        observe_time: old.observe_time.max(new.observe_time),
    }
}

/// Instalments paid early or on time over instalments with any outcome; `None` without history.
pub fn on_time_ratio(outcomes: &[RepaymentOutcomeKind]) -> Option<f64> {
    let on_time = outcomes
        .iter()
        .filter(|outcome| {
            matches!(
                outcome,
                RepaymentOutcomeKind::Early | RepaymentOutcomeKind::OnTime
            )
        })
        .count();
    (!outcomes.is_empty()).then(|| on_time as f64 / outcomes.len() as f64)
}

/// Share of the limit drawn: (limit − available) / limit; `None` without a line or at limit 0.
pub fn utilisation(limit_fen: i64, available_fen: i64) -> Option<f64> {
    (limit_fen > 0).then(|| {
        let drawn = (limit_fen - available_fen.clamp(0, limit_fen)) as f64;
        drawn / limit_fen as f64
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use RepaymentOutcomeKind::*;

    #[test]
    fn on_time_counts_early_and_on_time_only() {
        assert_eq!(on_time_ratio(&[]), None);
        assert_eq!(
            on_time_ratio(&[Early, OnTime, Late, Missed, WrittenOff]),
            Some(0.4)
        );
    }

    #[test]
    fn a_missed_instalment_paid_later_is_late_and_a_write_off_is_final() {
        let state = |outcome, days, seconds| InstallmentState {
            outcome,
            days_past_due: days,
            observe_time: DateTime::from_timestamp(seconds, 0).expect("time"),
        };
        let merged = merge_installment_state(&state(Missed, 30, 10), &state(OnTime, 0, 20));
        assert_eq!((merged.outcome, merged.days_past_due), (Late, 30));
        let merged = merge_installment_state(&state(WrittenOff, 180, 10), &state(Late, 0, 20));
        assert_eq!(merged.outcome, WrittenOff);
        // An older observation does not override a newer one.
        let merged = merge_installment_state(&state(Missed, 7, 20), &state(Missed, 1, 10));
        assert_eq!((merged.outcome, merged.days_past_due), (Missed, 7));
    }

    #[test]
    fn utilisation_is_the_drawn_share() {
        assert_eq!(utilisation(0, 0), None);
        assert_eq!(utilisation(1_000_000, 250_000), Some(0.75));
        assert_eq!(utilisation(1_000_000, 2_000_000), Some(0.0));
    }
}
