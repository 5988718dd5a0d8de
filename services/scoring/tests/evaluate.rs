//! Evaluate, ExplainDecision and GetModelInfo against a real gRPC server on port 0, real
//! Postgres and Redis, and a hand-built scorecard with known points.

mod decisions_support;

use decisions_support::*;
use microloan_platform::testing;
use microloan_proto::{
    common::v1::{DecisionOutcome, DecisionPurpose, RiskGrade},
    scoring::v1::{
        BehaviourCategory, EvaluateRequest, ExplainDecisionRequest, FraudFlag, GetModelInfoRequest,
        PsiStatus, RepaymentOutcomeKind,
    },
};
use scoring::model::scaling::ScorecardScaling;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

fn codes(decision: &microloan_proto::scoring::v1::Decision) -> Vec<(String, i32)> {
    decision
        .reasons
        .iter()
        .map(|reason| (reason.code.clone(), reason.points_lost))
        .collect()
}

#[tokio::test]
async fn a_thin_file_is_scored_on_what_is_known_conservatively_and_explained() {
    let mut harness = Harness::start(&[]).await;
    let customer = Uuid::new_v4();
    let request = application(customer);
    let decision = harness
        .evaluate(request.clone())
        .await
        .expect("a thin file is not an error")
        .decision
        .expect("decision");
    // 555 + on_time_ratio missing 10 + risky_spend_share missing 20 + degree 0 → 5.
    assert_eq!(decision.score, 590);
    // The scaling: PD = 1 / (1 + exp((score − offset) / factor)), 600 at 50:1, pdo 20.
    let scaling = ScorecardScaling::default();
    let log_odds = (590.0 - scaling.offset()) / scaling.factor();
    let pd = 1.0 / (1.0 + f64::exp(log_odds));
    assert_eq!(decision.probability_of_default, format!("{pd:.4}"));
    assert_eq!(decision.probability_of_default, "0.0275");
    assert_eq!(decision.risk_grade, RiskGrade::C as i32);
    assert_eq!(decision.outcome, DecisionOutcome::Approved as i32);
    assert_eq!(decision.model_version, MODEL_VERSION);
    // PD-based 1,000 CNY / 0.0275 ≈ 36,000 CNY, income cap 40,000, thin file: 2,000 CNY.
    assert_eq!(decision.offered_limit, cny(200_000));
    assert_eq!(decision.daily_rate, "0.0003");
    assert_eq!(decision.apr, "0.1095");
    assert_eq!(
        codes(&decision),
        vec![
            ("THIN_FILE".to_owned(), 0),
            ("LOW_ON_TIME_RATIO".to_owned(), 30),
            ("HIGH_RISKY_SPENDING".to_owned(), 10),
            ("FEW_SOCIAL_CONNECTIONS".to_owned(), 10),
        ]
    );
    assert_eq!(decision.reasons[1].feature, "on_time_ratio");
    assert!(decision.reasons[0].feature.is_empty());
    let expire = decision.expire_time.expect("an approval expires");
    let decide = decision.decide_time.expect("decided");
    assert_eq!(expire.seconds - decide.seconds, 30 * 86_400);
    assert!(decision.fraud_flags.is_empty());

    // The explanation adds up to the score.
    let explanation = harness.explain(&decision.decision_id).await;
    assert_eq!(explanation.decision.as_ref(), Some(&decision));
    assert_eq!(explanation.base_points, BASE_POINTS);
    let sum: i32 = explanation.contributions.iter().map(|c| c.points).sum();
    assert_eq!(explanation.base_points + sum, decision.score);
    let lost: Vec<(&str, i32, &str)> = explanation
        .contributions
        .iter()
        .map(|c| (c.feature.as_str(), c.points_lost, c.bin_label.as_str()))
        .collect();
    assert_eq!(
        lost,
        vec![
            ("on_time_ratio", 30, "missing"),
            ("risky_spend_share", 10, "missing"),
            ("degree", 10, "(-inf, 2]"),
        ]
    );
    assert_eq!(explanation.contributions[2].value, "0");
    assert!(explanation.contributions[0].value.is_empty());
    // No session identifiers: the velocity rules did not run; the others did.
    let ran: Vec<i32> = explanation.fraud_checks.iter().map(|c| c.flag).collect();
    assert_eq!(
        ran,
        vec![
            FraudFlag::SharedIdentifier as i32,
            FraudFlag::FraudRing as i32,
            FraudFlag::Blacklisted as i32
        ]
    );
    assert!(explanation.fraud_checks.iter().all(|c| !c.triggered));
    assert!(
        explanation
            .policy_notes
            .iter()
            .any(|note| note.contains("capped by thin file: 2000.00 CNY")),
        "{:?}",
        explanation.policy_notes
    );

    // Idempotent replay: the same decision, nothing new stored; another body is refused.
    let replay = harness.evaluate(request.clone()).await.expect("replay");
    assert_eq!(replay.decision.as_ref(), Some(&decision));
    assert_eq!(harness.decisions_stored().await, 1);
    let mut other = request;
    other.annual_income = cny(9_000_000);
    let status = harness.evaluate(other).await.expect_err("key reused");
    assert_eq!(status.code(), Code::AlreadyExists);
    assert_eq!(
        status.get_details_error_info().expect("info").reason,
        "IDEMPOTENCY_KEY_REUSED"
    );
    assert_eq!(harness.decisions_stored().await, 1);
    harness.stop().await;
}

