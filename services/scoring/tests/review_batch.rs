//! RunPortfolioReview's batch work (review.rs): the standings and baseline scores read
//! a page of customers in one statement (`store::lines::review_inputs`) answer what
//! the policy defines per customer, in the order asked; and a review whose call is
//! cancelled while it holds the review lock does not keep it (later reviews run).

mod decisions_support;

use std::time::Duration;

use chrono::{TimeZone as _, Utc};
use decisions_support::Harness;
use microloan_platform::testing;
use microloan_proto::{
    common::v1::DecisionPurpose,
    google::r#type::Date,
    scoring::v1::{RepaymentOutcomeKind, RunPortfolioReviewRequest},
};
use scoring::store::lines::{self, ReviewInputs, Standing};
use tonic::Code;
use uuid::Uuid;

async fn installment(
    pool: &sqlx::PgPool,
    customer_id: Uuid,
    sequence: i32,
    outcome: RepaymentOutcomeKind,
    days_past_due: i32,
) {
    sqlx::query(
        "INSERT INTO installment_states \
             (customer_id, loan_id, installment_sequence, outcome, days_past_due, observe_time) \
         VALUES ($1, $2, $3, $4, $5, now())",
    )
    .bind(customer_id)
    .bind(Uuid::now_v7())
    .bind(sequence)
    .bind(outcome as i16)
    .bind(days_past_due)
    .execute(pool)
    .await
    .expect("installment");
}

async fn decision(
    pool: &sqlx::PgPool,
    customer_id: Uuid,
    purpose: DecisionPurpose,
    score: i32,
    day: u32,
) {
    sqlx::query(
        "INSERT INTO decisions (decision_id, customer_id, purpose, outcome, score, \
             model_version, decide_time, decision, explanation) \
         VALUES ($1, $2, $3, 1, $4, 'test', $5, '', '')",
    )
    .bind(Uuid::now_v7())
    .bind(customer_id)
    .bind(purpose as i16)
    .bind(score)
    .bind(
        Utc.with_ymd_and_hms(2026, 11, day, 12, 0, 0)
            .single()
            .expect("time"),
    )
    .execute(pool)
    .await
    .expect("decision");
}

async fn policy(pool: &sqlx::PgPool, customer_id: Uuid, frozen: bool, raise_score: Option<i32>) {
    sqlx::query(
        "INSERT INTO line_policy (customer_id, frozen_by_policy, raise_score) VALUES ($1, $2, $3)",
    )
    .bind(customer_id)
    .bind(frozen)
    .bind(raise_score)
    .execute(pool)
    .await
    .expect("line policy");
}

