//! Journey 5 (issue #12): a fraud ring. Five customers share two devices; one of them
//! borrows and the loan is written off as FRAUD (the confirmation reaches scoring as
//! the ledger's LoanWrittenOff event); the other four then apply and are declined or
//! sent to review, with the ring rule named in the decision's explanation.

use std::time::Duration;

use microloan_proto::common::v1::Money;

use e2e::{
    Stack, customer_token,
    journey::{Clients, application, cny, onboard, safest},
    with_token,
};
use microloan_proto::{
    account::v1::BorrowRequest,
    common::v1::{DecisionOutcome, LoanPurpose, RepaymentMethod, WriteOffReason},
    ledger::v1::WriteOffRequest,
    scoring::v1::{
        ExplainDecisionRequest, FraudFlag, IdentifierKind, IdentitySighting, IngestSignalsRequest,
        SightingContext, Signal, signal::Kind,
    },
};

#[tokio::test]
async fn a_ring_sharing_devices_with_a_confirmed_fraud_is_declined_or_reviewed() {
    let stack = Stack::start().await.expect("the four services start");
    let mut clients = Clients::of(&stack);
    let onboarded = onboard(&mut clients, 77, 300, |population| safest(population, 5))
        .await
        .expect("onboarding");
    let ids: Vec<String> = onboarded
        .customers
        .iter()
        .map(|person| person.customer_id.to_string())
        .collect();
    let income = |index: usize| cny(onboarded.customers[index].monthly_income_fen * 12);

    // The fraudster gets a line and borrows before the ring is visible.
    let fraudster = &ids[0];
    let applied = clients
        .apply(application("ring-apply-0", fraudster, income(0)))
        .await
        .expect("apply");
    assert_eq!(
        applied.outcome,
        DecisionOutcome::Approved as i32,
        "{applied:?}"
    );
    let loan = clients
        .account
        .borrow(with_token(
            BorrowRequest {
                request_id: "ring-borrow-0".to_owned(),
                customer_id: fraudster.clone(),
                principal: cny(50_000),
                term_months: 5,
                repayment_method: RepaymentMethod::EqualInstallment as i32,
                purpose: LoanPurpose::Consumption as i32,
                ..Default::default()
            },
            &customer_token(fraudster),
        ))
        .await
        .expect("borrow")
        .into_inner()
        .loan
        .expect("a loan");

    // Five customers on two devices (three on one, two on the other and the first).
    let devices = ["ring-device-a", "ring-device-b"];
    let signals: Vec<Signal> = ids
        .iter()
        .enumerate()
        .flat_map(|(index, customer_id)| {
            let mut seen = vec![devices[index % 2]];
            if index == 0 {
                seen.push(devices[1]);
            }
            seen.into_iter().map(move |device| Signal {
                kind: Some(Kind::IdentitySighting(IdentitySighting {
                    customer_id: customer_id.clone(),
                    kind: IdentifierKind::Device as i32,
                    identifier: device.to_owned(),
                    context: SightingContext::Login as i32,
                    observe_time: Some(prost_types::Timestamp::from(std::time::SystemTime::now())),
                })),
            })
        })
        .collect();
    let summary = clients
        .scoring
        .ingest_signals(with_token(
            tokio_stream::iter([IngestSignalsRequest {
                request_id: "ring-sightings".to_owned(),
                signals,
            }]),
            &clients.service,
        ))
        .await
        .expect("sightings")
        .into_inner();
    assert_eq!(summary.signals_rejected, 0, "{summary:?}");

    // The operator confirms the fraud: a write-off with reason FRAUD.
    clients
        .ledger
        .write_off(with_token(
            WriteOffRequest {
                request_id: "ring-write-off".to_owned(),
                loan_id: loan.loan_id.clone(),
                reason: WriteOffReason::Fraud as i32,
                note: "identity theft confirmed by the police report".to_owned(),
            },
            &clients.operator,
        ))
        .await
        .expect("write-off");

    // The confirmation travels outbox → stream → scoring's consumer: wait (bounded)
    // until scoring sees the ring, asking it directly (an Evaluate opens nothing).
    wait_for_ring(&mut clients, &ids[1], income(1)).await;

    // The four others apply through account: none is approved, and the ring is named.
    for (index, customer_id) in ids.iter().enumerate().skip(1) {
        let applied = clients
            .apply(application(
                &format!("ring-apply-{index}"),
                customer_id,
                income(index),
            ))
            .await
            .expect("apply");
        assert!(
            applied.outcome == DecisionOutcome::Declined as i32
                || applied.outcome == DecisionOutcome::ManualReview as i32,
            "customer {index} is declined or reviewed: {applied:?}"
        );
        assert!(applied.credit_line.is_none(), "no line opened: {applied:?}");
        assert!(
            ring_named(&mut clients, &applied.decision_id).await,
            "customer {index}: the ring rule fired: {applied:?}"
        );
    }

    stack.stop().await.expect("a clean stop");
}

/// Whether the decision's explanation shows FRAUD_RING triggered.
async fn ring_named(clients: &mut Clients, decision_id: &str) -> bool {
    let explained = clients
        .scoring
        .explain_decision(with_token(
            ExplainDecisionRequest {
                decision_id: decision_id.to_owned(),
            },
            &clients.operator,
        ))
        .await
        .expect("explain")
        .into_inner();
    explained
        .fraud_checks
        .iter()
        .any(|check| check.flag == FraudFlag::FraudRing as i32 && check.triggered)
}

/// Polls scoring directly (a DECISION_PURPOSE_CREDIT_LINE_APPLICATION Evaluate, which
/// opens nothing) until the ring is visible for `customer_id`; bounded to 30 s.
async fn wait_for_ring(clients: &mut Clients, customer_id: &str, income: Option<Money>) {
    use microloan_proto::{common::v1::DecisionPurpose, scoring::v1::EvaluateRequest};
    for attempt in 0..300 {
        let decision = clients
            .scoring
            .evaluate(with_token(
                EvaluateRequest {
                    request_id: format!("ring-probe-{customer_id}-{attempt}"),
                    customer_id: customer_id.to_owned(),
                    purpose: DecisionPurpose::CreditLineApplication as i32,
                    annual_income: income.clone(),
                    ..Default::default()
                },
                &clients.service,
            ))
            .await
            .expect("evaluate")
            .into_inner()
            .decision
            .expect("a decision");
        if ring_named(clients, &decision.decision_id).await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the fraud confirmation did not reach scoring within 30 s");
}
