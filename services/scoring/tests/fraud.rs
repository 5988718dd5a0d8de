//! Each anti-fraud rule fires on its pattern and stays quiet on a near miss; velocity
//! falls back to Postgres when Redis is down. Real gRPC server, Postgres and Redis.

mod decisions_support;

use decisions_support::*;
use microloan_events::{NewEvent, append};
use microloan_proto::{
    common::v1::{DecisionOutcome, DecisionPurpose, RiskGrade, WriteOffReason},
    events::v1::{LoanWrittenOff, event::Payload},
    scoring::v1::{Decision, EvaluateRequest, FraudFlag, IdentifierKind, RepaymentOutcomeKind},
};
use uuid::Uuid;

/// (triggered, detail) of `flag` in the decision's explanation; `None` if it did not run.
async fn check(
    harness: &mut Harness,
    decision: &Decision,
    flag: FraudFlag,
) -> Option<(bool, String)> {
    harness
        .explain(&decision.decision_id)
        .await
        .fraud_checks
        .into_iter()
        .find(|check| check.flag == flag as i32)
        .map(|check| (check.triggered, check.detail))
}

async fn decide(harness: &mut Harness, request: EvaluateRequest) -> Decision {
    harness
        .evaluate(request)
        .await
        .expect("evaluate")
        .decision
        .expect("decision")
}

/// Three applications from one device with the 1-hour threshold at 3: the second is a
/// near miss, the third fires (MANUAL_REVIEW with the rule's policy reason first).
async fn device_velocity_fires_on_the_third(harness: &mut Harness, source: &str) {
    // One customer (several would also share the device: another rule).
    let device = format!("device-{}", Uuid::new_v4());
    let customer = Uuid::new_v4();
    let mut decisions = Vec::new();
    for _ in 0..3 {
        let request = with_context(application(customer), &device, "", "");
        decisions.push(decide(harness, request).await);
    }
    let (fired, detail) = check(harness, &decisions[1], FraudFlag::DeviceVelocity)
        .await
        .expect("ran");
    assert!(!fired, "{detail}");
    assert!(
        detail.starts_with("2 applications and drawdowns / 1h"),
        "{detail}"
    );
    assert_eq!(decisions[1].outcome, DecisionOutcome::Approved as i32);
    let (fired, detail) = check(harness, &decisions[2], FraudFlag::DeviceVelocity)
        .await
        .expect("ran");
    assert!(fired, "{detail}");
    assert!(detail.contains(&format!("counted in {source}")), "{detail}");
    assert_eq!(decisions[2].outcome, DecisionOutcome::ManualReview as i32);
    assert_eq!(decisions[2].fraud_flags, [FraudFlag::DeviceVelocity as i32]);
    assert_eq!(decisions[2].reasons[0].code, "FRAUD_DEVICE_VELOCITY");
    assert_eq!(decisions[2].offered_limit, None);
    assert!(decisions[2].expire_time.is_some());
}

#[tokio::test]
async fn velocity_is_counted_in_redis() {
    let mut harness = Harness::start(&[("SCORING_FRAUD_DEVICE_VELOCITY_1H", "3")]).await;
    device_velocity_fires_on_the_third(&mut harness, "redis").await;
    harness.stop().await;
}

#[tokio::test]
async fn with_redis_down_velocity_is_counted_from_postgres_and_decisions_still_come() {
    let mut harness = Harness::start(&[
        ("SCORING_FRAUD_DEVICE_VELOCITY_1H", "3"),
        ("REDIS_URL", "redis://127.0.0.1:1"),
    ])
    .await;
    device_velocity_fires_on_the_third(&mut harness, "postgres").await;
    harness.stop().await;
}

