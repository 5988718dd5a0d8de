//! The scoring consumer group: the ledger's repayment and delinquency events become
//! repayment outcomes (history features, the known-defaulter set), CustomerCreated's
//! device a sighting, and the line events keep the utilisation's limit and headroom.
//! Applied through the same store functions as IngestSignals, in the consumer's
//! transaction (which also records the event id: each event applies once).

use chrono::{DateTime, Utc};
use microloan_events::{Handler, HandlerError};
use microloan_proto::{
    common::v1::{CreditLineStatus, Money, WriteOffReason},
    events::v1::{Event, event::Payload},
    scoring::v1::{IdentifierKind, RepaymentOutcomeKind, SightingContext},
};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use microloan_platform::client::PeerChannel;
use microloan_proto::{
    account::v1::account_service_client::AccountServiceClient, common::v1::CreditLineChangeSource,
};

use crate::{
    features::cache::GraphCache,
    refresh::PageRankTrigger,
    review::{self, LineRules},
    signals::{Outcome, Sighting, Signals, parse_uuid},
    store::signals::{LineUpdate, apply_signals, lock_components, update_credit_line},
};

/// The consumer group (DESIGN §7: the consuming service's name).
pub const GROUP: &str = "scoring";
/// Longest device fingerprint kept from CustomerCreated.
const DEVICE_CHARS_MAX: usize = 128;

/// Turns events into signals; see the module docs.
#[derive(Debug, Clone, Default)]
pub struct SignalsFromEvents {
    /// Asked for an early PageRank refresh when a known defaulter is new.
    pub pagerank: PageRankTrigger,
    /// Evaluate's neighbourhood features: once the events committed, an outcome drops
    /// the entries around its customer.
    pub graph: GraphCache,
    /// The live line policy (review.rs): `None` only where no account service exists.
    pub lines: Option<LivePolicy>,
}

/// The line policy applied as delinquency and repayment events arrive: an overdue
/// instalment freezes the line (and cuts it at 30+ days past due), a repayment or
/// pay-off that leaves nothing overdue unfreezes a line the policy froze. No rescoring
/// here: raises and rate cuts are the review's.
#[derive(Debug, Clone)]
pub struct LivePolicy {
    pub account: AccountServiceClient<PeerChannel>,
    pub rules: LineRules,
}

impl LivePolicy {
    /// Runs in the consumer's transaction after the event's signals are applied, so the
    /// standing includes them. Redelivery (the transaction rolled back after account
    /// applied the change) sends the same request_id, which account answers from its
    /// idempotency record; a plan that changed since gets IDEMPOTENCY_KEY_REUSED, and is
    /// applied by the next event or review instead.
    async fn apply(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
        customer_id: Uuid,
    ) -> Result<(), HandlerError> {
        let standing = crate::store::lines::standing(tx, customer_id).await?;
        let line = match review::fetch_line(&self.account, customer_id).await {
            Ok(Some(line)) => line,
            Ok(None) => return Ok(()),
            Err(status) => {
                return Err(HandlerError::Retry(anyhow::anyhow!(
                    "account GetCreditLine: {}",
                    review::peer_reason(&status)
                )));
            }
        };
        let Some(plan) = review::plan(&self.rules, &line, &standing, None) else {
            return Ok(());
        };
        let request_id = format!("{}-risk-policy", event.event_id);
        match review::apply_plan(
            &self.account,
            request_id,
            customer_id,
            &plan,
            CreditLineChangeSource::RiskPolicy,
            "",
        )
        .await
        {
            Ok(_) => {
                let (frozen, raise_score) = review::memory_of(&plan);
                crate::store::lines::remember(tx, customer_id, frozen, raise_score).await?;
                Ok(())
            }
            Err(status) if review::transient(&status) => Err(HandlerError::Retry(anyhow::anyhow!(
                "account AdjustCreditLine: {}",
                review::peer_reason(&status)
            ))),
            Err(status) => {
                // Refused for good (line closed meanwhile, key reused after a changed
                // plan): the event's signals still apply; the next event or review acts.
                tracing::warn!(
                    %customer_id,
                    event_id = %event.event_id,
                    reason = review::peer_reason(&status),
                    "line policy change refused by account"
                );
                Ok(())
            }
        }
    }
}

impl Handler for SignalsFromEvents {
    fn committed(&self, events: &[&Event]) {
        for event in events {
            if let Ok(Some((_, signals, _))) = signals_of_event(event) {
                self.graph
                    .invalidate(signals.touched_parties().iter().map(String::as_str));
            }
        }
    }