#[tokio::test]
async fn reason_codes_are_the_features_that_lost_most_points() {
    let mut harness = Harness::start(&[]).await;
    let customer = Uuid::new_v4();
    let loan = Uuid::new_v4();
    harness
        .ingest(vec![
            // on_time_ratio 1/2 = 0.5 → bin (-inf, 0.8]: 0 of 40.
            outcome(customer, loan, 1, RepaymentOutcomeKind::OnTime),
            outcome(customer, loan, 2, RepaymentOutcomeKind::Late),
            // risky share 0.5 → 0 of 30.
            spend(customer, BehaviourCategory::Gambling, 50_000),
            spend(customer, BehaviourCategory::Groceries, 50_000),
            // degree 3 → 15 of 15.
            contact(customer, "ext:a"),
            contact(customer, "ext:b"),
            contact(customer, "ext:c"),
        ])
        .await;
    let decision = harness
        .evaluate(application(customer))
        .await
        .expect("evaluate")
        .decision
        .expect("decision");
    assert_eq!(decision.score, BASE_POINTS + 15);
    assert_eq!(decision.risk_grade, RiskGrade::D as i32);
    assert_eq!(
        codes(&decision),
        vec![
            ("LOW_ON_TIME_RATIO".to_owned(), 40),
            ("HIGH_RISKY_SPENDING".to_owned(), 30),
        ]
    );
    assert!(decision.reasons[0].description.contains("0.5"));
    assert_eq!(decision.outcome, DecisionOutcome::Approved as i32);
    assert_eq!(decision.daily_rate, "0.0004");
    // PD at 570: 1,000 CNY / PD, below the 40,000 CNY income cap, in hundreds.
    let pd: f64 = decision.probability_of_default.parse().unwrap();
    assert!((0.05..0.06).contains(&pd), "{pd}");
    let limit = decision.offered_limit.expect("offered").minor_units;
    assert_eq!(limit % 10_000, 0);
    assert!(limit > 1_600_000 && limit < 2_000_000, "{limit}");
    harness.stop().await;
}