#[tokio::test]
async fn phone_and_national_id_velocity_count_applications_per_identifier() {
    let mut harness = Harness::start(&[
        ("SCORING_FRAUD_PHONE_VELOCITY_24H", "2"),
        ("SCORING_FRAUD_NATIONAL_ID_VELOCITY_1H", "3"),
    ])
    .await;
    let (phone, national_id) = (hash('a'), hash('b'));
    let customer = Uuid::new_v4();
    let first = decide(
        &mut harness,
        with_context(application(customer), "", &phone, &national_id),
    )
    .await;
    assert!(first.fraud_flags.is_empty());
    assert_eq!(
        check(&mut harness, &first, FraudFlag::PhoneVelocity)
            .await
            .map(|c| c.0),
        Some(false)
    );
    let second = decide(
        &mut harness,
        with_context(application(customer), "", &phone, &national_id),
    )
    .await;
    // Phone: 2 in 24 h reaches 2; national id: 2 in 1 h is below 3.
    assert_eq!(second.fraud_flags, [FraudFlag::PhoneVelocity as i32]);
    let (fired, detail) = check(&mut harness, &second, FraudFlag::NationalIdVelocity)
        .await
        .expect("ran");
    assert!(!fired, "{detail}");
    assert!(
        !detail.contains(&national_id),
        "no identifier in the detail"
    );
    let third = decide(
        &mut harness,
        with_context(application(customer), "", "", &national_id),
    )
    .await;
    assert_eq!(third.fraud_flags, [FraudFlag::NationalIdVelocity as i32]);
    // A drawdown is not an application: phone velocity does not run for it.
    let draw = decide(
        &mut harness,
        with_context(drawdown(customer, 10_000, 100_000), "", &phone, ""),
    )
    .await;
    assert_eq!(
        check(&mut harness, &draw, FraudFlag::PhoneVelocity).await,
        None
    );
    harness.stop().await;
}

#[tokio::test]
async fn an_identifier_shared_by_three_customers_fires_two_do_not() {
    let mut harness = Harness::start(&[]).await;
    let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    harness
        .ingest(vec![
            sighting(a, IdentifierKind::Device, "shared-device"),
            sighting(b, IdentifierKind::Device, "shared-device"),
        ])
        .await;
    let near = decide(&mut harness, application(b)).await;
    let (fired, detail) = check(&mut harness, &near, FraudFlag::SharedIdentifier)
        .await
        .expect("ran");
    assert!(!fired, "{detail}");
    assert!(detail.contains("a device of 2 customers"), "{detail}");
    // The third customer arrives through the Evaluate context itself.
    let third = decide(
        &mut harness,
        with_context(application(c), "shared-device", "", ""),
    )
    .await;
    assert_eq!(third.fraud_flags, [FraudFlag::SharedIdentifier as i32]);
    assert_eq!(third.outcome, DecisionOutcome::ManualReview as i32);
    harness.stop().await;
}