    async fn handle(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let Some((customer_id, signals, line)) =
            signals_of_event(event).map_err(|why| HandlerError::Reject(anyhow::anyhow!(why)))?
        else {
            return Ok(());
        };
        // This transaction applies many events, each writing identity, credit and line
        // rows of its own customer in event order: the components lock is taken before
        // the first of them (re-entrant for the later events), so a batch holding the
        // lock never waits for a row this transaction holds (no deadlock, see
        // `store::signals::Locking`).
        lock_components(tx).await?;
        let applied = apply_signals(tx, &signals).await?;
        if applied.new_defaulters > 0 {
            self.pagerank.request();
        }
        if let Some(update) = line {
            update_credit_line(tx, customer_id, update, event_time(event)).await?;
        }
        if let Some(policy) = &self.lines
            && matches!(
                &event.payload,
                Some(
                    Payload::InstallmentOverdue(_)
                        | Payload::RepaymentReceived(_)
                        | Payload::LoanPaidOff(_)
                )
            )
        {
            policy.apply(tx, event, customer_id).await?;
        }
        // A loan written off as fraud confirms the fraud: it seeds the ring rule and
        // blacklists the customer's identifiers (fraud.rs).
        if let Some(Payload::LoanWrittenOff(written_off)) = &event.payload
            && written_off.reason == WriteOffReason::Fraud as i32
        {
            crate::fraud::confirm_fraud(tx, customer_id, "LoanWrittenOff", event_time(event))
                .await?;
        }
        Ok(())
    }
}

fn event_time(event: &Event) -> DateTime<Utc> {
    event
        .occurred_at
        .as_ref()
        .and_then(|time| {
            DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).unwrap_or(0))
        })
        .unwrap_or_else(Utc::now)
}

fn fen(money: Option<&Money>) -> i64 {
    money.map_or(0, |money| money.minor_units)
}