#[tokio::test]
async fn a_score_below_the_cutoff_is_graded_e_and_declined_with_its_reason() {
    let mut harness = Harness::start(&[("SCORING_GRADE_BANDS", "A:700:0.0002,E:600:0.0005")]).await;
    let decision = harness
        .evaluate(application(Uuid::new_v4()))
        .await
        .expect("evaluate")
        .decision
        .expect("decision");
    assert_eq!(decision.score, 590);
    assert_eq!(decision.risk_grade, RiskGrade::E as i32);
    assert_eq!(decision.outcome, DecisionOutcome::Declined as i32);
    assert_eq!(decision.reasons[0].code, "SCORE_BELOW_CUTOFF");
    assert_eq!(decision.reasons.len(), 4);
    assert_eq!(decision.offered_limit, None);
    assert!(decision.daily_rate.is_empty() && decision.apr.is_empty());
    assert_eq!(decision.expire_time, None);
    harness.stop().await;
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_fields_and_nothing_is_stored() {
    let mut harness = Harness::start(&[]).await;
    let fields = |status: &tonic::Status| -> Vec<String> {
        status
            .get_details_bad_request()
            .expect("bad request")
            .field_violations
            .into_iter()
            .map(|violation| violation.field)
            .collect()
    };
    let status = harness
        .evaluate(EvaluateRequest::default())
        .await
        .expect_err("empty");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(fields(&status), ["request_id", "customer_id", "purpose"]);

    let mut no_income = application(Uuid::new_v4());
    no_income.annual_income = None;
    let status = harness.evaluate(no_income).await.expect_err("no income");
    assert_eq!(fields(&status), ["annual_income"]);

    let mut no_amount = drawdown(Uuid::new_v4(), 1, 1);
    no_amount.drawdown_amount = None;
    let status = harness.evaluate(no_amount).await.expect_err("no amount");
    assert_eq!(fields(&status), ["drawdown_amount"]);

    let mut dollars = application(Uuid::new_v4());
    dollars.requested_limit = Some(microloan_proto::common::v1::Money {
        currency_code: "USD".into(),
        minor_units: 100,
    });
    let bad_hash = with_context(dollars, "device-1", "not-a-hash", "");
    let status = harness.evaluate(bad_hash).await.expect_err("bad fields");
    assert_eq!(fields(&status), ["requested_limit", "context.phone_hash"]);

    let mut unknown_purpose = application(Uuid::new_v4());
    unknown_purpose.purpose = 42;
    let status = harness
        .evaluate(unknown_purpose)
        .await
        .expect_err("purpose");
    assert_eq!(fields(&status), ["purpose"]);
    assert_eq!(harness.decisions_stored().await, 0);

    let status = harness
        .client
        .explain_decision(testing::with_token(
            ExplainDecisionRequest {
                decision_id: "nope".into(),
            },
            &harness.token,
        ))
        .await
        .expect_err("not a uuid");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(fields(&status), ["decision_id"]);
    let status = harness
        .client
        .explain_decision(testing::with_token(
            ExplainDecisionRequest {
                decision_id: Uuid::new_v4().to_string(),
            },
            &harness.token,
        ))
        .await
        .expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound);
    harness.stop().await;
}