#[tokio::test]
async fn a_confirmed_fraud_blacklists_its_identifiers_and_marks_its_ring() {
    let mut harness = Harness::start(&[]).await;
    let (fraudster, accomplice, linked, stranger) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    let phone = hash('c');
    harness
        .ingest(vec![
            sighting(fraudster, IdentifierKind::Phone, &phone),
            sighting(accomplice, IdentifierKind::Phone, &phone),
            sighting(accomplice, IdentifierKind::Device, "ring-device"),
            sighting(linked, IdentifierKind::Device, "ring-device"),
            sighting(stranger, IdentifierKind::Device, "other-device"),
        ])
        .await;
    // Before any confirmation the component is just linked customers: quiet.
    let before = decide(&mut harness, application(linked)).await;
    assert!(before.fraud_flags.is_empty(), "{:?}", before.fraud_flags);

    // The ledger writes the fraudster's loan off as FRAUD: through the outbox, the
    // stream and the scoring consumer.
    let mut tx = harness.pool.begin().await.expect("begin");
    append(
        &mut tx,
        "ledger",
        NewEvent {
            customer_id: fraudster,
            business_date: None,
            payload: Payload::LoanWrittenOff(LoanWrittenOff {
                loan_id: Uuid::now_v7().to_string(),
                reason: WriteOffReason::Fraud as i32,
                days_past_due: 0,
                total: cny(100_000),
                ..LoanWrittenOff::default()
            }),
        },
    )
    .await
    .expect("append");
    tx.commit().await.expect("commit");
    let mut confirmed = false;
    for _ in 0..500 {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM fraud_confirmations")
            .fetch_one(&harness.pool)
            .await
            .expect("count");
        if count == 1 {
            confirmed = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(confirmed, "the write-off confirmed the fraud within 10 s");

    // Shares the fraudster's phone: blacklisted, and in its ring → DECLINED.
    let accomplice_decision = decide(&mut harness, application(accomplice)).await;
    assert_eq!(
        accomplice_decision.fraud_flags,
        [FraudFlag::FraudRing as i32, FraudFlag::Blacklisted as i32]
    );
    assert_eq!(
        accomplice_decision.outcome,
        DecisionOutcome::Declined as i32
    );
    let reasons: Vec<&str> = accomplice_decision
        .reasons
        .iter()
        .map(|r| r.code.as_str())
        .collect();
    assert_eq!(reasons[..2], ["FRAUD_FRAUD_RING", "FRAUD_BLACKLISTED"]);
    // Linked two hops away through another identifier: the ring, not the blacklist.
    let linked_decision = decide(&mut harness, application(linked)).await;
    assert_eq!(linked_decision.fraud_flags, [FraudFlag::FraudRing as i32]);
    let (_, detail) = check(&mut harness, &linked_decision, FraudFlag::FraudRing)
        .await
        .expect("ran");
    assert!(detail.contains("3 customers"), "{detail}");
    // The fraudster is blacklisted as a customer too.
    let own = decide(&mut harness, application(fraudster)).await;
    assert!(own.fraud_flags.contains(&(FraudFlag::Blacklisted as i32)));
    // Near miss: not linked to the ring.
    let stranger_decision = decide(&mut harness, application(stranger)).await;
    assert!(stranger_decision.fraud_flags.is_empty());
    assert_eq!(stranger_decision.outcome, DecisionOutcome::Approved as i32);
    harness.stop().await;
}

#[tokio::test]
async fn a_near_full_drawdown_right_after_an_increase_fires_a_smaller_one_does_not() {
    let mut harness = Harness::start(&[]).await;
    let customer = Uuid::new_v4();
    // Before any increase: a full drawdown is quiet.
    let early = decide(&mut harness, drawdown(customer, 100_000, 100_000)).await;
    assert_eq!(
        check(&mut harness, &early, FraudFlag::DrawdownAfterIncrease)
            .await
            .map(|c| c.0),
        Some(false)
    );
    let increase = EvaluateRequest {
        purpose: DecisionPurpose::LimitIncrease as i32,
        current_limit: cny(100_000),
        ..application(customer)
    };
    let increase = decide(&mut harness, increase).await;
    assert_eq!(increase.outcome, DecisionOutcome::Approved as i32);
    assert_eq!(increase.offered_limit, cny(200_000));
    // 85% of the new limit: a near miss.
    let near = decide(&mut harness, drawdown(customer, 170_000, 200_000)).await;
    let (fired, detail) = check(&mut harness, &near, FraudFlag::DrawdownAfterIncrease)
        .await
        .expect("ran");
    assert!(!fired, "{detail}");
    assert!(detail.contains("85%"), "{detail}");
    // 95%: fires.
    let full = decide(&mut harness, drawdown(customer, 190_000, 200_000)).await;
    assert_eq!(full.fraud_flags, [FraudFlag::DrawdownAfterIncrease as i32]);
    assert_eq!(full.outcome, DecisionOutcome::ManualReview as i32);
    assert_eq!(full.risk_grade, RiskGrade::C as i32);
    harness.stop().await;
}

#[tokio::test]
async fn three_loans_repaid_early_within_the_window_is_cycling_two_is_not() {
    let mut harness = Harness::start(&[]).await;
    let (cycler, near) = (Uuid::new_v4(), Uuid::new_v4());
    let early = |customer| outcome(customer, Uuid::new_v4(), 1, RepaymentOutcomeKind::Early);
    harness
        .ingest(vec![
            early(cycler),
            early(cycler),
            early(cycler),
            early(near),
            early(near),
        ])
        .await;
    let fired = decide(&mut harness, drawdown(cycler, 10_000, 100_000)).await;
    assert_eq!(fired.fraud_flags, [FraudFlag::DrawRepayCycling as i32]);
    let quiet = decide(&mut harness, drawdown(near, 10_000, 100_000)).await;
    let (triggered, detail) = check(&mut harness, &quiet, FraudFlag::DrawRepayCycling)
        .await
        .expect("ran");
    assert!(!triggered, "{detail}");
    assert!(detail.starts_with("2 loans repaid early"), "{detail}");
    // Cycling is drawdown monitoring: an application does not run it.
    let application = decide(&mut harness, application(cycler)).await;
    assert_eq!(
        check(&mut harness, &application, FraudFlag::DrawRepayCycling).await,
        None
    );
    harness.stop().await;
}
