//! The journeys across all three services, each real and on port 0: apply (scoring's
//! Evaluate, the ledger's OpenCreditLine), borrow under concurrency, a retried borrow,
//! and a whole journey's logs free of PII.

mod common;

use std::sync::{Arc, Mutex};

use common::{NAME, cny, customer_token, minor, national_id, phone, reason, world};
use microloan_platform::testing::{self, TestApp};
use microloan_proto::{
    account::v1::{
        ApplyForCreditLineRequest, BorrowRequest, ListLoansRequest, QuoteLoanRequest, RepayRequest,
        RequestLimitIncreaseRequest,
    },
    common::v1::{DecisionOutcome, LoanPurpose, RepaymentMethod},
    events::v1::{Event, event::Payload},
    ledger::v1::{AccountCode, AccountKey, GetAccountRequest, get_account_request::Lookup},
};
use prost::Message;
use tonic::Code;
use uuid::Uuid;

/// Scoring with the shipped model and the grade E band reaching down to 300, so that a
/// thin file (no signals at all) is approved, at grade E's rate and the thin-file cap.
async fn scoring() -> TestApp {
    testing::spawn::<scoring::Scoring>(&[(
        "SCORING_GRADE_BANDS",
        "A:620:0.0002,B:600:0.00025,C:580:0.0003,D:560:0.0004,E:300:0.0005",
    )])
    .await
}

fn application(customer_id: &str) -> ApplyForCreditLineRequest {
    ApplyForCreditLineRequest {
        request_id: Uuid::now_v7().to_string(),
        customer_id: customer_id.to_owned(),
        requested_limit: None,
        annual_income: None,
        device_id: String::new(),
        data_consent: true,
        review_resolution: None,
    }
}

fn borrow(customer_id: &str, principal_minor: i64) -> BorrowRequest {
    BorrowRequest {
        request_id: Uuid::now_v7().to_string(),
        customer_id: customer_id.to_owned(),
        principal: cny(principal_minor),
        term_months: 5,
        repayment_method: RepaymentMethod::EqualPrincipal as i32,
        quote_id: String::new(),
        device_id: String::new(),
        purpose: LoanPurpose::Consumption as i32,
    }
}