#[tokio::test]
async fn without_a_usable_model_evaluate_and_model_info_are_unavailable() {
    let app = testing::spawn::<scoring::Scoring>(&[(
        "SCORING_MODEL_PATH",
        "/nonexistent/scoring/model.json",
    )])
    .await;
    let mut client =
        microloan_proto::scoring::v1::scoring_service_client::ScoringServiceClient::new(
            app.channel().await,
        );
    let token = testing::token(microloan_platform::auth::Role::Service, None);
    let status = client
        .evaluate(testing::with_token(application(Uuid::new_v4()), &token))
        .await
        .expect_err("no model");
    assert_eq!(status.code(), Code::Unavailable);
    let info = status.get_details_error_info().expect("info");
    assert_eq!(
        (info.reason.as_str(), info.domain.as_str()),
        ("MODEL_UNAVAILABLE", "microloan.scoring")
    );
    let status = client
        .get_model_info(testing::with_token(GetModelInfoRequest::default(), &token))
        .await
        .expect_err("no model");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.get_details_error_info().expect("info").reason,
        "MODEL_UNAVAILABLE"
    );
    app.stop().await.expect("clean stop");

    // A tampered artefact fails its sha256 and is refused the same way.
    let path = model_file();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replacen("\"base_points\": 555", "\"base_points\": 556", 1),
    )
    .unwrap();
    let path_text = path.to_string_lossy().into_owned();
    let app = testing::spawn::<scoring::Scoring>(&[("SCORING_MODEL_PATH", &path_text)]).await;
    let mut client =
        microloan_proto::scoring::v1::scoring_service_client::ScoringServiceClient::new(
            app.channel().await,
        );
    let status = client
        .evaluate(testing::with_token(application(Uuid::new_v4()), &token))
        .await
        .expect_err("tampered");
    assert_eq!(status.code(), Code::Unavailable);
    app.stop().await.expect("clean stop");
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn model_info_lists_features_bins_metrics_and_the_live_psi() {
    let mut harness = Harness::start(&[("SCORING_PSI_SAMPLE_MIN", "3")]).await;
    let info = |harness: &mut Harness, version: &str| {
        let request = testing::with_token(
            GetModelInfoRequest {
                model_version: version.to_owned(),
            },
            &harness.token,
        );
        let mut client = harness.client.clone();
        async move { client.get_model_info(request).await }
    };
    let model = info(&mut harness, "")
        .await
        .expect("info")
        .into_inner()
        .model
        .expect("model");
    assert!(model.active);
    assert_eq!(model.model_version, MODEL_VERSION);
    assert_eq!(model.artefact_sha256, artefact().sha256.unwrap());
    assert_eq!((model.training_rows, model.holdout_rows), (700, 300));
    assert_eq!(
        (model.auc.as_str(), model.ks.as_str()),
        ("0.7800", "0.4200")
    );
    let names: Vec<&str> = model.features.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["on_time_ratio", "risky_spend_share", "degree"]);
    let on_time = &model.features[0];
    assert_eq!(
        on_time.group,
        microloan_proto::scoring::v1::FeatureGroup::History as i32
    );
    assert!(on_time.bins[0].missing);
    assert_eq!(on_time.bins[2].lower_bound, "0.8");
    assert_eq!(on_time.bins[2].points, 40);
    assert_eq!(model.grade_bands.len(), 5);
    assert_eq!(model.scaling.as_ref().unwrap().base_odds, "50");
    // Too few live scores yet: no PSI.
    assert_eq!(model.psi_status, PsiStatus::Unspecified as i32);
    assert_eq!(model.psi_sample_size, 0);

    // Three thin files at 590: all in the lower training band (expected 0.5 / 0.5).
    for _ in 0..3 {
        harness
            .evaluate(application(Uuid::new_v4()))
            .await
            .expect("evaluate");
    }
    // A drawdown rescoring is not part of the applicant population.
    harness
        .evaluate(drawdown(Uuid::new_v4(), 10_000, 100_000))
        .await
        .expect("drawdown");
    let model = info(&mut harness, MODEL_VERSION)
        .await
        .expect("info")
        .into_inner()
        .model
        .expect("model");
    assert_eq!(model.psi_sample_size, 3);
    // (1 − 0.5) ln(1/0.5) + (0.0001 − 0.5) ln(0.0001/0.5) = 0.3466 + 4.2578.
    assert_eq!(model.psi, "4.6043");
    assert_eq!(model.psi_status, PsiStatus::Shifted as i32);

    let status = info(&mut harness, "other-model")
        .await
        .expect_err("unknown");
    assert_eq!(status.code(), Code::NotFound);
    harness.stop().await;
}