/// The signals and line update an event implies; `Ok(None)` for events scoring does
/// not use, `Err` for an event that can never apply (dead-lettered).
pub fn signals_of_event(
    event: &Event,
) -> Result<Option<(Uuid, Signals, Option<LineUpdate>)>, String> {
    let Some(payload) = &event.payload else {
        return Ok(None);
    };
    let customer_id =
        parse_uuid(&event.customer_id).ok_or_else(|| "customer_id is not a UUID".to_owned())?;
    let time = event_time(event);
    let loan =
        |loan_id: &str| parse_uuid(loan_id).ok_or_else(|| "loan_id is not a UUID".to_owned());
    // Loan-level outcomes (paid off, written off) are sequence 0: they move the worst
    // days past due and the known-defaulter set, not the instalment counts.
    let loan_outcome = |loan_id: Uuid, outcome, days_past_due, amount_due_fen| Outcome {
        customer_id,
        loan_id,
        installment_sequence: 0,
        due_date: None,
        outcome,
        days_past_due,
        amount_due_fen,
        amount_paid_fen: 0,
        observe_time: time,
    };
    let mut signals = Signals::default();
    let mut line = None;
    match payload {
        Payload::CustomerCreated(created) => {
            let device = created.device_id.as_str();
            if device.is_empty() || device.chars().count() > DEVICE_CHARS_MAX {
                return Ok(None);
            }
            signals.sightings.push(Sighting {
                customer_id,
                kind: IdentifierKind::Device,
                identifier: device.to_owned(),
                context: SightingContext::Onboarding,
                observe_time: time,
            });
        }
        Payload::InstallmentOverdue(overdue) => {
            signals.outcomes.push(Outcome {
                installment_sequence: overdue.installment_sequence.max(1),
                due_date: overdue.due_date.as_ref().and_then(|date| {
                    chrono::NaiveDate::from_ymd_opt(
                        date.year,
                        u32::try_from(date.month).ok()?,
                        u32::try_from(date.day).ok()?,
                    )
                }),
                outcome: RepaymentOutcomeKind::Missed,
                days_past_due: overdue.days_past_due,
                amount_due_fen: fen(overdue.overdue_amount.as_ref()),
                ..loan_outcome(loan(&overdue.loan_id)?, RepaymentOutcomeKind::Missed, 0, 0)
            });
        }
        Payload::RepaymentReceived(received) => {
            let repayment = received
                .repayment
                .as_ref()
                .ok_or_else(|| "RepaymentReceived without its repayment".to_owned())?;
            let loan_id = loan(&repayment.loan_id)?;
            // Overdue and current instalments (they pay penalty or interest); prepaid
            // principal-only allocations are not instalments falling due. A payment on
            // an instalment already MISSED becomes LATE when merged into its state.
            for allocation in &repayment.allocations {
                let charges = fen(allocation.penalty.as_ref()) + fen(allocation.interest.as_ref());
                if charges == 0 || allocation.sequence < 1 {
                    continue;
                }
                signals.outcomes.push(Outcome {
                    installment_sequence: allocation.sequence,
                    amount_paid_fen: charges + fen(allocation.principal.as_ref()),
                    ..loan_outcome(loan_id, RepaymentOutcomeKind::OnTime, 0, 0)
                });
            }
            line = Some(LineUpdate::Available {
                available_fen: fen(received.available_after.as_ref()),
            });
        }
        Payload::LoanPaidOff(paid) => {
            let kind = match (paid.max_days_past_due, paid.early) {
                (days, _) if days > 0 => RepaymentOutcomeKind::Late,
                (_, true) => RepaymentOutcomeKind::Early,
                _ => RepaymentOutcomeKind::OnTime,
            };
            signals.outcomes.push(loan_outcome(
                loan(&paid.loan_id)?,
                kind,
                paid.max_days_past_due.max(0),
                0,
            ));
        }
        Payload::LoanWrittenOff(written_off) => {
            signals.outcomes.push(loan_outcome(
                loan(&written_off.loan_id)?,
                RepaymentOutcomeKind::WrittenOff,
                written_off.days_past_due.max(0),
                fen(written_off.total.as_ref()),
            ));
        }
        Payload::CreditLineOpened(opened) => {
            line = Some(LineUpdate::Opened {
                limit_fen: fen(opened.limit.as_ref()),
            });
        }
        Payload::CreditLineChanged(changed) => {
            let Some(change) = &changed.change else {
                return Ok(None);
            };
            line = Some(LineUpdate::Changed {
                previous_limit_fen: fen(change.previous_limit.as_ref()),
                new_limit_fen: fen(change.new_limit.as_ref()),
                closed: change.new_status == CreditLineStatus::Closed as i32,
            });
        }
        Payload::LoanDisbursed(disbursed) => {
            line = Some(LineUpdate::Available {
                available_fen: fen(disbursed.available_after.as_ref()),
            });
        }
        Payload::ApplicationDeclined(_) | Payload::InstallmentDueSoon(_) => return Ok(None),
    }
    Ok(Some((customer_id, signals, line)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use microloan_proto::{
        common::v1::{InstallmentAllocation, Repayment},
        events::v1::{
            CustomerCreated, InstallmentDueSoon, InstallmentOverdue, LoanWrittenOff,
            RepaymentReceived,
        },
    };

    const CUSTOMER: &str = "0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f";
    const LOAN: &str = "0190c1e4-4b0a-7c1e-9f3a-000000000001";

    fn cny(minor_units: i64) -> Option<Money> {
        Some(Money {
            currency_code: "CNY".into(),
            minor_units,
        })
    }

    fn event(payload: Payload) -> Event {
        Event {
            customer_id: CUSTOMER.into(),
            payload: Some(payload),
            ..Event::default()
        }
    }

    #[test]
    fn a_write_off_is_a_loan_level_outcome_that_makes_a_defaulter() {
        let (_, signals, line) =
            signals_of_event(&event(Payload::LoanWrittenOff(LoanWrittenOff {
                loan_id: LOAN.into(),
                days_past_due: 180,
                total: cny(90_000),
                ..LoanWrittenOff::default()
            })))
            .expect("valid")
            .expect("used");
        assert_eq!(line, None);
        let [outcome] = signals.outcomes.as_slice() else {
            panic!("{signals:?}")
        };
        assert_eq!(outcome.installment_sequence, 0);
        assert!(outcome.makes_defaulter());
    }

    #[test]
    fn overdue_day_90_is_a_missed_outcome_of_a_defaulter() {
        let (_, signals, _) =
            signals_of_event(&event(Payload::InstallmentOverdue(InstallmentOverdue {
                loan_id: LOAN.into(),
                installment_sequence: 2,
                days_past_due: 90,
                ..InstallmentOverdue::default()
            })))
            .expect("valid")
            .expect("used");
        let outcome = &signals.outcomes[0];
        assert_eq!(
            (
                outcome.outcome,
                outcome.installment_sequence,
                outcome.days_past_due
            ),
            (RepaymentOutcomeKind::Missed, 2, 90)
        );
        assert!(outcome.makes_defaulter());
    }

    #[test]
    fn a_repayment_pays_the_instalments_with_charges_and_moves_the_headroom() {
        let allocation = |sequence, interest, principal| InstallmentAllocation {
            sequence,
            penalty: cny(0),
            interest: cny(interest),
            principal: cny(principal),
        };
        let (_, signals, line) =
            signals_of_event(&event(Payload::RepaymentReceived(RepaymentReceived {
                repayment: Some(Repayment {
                    loan_id: LOAN.into(),
                    allocations: vec![allocation(1, 300, 10_000), allocation(5, 0, 20_000)],
                    ..Repayment::default()
                }),
                available_after: cny(55_000),
                ..RepaymentReceived::default()
            })))
            .expect("valid")
            .expect("used");
        assert_eq!(
            signals.outcomes.len(),
            1,
            "prepaid principal is not an instalment"
        );
        assert_eq!(signals.outcomes[0].amount_paid_fen, 10_300);
        assert_eq!(
            line,
            Some(LineUpdate::Available {
                available_fen: 55_000
            })
        );
    }

    #[test]
    fn onboarding_devices_are_sightings_and_unused_events_are_skipped() {
        let (_, signals, _) = signals_of_event(&event(Payload::CustomerCreated(CustomerCreated {
            customer_id: CUSTOMER.into(),
            locale: "en".into(),
            device_id: "device-1".into(),
        })))
        .expect("valid")
        .expect("used");
        assert_eq!(signals.sightings[0].context, SightingContext::Onboarding);
        assert_eq!(
            signals_of_event(&event(Payload::InstallmentDueSoon(
                InstallmentDueSoon::default()
            ))),
            Ok(None)
        );
        let mut bad = event(Payload::LoanWrittenOff(LoanWrittenOff::default()));
        bad.customer_id = "nope".into();
        assert!(signals_of_event(&bad).is_err());
    }
}