#[tokio::test]
async fn an_approved_application_opens_the_line_and_a_second_is_refused() {
    let scoring_app = scoring().await;
    let mut world = world(
        Some(&scoring_app.url()),
        &[("LIMIT_INCREASE_COOLDOWN_DAYS", "0")],
    )
    .await;
    let customer_id = world.customer(11).await;
    let token = customer_token(&customer_id);
    let request = application(&customer_id);
    let applied = world
        .account
        .apply_for_credit_line(testing::with_token(request.clone(), &token))
        .await
        .expect("applied")
        .into_inner();
    // A thin file (no signals) is approved at scoring's thin-file cap, 2,000 CNY.
    assert_eq!(applied.outcome, DecisionOutcome::Approved as i32);
    let line = applied.credit_line.clone().expect("line");
    assert_eq!(
        (
            minor(&line.limit),
            minor(&line.available),
            minor(&line.utilised)
        ),
        (200_000, 200_000, 0)
    );
    assert_eq!(line.decision_id, applied.decision_id);
    assert!(!line.daily_rate.is_empty());
    // A retry replays the same response; a new application is CREDIT_LINE_EXISTS.
    let replay = world
        .account
        .apply_for_credit_line(testing::with_token(request, &token))
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(replay, applied);
    let status = world
        .account
        .apply_for_credit_line(testing::with_token(application(&customer_id), &token))
        .await
        .expect_err("one open line");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::AlreadyExists, "CREDIT_LINE_EXISTS")
    );
    // No consent: INVALID_ARGUMENT.
    let mut no_consent = application(&customer_id);
    no_consent.data_consent = false;
    let status = world
        .account
        .apply_for_credit_line(testing::with_token(no_consent, &token))
        .await
        .expect_err("consent");
    assert_eq!(status.code(), Code::InvalidArgument);
    // The ledger holds the limit; CreditLineOpened is on account's outbox.
    let read = world.credit_line(&customer_id, &token).await.expect("line");
    assert_eq!(minor(&read.limit), 200_000);
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar("SELECT payload FROM outbox")
        .fetch_all(&world.pool)
        .await
        .expect("outbox");
    let opened = payloads
        .iter()
        .filter_map(|bytes| Event::decode(bytes.as_slice()).ok()?.payload)
        .filter(|payload| matches!(payload, Payload::CreditLineOpened(_)))
        .count();
    assert_eq!(opened, 1);

    // An increase beyond what a thin file may have: DECLINED with reasons, nothing moved.
    let increase = world
        .account
        .request_limit_increase(testing::with_token(
            RequestLimitIncreaseRequest {
                request_id: Uuid::now_v7().to_string(),
                customer_id: customer_id.clone(),
                requested_limit: cny(300_000),
                annual_income: None,
                device_id: String::new(),
            },
            &token,
        ))
        .await
        .expect("decided")
        .into_inner();
    assert_eq!(increase.outcome, DecisionOutcome::Declined as i32);
    assert!((1..=4).contains(&increase.reasons.len()));
    assert!(increase.change.is_none());
    assert_eq!(minor(&increase.credit_line.expect("line").limit), 200_000);

    // The ledger down: UNAVAILABLE DEPENDENCY_UNAVAILABLE, and nothing recorded.
    world.stop_ledger().await;
    let status = world
        .account
        .borrow(testing::with_token(borrow(&customer_id, 10_000), &token))
        .await
        .expect_err("ledger down");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::Unavailable, "DEPENDENCY_UNAVAILABLE")
    );
    let drawdowns: i64 = sqlx::query_scalar("SELECT count(*) FROM drawdowns")
        .fetch_one(&world.pool)
        .await
        .expect("count");
    assert_eq!(drawdowns, 0, "nothing recorded");
    world.stop().await;
    scoring_app.stop().await.expect("scoring stopped");
}

#[tokio::test]
async fn a_hundred_concurrent_borrows_never_exceed_the_limit_and_a_retry_books_one_loan() {
    let scoring_app = scoring().await;
    let mut world = world(
        Some(&scoring_app.url()),
        &[("RATE_LIMIT_BORROW_PER_CUSTOMER", "0")],
    )
    .await;
    let customer_id = world.customer(12).await;
    let token = customer_token(&customer_id);
    world
        .account
        .apply_for_credit_line(testing::with_token(application(&customer_id), &token))
        .await
        .expect("approved");

    // A retried Borrow (same request_id, sequentially and concurrently) books one loan.
    let request = borrow(&customer_id, 10_000);
    let calls = (0..4).map(|_| {
        let mut account = world.account.clone();
        let request = testing::with_token(request.clone(), &token);
        async move { account.borrow(request).await }
    });
    let results = futures::future::join_all(calls).await;
    let loan_ids: std::collections::BTreeSet<String> = results
        .into_iter()
        .map(|result| {
            result
                .expect("borrowed")
                .into_inner()
                .loan
                .expect("loan")
                .loan_id
        })
        .collect();
    assert_eq!(loan_ids.len(), 1, "one loan for one request_id");
    let again = world
        .account
        .borrow(testing::with_token(request, &token))
        .await
        .expect("replayed")
        .into_inner();
    assert!(loan_ids.contains(&again.loan.expect("loan").loan_id));

    // 100 concurrent drawdowns of 100 CNY on the 1,900 CNY left.
    let calls = (0..100).map(|_| {
        let mut account = world.account.clone();
        let request = testing::with_token(borrow(&customer_id, 10_000), &token);
        async move { account.borrow(request).await }
    });
    let results = futures::future::join_all(calls).await;
    let mut booked = 0;
    let mut refused = 0;
    for result in &results {
        match result {
            Ok(_) => booked += 1,
            Err(status) if reason(status) == "CREDIT_LIMIT_EXCEEDED" => refused += 1,
            Err(status) => panic!("unexpected refusal {status:?}"),
        }
    }
    assert_eq!(booked, 19, "exactly the headroom was drawn");
    assert_eq!(refused, 81);
    let listed = world
        .account
        .list_loans(testing::with_token(
            ListLoansRequest {
                customer_id: customer_id.clone(),
                page_size: 500,
                ..ListLoansRequest::default()
            },
            &token,
        ))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.loans.len(), 20);

    // The cached line equals the ledger's balance.
    let ledger_available = world
        .ledger
        .get_account(testing::with_token(
            GetAccountRequest {
                lookup: Some(Lookup::Key(AccountKey {
                    code: AccountCode::CreditLineAvailable as i32,
                    currency_code: "CNY".into(),
                    customer_id: customer_id.clone(),
                    loan_id: String::new(),
                    sub_account: 0,
                })),
            },
            &world.service,
        ))
        .await
        .expect("account")
        .into_inner()
        .account
        .map(|account| minor(&account.credits_posted) - minor(&account.debits_posted))
        .expect("account");
    assert_eq!(ledger_available, 0);
    let line = world.credit_line(&customer_id, &token).await.expect("line");
    assert_eq!(minor(&line.available), ledger_available);
    assert_eq!(minor(&line.utilised), 200_000);

    world.stop().await;
    scoring_app.stop().await.expect("scoring stopped");
}