#[tokio::test]
async fn a_known_defaulter_and_an_overdue_instalment_decline_with_their_reasons() {
    let mut harness = Harness::start(&[]).await;
    let overdue = Uuid::new_v4();
    let mut missed = outcome(overdue, Uuid::new_v4(), 1, RepaymentOutcomeKind::Missed);
    if let Some(microloan_proto::scoring::v1::signal::Kind::RepaymentOutcome(o)) = &mut missed.kind
    {
        o.days_past_due = 7;
        o.amount_paid = cny(0);
    }
    harness.ingest(vec![missed]).await;
    let decision = harness
        .evaluate(application(overdue))
        .await
        .expect("evaluate")
        .decision
        .expect("decision");
    assert_eq!(decision.outcome, DecisionOutcome::Declined as i32);
    assert_eq!(decision.reasons[0].code, "OVERDUE_INSTALLMENTS");
    // A portfolio review is not declined by it (the review policy acts on the line).
    let review = EvaluateRequest {
        purpose: DecisionPurpose::PortfolioReview as i32,
        annual_income: None,
        ..application(overdue)
    };
    let decision = harness
        .evaluate(review)
        .await
        .expect("review")
        .decision
        .expect("decision");
    assert_eq!(decision.outcome, DecisionOutcome::Approved as i32);
    assert_eq!(decision.offered_limit, None);
    harness.stop().await;
}

/// The `degree` value ExplainDecision shows for a fresh application of `customer`.
async fn decided_degree(harness: &mut Harness, customer: Uuid) -> String {
    let decision = harness
        .evaluate(application(customer))
        .await
        .expect("evaluate")
        .decision
        .expect("decision");
    harness
        .explain(&decision.decision_id)
        .await
        .contributions
        .iter()
        .find(|c| c.feature == "degree")
        .map(|c| c.value.clone())
        .expect("degree contribution")
}

/// The neighbourhood features Evaluate caches are dropped by an IngestSignals batch
/// touching the neighbourhood: the next decision counts the new contact.
#[tokio::test]
async fn a_new_contact_shows_in_the_next_decision_despite_the_cache() {
    let mut harness = Harness::start(&[]).await;
    let customer = Uuid::now_v7();
    harness.ingest(vec![contact(customer, "ext:first")]).await;
    assert_eq!(decided_degree(&mut harness, customer).await, "1");
    // Cached now: a repeat reads the same.
    assert_eq!(decided_degree(&mut harness, customer).await, "1");
    harness.ingest(vec![contact(customer, "ext:second")]).await;
    assert_eq!(decided_degree(&mut harness, customer).await, "2");
    harness.stop().await;
}

/// A retry with the same request_id answers the stored decision (one stored), another
/// body is IDEMPOTENCY_KEY_REUSED — without context identifiers (no transaction) and
/// with them (claimed first), durable or with SCORING_DECISION_ASYNC_COMMIT.
#[tokio::test]
async fn a_retried_evaluate_answers_the_stored_decision_with_either_commit() {
    for async_commit in ["false", "true"] {
        let mut harness = Harness::start(&[("SCORING_DECISION_ASYNC_COMMIT", async_commit)]).await;
        let customer = Uuid::now_v7();
        let plain = application(customer);
        let with_device = with_context(application(customer), "device-retry", "", "");
        for request in [plain, with_device] {
            let first = harness.evaluate(request.clone()).await.expect("first");
            let retry = harness.evaluate(request.clone()).await.expect("retry");
            assert_eq!(first, retry, "async_commit {async_commit}");
            let explained = harness
                .explain(&first.decision.as_ref().expect("decision").decision_id)
                .await;
            assert_eq!(explained.decision, first.decision);
            let mut other = request.clone();
            other.requested_limit = cny(123_400);
            let status = harness.evaluate(other).await.expect_err("another body");
            assert_eq!(status.code(), Code::AlreadyExists);
            assert_eq!(
                status
                    .get_error_details()
                    .error_info()
                    .expect("info")
                    .reason,
                "IDEMPOTENCY_KEY_REUSED"
            );
        }
        assert_eq!(harness.decisions_stored().await, 2);
        harness.stop().await;
    }
}

