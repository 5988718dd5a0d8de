//! Dynamic limits and pricing against the real services on port 0: a ledger, account
//! (its test world, shared with account's own tests) and scoring wired together, one
//! Redis key prefix so scoring consumes the ledger's events. RunPortfolioReview raises a
//! good payer; the live policy freezes on an overdue instalment, cuts at 30 days past
//! due and unfreezes on cure; nothing is raised while overdue; a concurrent review is
//! ABORTED; bad input and missing dependencies answer their documented codes.

#[path = "../../account/tests/common/mod.rs"]
mod account_world;
mod decisions_support;

use std::time::Duration;

use decisions_support::{Harness, outcome};
use microloan_platform::testing;
use microloan_proto::{
    common::v1::{CreditLineStatus, LoanPurpose, Money, RepaymentMethod},
    google::r#type::Date,
    ledger::v1::{
        DisburseRequest, GetBusinessDateRequest, GetLoanRequest, RepayRequest, RunEndOfDayRequest,
    },
    scoring::v1::{
        RepaymentOutcomeKind, ReviewActionKind, RunPortfolioReviewRequest,
        RunPortfolioReviewResponse,
    },
};
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

/// Every score approved (grade E down to 0) and a loss budget the PD never binds, so
/// the limits these tests see come from the policy's step and caps.
const SCORING_OVERRIDES: [(&str, &str); 2] = [
    (
        "SCORING_GRADE_BANDS",
        "A:620:0.0002,B:600:0.00025,C:580:0.0003,D:560:0.0004,E:0:0.0005",
    ),
    ("SCORING_LIMIT_EXPECTED_LOSS_MINOR_UNITS", "100000000000"),
];
/// Bound on every wait for an event to travel ledger → scoring → account.
const EVENT_WAIT: Duration = Duration::from_secs(20);
/// Bound on end-of-day runs (a 1-month instalment 30 days overdue needs ~62).
const END_OF_DAYS_MAX: u32 = 80;

fn cny(minor_units: i64) -> Option<Money> {
    Some(Money {
        currency_code: "CNY".into(),
        minor_units,
    })
}

struct Stack {
    world: account_world::World,
    scoring: Harness,
}

impl Stack {
    async fn start() -> Self {
        let world = account_world::world(None, &[]).await;
        let account_url = world.app.url();
        let ledger_url = world.ledger_app.as_ref().expect("ledger").url();
        let mut vars = vec![
            ("ACCOUNT_URL", account_url.as_str()),
            ("LEDGER_URL", ledger_url.as_str()),
            ("REDIS_KEY_PREFIX", world.redis_prefix.as_str()),
        ];
        vars.extend_from_slice(&SCORING_OVERRIDES);
        let scoring = Harness::start(&vars).await;
        Self { world, scoring }
    }

    async fn stop(self) {
        self.scoring.stop().await;
        self.world.stop().await;
    }

    async fn review(
        &mut self,
        request_id: &str,
        customers: &[&str],
        dry_run: bool,
    ) -> RunPortfolioReviewResponse {
        self.scoring
            .client
            .run_portfolio_review(testing::with_token(
                RunPortfolioReviewRequest {
                    request_id: request_id.to_owned(),
                    customer_ids: customers.iter().map(|id| (*id).to_owned()).collect(),
                    dry_run,
                    as_of_date: None,
                },
                &self.scoring.token,
            ))
            .await
            .expect("review")
            .into_inner()
    }

    async fn line(&mut self, customer: &str) -> (CreditLineStatus, i64, i64) {
        let token = self.world.service.clone();
        let line = self
            .world
            .credit_line(customer, &token)
            .await
            .expect("line");
        (
            line.status(),
            account_world::minor(&line.limit),
            account_world::minor(&line.utilised),
        )
    }