/// Collects every log line of this process (tests run one per process under nextest).
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_logs_of_a_whole_journey_hold_no_national_id_phone_or_name() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_writer(move || writer.clone())
        .try_init()
        .expect("the test's subscriber");
    let scoring_app = scoring().await;
    let mut world = world(Some(&scoring_app.url()), &[]).await;
    let customer_id = world.customer(13).await;
    let token = customer_token(&customer_id);
    world
        .account
        .apply_for_credit_line(testing::with_token(application(&customer_id), &token))
        .await
        .expect("approved");
    let quote = world
        .account
        .quote_loan(testing::with_token(
            QuoteLoanRequest {
                customer_id: customer_id.clone(),
                principal: cny(50_000),
                term_months: 5,
                repayment_method: 0,
                purpose: LoanPurpose::Travel as i32,
            },
            &token,
        ))
        .await
        .expect("quoted")
        .into_inner()
        .quote
        .expect("quote");
    let mut request = borrow(&customer_id, 50_000);
    request.quote_id = quote.quote_id.clone();
    let loan = world
        .account
        .borrow(testing::with_token(request, &token))
        .await
        .expect("borrowed")
        .into_inner()
        .loan
        .expect("loan");
    assert_eq!(loan.apr, quote.apr, "the quote's terms were booked");
    assert_eq!(
        loan.purpose,
        LoanPurpose::Consumption as i32,
        "Borrow's purpose"
    );
    assert_eq!(
        loan.schedule.expect("schedule").total_interest,
        quote.schedule.expect("schedule").total_interest
    );
    world
        .account
        .repay(testing::with_token(
            RepayRequest {
                request_id: Uuid::now_v7().to_string(),
                customer_id: customer_id.clone(),
                loan_id: loan.loan_id.clone(),
                amount: None,
                pay_off: true,
                external_reference: String::new(),
            },
            &token,
        ))
        .await
        .expect("repaid");
    // A failing call logs too (scoring down from here).
    scoring_app.stop().await.expect("scoring stopped");
    let status = world
        .account
        .borrow(testing::with_token(borrow(&customer_id, 50_000), &token))
        .await
        .expect_err("scoring down");
    assert_eq!(reason(&status), "DEPENDENCY_UNAVAILABLE");
    world.stop().await;

    let logs = String::from_utf8_lossy(&captured.0.lock().expect("lock")).into_owned();
    assert!(logs.len() > 1_000, "the journey was logged");
    let phone = phone(13);
    for secret in [
        national_id(13),
        phone.clone(),
        phone.trim_start_matches("+86").to_owned(),
        NAME.to_owned(),
    ] {
        assert!(!logs.contains(&secret), "the logs hold PII");
    }
}