/// Group commit: concurrent Evaluates without context are stored in shared batches,
/// every one of them, and each is found by ExplainDecision once answered.
#[tokio::test]
async fn concurrent_evaluates_are_all_stored_before_they_answer() {
    let harness = Harness::start(&[]).await;
    let calls = (0..40).map(|_| {
        let mut client = harness.client.clone();
        let request = testing::with_token(application(Uuid::now_v7()), &harness.token);
        async move {
            client
                .evaluate(request)
                .await
                .map(tonic::Response::into_inner)
        }
    });
    let answers = futures::future::join_all(calls).await;
    let mut harness = harness;
    for answer in answers {
        let decision = answer.expect("decided").decision.expect("decision");
        let explained = harness.explain(&decision.decision_id).await;
        assert_eq!(explained.decision, Some(decision));
    }
    assert_eq!(harness.decisions_stored().await, 40);
    harness.stop().await;
}

/// Concurrent duplicates of one request (in one batch or several) are decided once:
/// every caller gets the same answer and one decision is stored.
#[tokio::test]
async fn concurrent_duplicates_of_one_request_are_answered_with_one_decision() {
    let mut harness = Harness::start(&[]).await;
    let request = application(Uuid::now_v7());
    let calls = (0..8).map(|_| {
        let mut client = harness.client.clone();
        let request = testing::with_token(request.clone(), &harness.token);
        async move {
            client
                .evaluate(request)
                .await
                .map(tonic::Response::into_inner)
        }
    });
    let answers: Vec<_> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|answer| answer.expect("decided"))
        .collect();
    assert!(answers.iter().all(|answer| *answer == answers[0]));
    assert_eq!(harness.decisions_stored().await, 1);
    let replay = harness.evaluate(request).await.expect("replay");
    assert_eq!(replay, answers[0]);
    harness.stop().await;
}

fn keyed(decision_id: Uuid) -> scoring::store::decisions::KeyedDecision {
    scoring::store::decisions::KeyedDecision {
        decision_id,
        customer_id: Uuid::now_v7(),
        purpose: DecisionPurpose::CreditLineApplication as i16,
        outcome: DecisionOutcome::Approved as i16,
        score: 600,
        model_version: MODEL_VERSION.into(),
        offered_limit_fen: Some(100_000),
        drawdown_amount_fen: None,
        decide_time: chrono::Utc::now(),
        decision: vec![1],
        explanation: vec![2],
        caller: "test".into(),
        rpc: "Evaluate".into(),
        request_id: Uuid::now_v7().to_string(),
        body: vec![3],
        response: vec![4],
    }
}

/// A batch that fails stores nothing of it (one statement), and its callers get a
/// clean error; the writer goes on with the next batch.
#[tokio::test]
async fn a_failed_batch_stores_nothing_and_fails_its_callers_cleanly() {
    use scoring::{group_commit::DecisionWriter, store::decisions::store_decisions};
    let harness = Harness::start(&[]).await;
    let taken = keyed(Uuid::now_v7());
    let mut conn = harness.pool.acquire().await.expect("acquire");
    let stored = store_decisions(&mut conn, &[&taken], false)
        .await
        .expect("stored");
    assert_eq!(stored.len(), 1);
    // A good row beside one whose decision id is taken: the statement fails whole.
    let good = keyed(Uuid::now_v7());
    let clash = keyed(taken.decision_id);
    store_decisions(&mut conn, &[&good, &clash], false)
        .await
        .expect_err("a duplicate decision id");
    let keys: i64 =
        sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE caller = 'test'")
            .fetch_one(&mut *conn)
            .await
            .expect("count");
    assert_eq!(keys, 1, "only the first row's key");
    assert_eq!(harness.decisions_stored().await, 1);
    drop(conn);
    // Through the writer: the caller gets INTERNAL, nothing is stored, and the writer
    // still stores the next decision (its key already taken answers false).
    let writer = DecisionWriter::spawn(harness.pool.clone(), false);
    let status = tonic::Status::from(writer.store(clash).await.expect_err("fails"));
    assert_eq!(status.code(), Code::Internal);
    assert_eq!(harness.decisions_stored().await, 1);
    assert!(writer.store(good.clone()).await.expect("stored"));
    assert!(!writer.store(good).await.expect("its key is taken"));
    assert_eq!(harness.decisions_stored().await, 2);
    harness.stop().await;
}