#[tokio::test]
async fn a_page_of_standings_and_baselines_is_read_in_one_statement_in_order() {
    let scoring = Harness::start(&[]).await;
    let pool = scoring.pool.clone();
    let (delinquent, scored, unknown, unraised) = (
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
        Uuid::now_v7(),
    );
    // Delinquent: 2 on time + 1 early, MISSED at 12 and 40 days; the disbursement
    // (sequence 0) never counts. The policy froze the line and raised it at 610.
    for (sequence, outcome, days) in [
        (0, RepaymentOutcomeKind::Missed, 99),
        (1, RepaymentOutcomeKind::OnTime, 0),
        (2, RepaymentOutcomeKind::OnTime, 0),
        (3, RepaymentOutcomeKind::Early, 0),
        (4, RepaymentOutcomeKind::Missed, 12),
        (5, RepaymentOutcomeKind::Missed, 40),
        (6, RepaymentOutcomeKind::Late, 3),
    ] {
        installment(&pool, delinquent, sequence, outcome, days).await;
    }
    policy(&pool, delinquent, true, Some(610)).await;
    decision(
        &pool,
        delinquent,
        DecisionPurpose::CreditLineApplication,
        590,
        1,
    )
    .await;
    // Scored: no policy memory; the latest application or limit-increase decision
    // counts, not a later review's or drawdown's.
    installment(&pool, scored, 1, RepaymentOutcomeKind::OnTime, 0).await;
    decision(
        &pool,
        scored,
        DecisionPurpose::CreditLineApplication,
        580,
        1,
    )
    .await;
    decision(&pool, scored, DecisionPurpose::LimitIncrease, 600, 2).await;
    decision(&pool, scored, DecisionPurpose::PortfolioReview, 650, 3).await;
    decision(&pool, scored, DecisionPurpose::Drawdown, 640, 4).await;
    // Unraised: a memory row without a raise (an unfreeze) falls back to the decision.
    policy(&pool, unraised, false, None).await;
    decision(
        &pool,
        unraised,
        DecisionPurpose::CreditLineApplication,
        570,
        1,
    )
    .await;

    let delinquent_inputs = ReviewInputs {
        standing: Standing {
            overdue_installments: 2,
            overdue_days_max: 40,
            on_time_installments: 3,
            frozen_by_policy: true,
        },
        baseline_score: Some(610),
    };
    let scored_inputs = ReviewInputs {
        standing: Standing {
            on_time_installments: 1,
            ..Standing::default()
        },
        baseline_score: Some(600),
    };
    let unraised_inputs = ReviewInputs {
        standing: Standing::default(),
        baseline_score: Some(570),
    };
    let mut conn = pool.acquire().await.expect("connection");
    let page = [unknown, delinquent, scored, unraised, delinquent];
    let inputs = lines::review_inputs(&mut conn, &page)
        .await
        .expect("review inputs");
    assert_eq!(
        inputs,
        [
            ReviewInputs::default(),
            delinquent_inputs,
            scored_inputs,
            unraised_inputs,
            delinquent_inputs,
        ]
    );
    // The event policy's per-customer read is the same statement's answer.
    for (customer_id, expected) in [
        (delinquent, delinquent_inputs),
        (scored, scored_inputs),
        (unknown, ReviewInputs::default()),
    ] {
        let standing = lines::standing(&mut conn, customer_id)
            .await
            .expect("standing");
        assert_eq!(standing, expected.standing);
    }
    assert_eq!(
        lines::review_inputs(&mut conn, &[])
            .await
            .expect("empty page"),
        []
    );
    drop(conn);
    scoring.stop().await;
}

#[tokio::test]
async fn a_review_cancelled_while_it_holds_the_lock_does_not_keep_it() {
    let closed = closed_url().await;
    let scoring = Harness::start(&[
        ("ACCOUNT_URL", closed.as_str()),
        ("LEDGER_URL", closed.as_str()),
    ])
    .await;
    let request = || RunPortfolioReviewRequest {
        request_id: Uuid::now_v7().to_string(),
        customer_ids: Vec::new(),
        dry_run: false,
        as_of_date: Some(Date {
            year: 2026,
            month: 11,
            day: 28,
        }),
    };
    // The review takes the lock, then waits on the population's read of credit_lines,
    // which this transaction keeps locked past the call's deadline.
    let mut blocker = scoring.pool.begin().await.expect("transaction");
    sqlx::query("LOCK TABLE credit_lines IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .expect("lock table");
    let mut call = testing::with_token(request(), &scoring.token);
    call.set_timeout(Duration::from_secs(2));
    let cancelled = scoring
        .client
        .clone()
        .run_portfolio_review(call)
        .await
        .expect_err("past its deadline");
    assert!(
        matches!(cancelled.code(), Code::Cancelled | Code::DeadlineExceeded),
        "{cancelled:?}"
    );
    blocker.rollback().await.expect("rollback");

    // The cancelled review's lock goes with its connection: another session gets it
    // (a pooled connection would keep it, and every review on another connection
    // would be ABORTED).
    let mut other = scoring.pool.acquire().await.expect("connection");
    let mut free = false;
    for _ in 0..100 {
        free = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(scoring::review::REVIEW_LOCK)
            .fetch_one(&mut *other)
            .await
            .expect("try lock");
        if free {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(free, "the cancelled review still holds the lock after 10 s");
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(scoring::review::REVIEW_LOCK)
        .execute(&mut *other)
        .await
        .expect("unlock");
    drop(other);
    let answer = scoring
        .client
        .clone()
        .run_portfolio_review(testing::with_token(request(), &scoring.token))
        .await
        .map(tonic::Response::into_inner);
    let answer = answer.expect("the next review runs");
    assert_eq!(answer.lines_reviewed, 0);
    scoring.stop().await;
}

/// A URL nothing listens on (the review above never calls its peers).
async fn closed_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}