    /// Polls account until the line meets `done` (the event policy is asynchronous),
    /// closing up to 2 more business days if it does not (a reminder for overdue day N
    /// may go out with the run after the one that made the loan N days past due).
    async fn line_becomes(
        &mut self,
        customer: &str,
        done: impl Fn(&(CreditLineStatus, i64, i64)) -> bool,
    ) -> (CreditLineStatus, i64, i64) {
        for extra_day in 0..=2 {
            if extra_day > 0 {
                self.end_of_day().await;
            }
            let deadline = tokio::time::Instant::now() + EVENT_WAIT / 3;
            while tokio::time::Instant::now() < deadline {
                let line = self.line(customer).await;
                if done(&line) {
                    return line;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let states: Vec<(i32, i16, i32)> = sqlx::query_as(
            "SELECT installment_sequence, outcome, days_past_due FROM installment_states",
        )
        .fetch_all(&self.scoring.pool)
        .await
        .expect("states");
        panic!(
            "line of {customer} is {:?}; scoring's instalment states {states:?}",
            self.line(customer).await
        );
    }

    async fn end_of_day(&mut self) {
        let token = self.world.service.clone();
        let date: Date = self
            .world
            .ledger
            .get_business_date(testing::with_token(
                GetBusinessDateRequest::default(),
                &token,
            ))
            .await
            .expect("business date")
            .into_inner()
            .business_date
            .expect("date");
        self.world
            .ledger
            .run_end_of_day(testing::with_token(
                RunEndOfDayRequest {
                    request_id: Uuid::now_v7().to_string(),
                    business_date: Some(date),
                },
                &token,
            ))
            .await
            .expect("end of day");
    }

    async fn days_past_due(&mut self, loan_id: &str) -> i32 {
        let token = self.world.service.clone();
        self.world
            .ledger
            .get_loan(testing::with_token(
                GetLoanRequest {
                    loan_id: loan_id.to_owned(),
                },
                &token,
            ))
            .await
            .expect("loan")
            .into_inner()
            .loan
            .expect("loan")
            .days_past_due
    }

    /// Closes business days until the loan is `days` past due.
    async fn until_past_due(&mut self, loan_id: &str, days: i32) {
        for _ in 0..END_OF_DAYS_MAX {
            if self.days_past_due(loan_id).await >= days {
                return;
            }
            self.end_of_day().await;
        }
        panic!("loan {loan_id} never reached {days} days past due");
    }
}

#[tokio::test]
async fn a_good_payer_is_raised_by_the_review_and_a_dry_run_changes_nothing() {
    let mut stack = Stack::start().await;
    let customer = stack.world.customer(101).await;
    stack.world.open_line(&customer, 200_000, "0.0005").await;
    let customer_id = Uuid::parse_str(&customer).expect("uuid");
    let loan = Uuid::now_v7();
    stack
        .scoring
        .ingest(
            (1..=3)
                .map(|sequence| outcome(customer_id, loan, sequence, RepaymentOutcomeKind::OnTime))
                .collect(),
        )
        .await;

    let dry = stack.review("review-dry", &[&customer], true).await;
    assert!(dry.dry_run);
    assert_eq!((dry.lines_reviewed, dry.limits_raised), (1, 1));
    let raise = dry
        .actions
        .iter()
        .find(|action| action.kind() == ReviewActionKind::LimitRaised)
        .expect("a raise planned");
    assert!(!raise.applied);
    assert_eq!(account_world::minor(&raise.new_limit), 300_000);
    assert_eq!(
        stack.line(&customer).await.1,
        200_000,
        "a dry run applies nothing"
    );

    let review = stack.review("review-1", &[&customer], false).await;
    assert_eq!((review.lines_reviewed, review.limits_raised), (1, 1));
    assert_eq!(review.actions_failed, 0);
    let raise = &review.actions[0];
    assert_eq!(raise.kind(), ReviewActionKind::LimitRaised);
    assert!(raise.applied, "{raise:?}");
    assert_eq!(raise.reasons[0].code, "GOOD_REPAYMENT_HISTORY");
    assert_eq!(
        stack.line(&customer).await.1,
        300_000,
        "×1.5, applied by account"
    );

    // A retry answers the first run; a new review needs a better score than the raise's.
    let again = stack.review("review-1", &[&customer], false).await;
    assert_eq!(again.review_id, review.review_id);
    let next = stack.review("review-2", &[&customer], false).await;
    assert_eq!((next.lines_reviewed, next.limits_raised), (1, 0));
    assert_eq!(stack.line(&customer).await.1, 300_000);
    stack.stop().await;
}

#[tokio::test]
async fn overdue_freezes_30_days_cuts_to_drawn_no_raise_while_overdue_and_a_cure_unfreezes() {
    let mut stack = Stack::start().await;
    let customer = stack.world.customer(102).await;
    let line_id = stack.world.open_line(&customer, 500_000, "0.0005").await;
    let loan_id = Uuid::now_v7().to_string();
    let token = stack.world.service.clone();
    stack
        .world
        .ledger
        .disburse(testing::with_token(
            DisburseRequest {
                request_id: Uuid::now_v7().to_string(),
                customer_id: customer.clone(),
                loan_id: loan_id.clone(),
                credit_line_id: line_id,
                principal: cny(100_000),
                term_months: 5,
                repayment_method: RepaymentMethod::EqualPrincipal as i32,
                daily_rate: "0.0005".into(),
                penalty_daily_rate: String::new(),
                purpose: LoanPurpose::Consumption as i32,
            },
            &token,
        ))
        .await
        .expect("disbursed");

    stack.until_past_due(&loan_id, 1).await;
    let frozen = stack
        .line_becomes(&customer, |line| line.0 == CreditLineStatus::Frozen)
        .await;
    assert_eq!(frozen.1, 500_000, "frozen, not yet cut");

    stack.until_past_due(&loan_id, 30).await;
    let (status, limit, utilised) = stack.line_becomes(&customer, |line| line.1 < 500_000).await;
    assert_eq!(status, CreditLineStatus::Frozen);
    assert_eq!(limit, utilised, "cut to what is drawn");
    assert_eq!(utilised, 100_000);

    // A good payer elsewhere, but overdue here: the review raises nothing.
    let customer_id = Uuid::parse_str(&customer).expect("uuid");
    let other_loan = Uuid::now_v7();
    stack
        .scoring
        .ingest(
            (1..=3)
                .map(|sequence| {
                    outcome(
                        customer_id,
                        other_loan,
                        sequence,
                        RepaymentOutcomeKind::OnTime,
                    )
                })
                .collect(),
        )
        .await;
    let review = stack.review("review-overdue", &[&customer], false).await;
    assert_eq!(review.lines_reviewed, 1);
    assert_eq!((review.limits_raised, review.rates_lowered), (0, 0));
    assert_eq!(review.lines_unchanged, 1, "{:?}", review.actions);
    assert_eq!(stack.line(&customer).await.1, 100_000);

    // Paying everything cures: the policy lifts its own freeze.
    stack
        .world
        .ledger
        .repay(testing::with_token(
            RepayRequest {
                request_id: Uuid::now_v7().to_string(),
                customer_id: customer.clone(),
                loan_id: loan_id.clone(),
                amount: None,
                pay_off: true,
                external_reference: String::new(),
            },
            &token,
        ))
        .await
        .expect("paid off");
    stack
        .line_becomes(&customer, |line| line.0 == CreditLineStatus::Active)
        .await;
    stack.stop().await;
}

#[tokio::test]
async fn a_concurrent_review_is_aborted_and_bad_input_or_missing_peers_are_refused() {
    let closed = account_world::closed_port_url().await;
    let mut vars = vec![
        ("ACCOUNT_URL", closed.as_str()),
        ("LEDGER_URL", closed.as_str()),
    ];
    vars.extend_from_slice(&SCORING_OVERRIDES);
    let scoring = Harness::start(&vars).await;
    let token = scoring.token.clone();
    let review = |request: RunPortfolioReviewRequest| {
        let mut client = scoring.client.clone();
        let token = token.clone();
        async move {
            client
                .run_portfolio_review(testing::with_token(request, &token))
                .await
                .expect_err("refused")
        }
    };
    let request = |ids: Vec<String>| RunPortfolioReviewRequest {
        request_id: Uuid::now_v7().to_string(),
        customer_ids: ids,
        dry_run: false,
        as_of_date: Some(Date {
            year: 2026,
            month: 11,
            day: 28,
        }),
    };
    let fields = |status: &tonic::Status| -> Vec<String> {
        status
            .get_details_bad_request()
            .expect("bad request details")
            .field_violations
            .into_iter()
            .map(|violation| violation.field)
            .collect()
    };

    let too_many = review(request(
        (0..10_001).map(|_| Uuid::now_v7().to_string()).collect(),
    ))
    .await;
    assert_eq!(too_many.code(), Code::InvalidArgument);
    assert_eq!(fields(&too_many), ["customer_ids"]);
    let bad_id = review(request(vec![Uuid::now_v7().to_string(), "nope".into()])).await;
    assert_eq!(bad_id.code(), Code::InvalidArgument);
    assert_eq!(fields(&bad_id), ["customer_ids[1]"]);
    let no_key = review(RunPortfolioReviewRequest {
        request_id: String::new(),
        ..request(vec![])
    })
    .await;
    assert_eq!(fields(&no_key), ["request_id"]);
    let bad_date = review(RunPortfolioReviewRequest {
        as_of_date: Some(Date {
            year: 2026,
            month: 2,
            day: 30,
        }),
        ..request(vec![])
    })
    .await;
    assert_eq!(fields(&bad_date), ["as_of_date"]);

    // Another review holds the lock (as a running review does): ABORTED.
    let mut holder = scoring.pool.acquire().await.expect("connection");
    sqlx::query("SELECT pg_advisory_lock($1)")
        .bind(scoring::review::REVIEW_LOCK)
        .execute(&mut *holder)
        .await
        .expect("lock");
    let aborted = review(request(vec![Uuid::now_v7().to_string()])).await;
    assert_eq!(aborted.code(), Code::Aborted);
    assert_eq!(
        aborted.get_details_error_info().expect("info").reason,
        "CONCURRENT_MODIFICATION"
    );
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(scoring::review::REVIEW_LOCK)
        .execute(&mut *holder)
        .await
        .expect("unlock");
    drop(holder);

    // Account unreachable: UNAVAILABLE DEPENDENCY_UNAVAILABLE, and the key stays free.
    let down = request(vec![Uuid::now_v7().to_string()]);
    let unavailable = review(down.clone()).await;
    assert_eq!(unavailable.code(), Code::Unavailable);
    assert_eq!(
        unavailable.get_details_error_info().expect("info").reason,
        "DEPENDENCY_UNAVAILABLE"
    );
    let stored: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM idempotency_keys WHERE rpc = 'RunPortfolioReview'",
    )
    .fetch_one(&scoring.pool)
    .await
    .expect("count");
    assert_eq!(stored, 0, "nothing recorded for a failed review");
    scoring.stop().await;

    // No verified model: MODEL_UNAVAILABLE before anything else.
    let missing = vec![("SCORING_MODEL_PATH", "/nonexistent/model.json")];
    let mut scoring = Harness::start(&missing).await;
    let status = scoring
        .client
        .run_portfolio_review(testing::with_token(
            request(vec![Uuid::now_v7().to_string()]),
            &scoring.token,
        ))
        .await
        .expect_err("no model");
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(
        status.get_details_error_info().expect("info").reason,
        "MODEL_UNAVAILABLE"
    );
    scoring.stop().await;
}
