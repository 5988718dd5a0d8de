//! The loan book through gRPC against real Postgres: credit lines as ledger balances,
//! drawdowns as one atomic posting that never overdraws the line (under concurrency
//! too), idempotency, and the documented refusals, each changing nothing.

mod common;

use common::{Book, book, cny, minor, new_id};

use microloan_platform::testing::{self};
use microloan_proto::{
    common::v1::{InstallmentStatus, LoanPurpose, LoanStatus, RepaymentMethod},
    ledger::v1::{
        ChangeCreditLimitRequest, DisburseRequest, DisburseResponse, GetLoanRequest,
        ListLoansRequest, OpenCreditLineRequest, QuotePayoffRequest, RepayRequest, TransferCode,
        VerifyIntegrityRequest,
    },
};
use sqlx::PgPool;
use tonic::{Code, Status};
use tonic_types::StatusExt;

fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| {
            assert_eq!(info.domain, "microloan.ledger");
            info.reason.clone()
        })
        .unwrap_or_default()
}

fn fields(status: &Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

impl Book {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        testing::with_token(message, &self.token)
    }

    async fn open_line(&mut self, customer_id: &str, limit_minor: i64) -> String {
        let credit_line_id = new_id();
        let request = self.request(OpenCreditLineRequest {
            request_id: new_id(),
            customer_id: customer_id.to_owned(),
            credit_line_id: credit_line_id.clone(),
            limit: cny(limit_minor),
        });
        let opened = self
            .client
            .open_credit_line(request)
            .await
            .expect("opened")
            .into_inner();
        let line = opened.credit_line.expect("line");
        assert_eq!(minor(&line.limit), limit_minor);
        assert_eq!(minor(&line.available), limit_minor);
        assert_eq!(minor(&line.utilised), 0);
        credit_line_id
    }

    fn drawdown(
        &self,
        customer_id: &str,
        credit_line_id: &str,
        principal_minor: i64,
    ) -> DisburseRequest {
        DisburseRequest {
            request_id: new_id(),
            customer_id: customer_id.to_owned(),
            loan_id: new_id(),
            credit_line_id: credit_line_id.to_owned(),
            principal: cny(principal_minor),
            term_months: 10,
            repayment_method: RepaymentMethod::EqualPrincipal as i32,
            daily_rate: "0.0005".into(),
            penalty_daily_rate: String::new(),
            purpose: LoanPurpose::Consumption as i32,
        }
    }

    async fn disburse(&mut self, request: DisburseRequest) -> Result<DisburseResponse, Status> {
        let request = self.request(request);
        self.client
            .disburse(request)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn verify(&mut self) {
        let request = self.request(VerifyIntegrityRequest::default());
        let report = self
            .client
            .verify_integrity(request)
            .await
            .expect("verify")
            .into_inner();
        assert!(report.ok, "{:?}", report.violations);
    }

    async fn portfolio_report(&mut self) -> microloan_proto::ledger::v1::PortfolioReport {
        let request =
            self.request(microloan_proto::ledger::v1::GetPortfolioReportRequest::default());
        self.client
            .get_portfolio_report(request)
            .await
            .expect("report")
            .into_inner()
            .report
            .expect("report")
    }

    async fn pool(&self) -> PgPool {
        PgPool::connect(&self.app.database_url)
            .await
            .expect("connect")
    }
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

#[tokio::test]
async fn a_drawdown_books_the_loan_its_schedule_and_two_linked_transfers() {
    let mut book = book().await;
    let customer = new_id();
    let line = book.open_line(&customer, 1_000_000).await;
    let request = book.drawdown(&customer, &line, 300_000);
    let loan_id = request.loan_id.clone();
    let booked = book.disburse(request.clone()).await.expect("booked");

    let loan = booked.loan.as_ref().expect("loan");
    assert_eq!(loan.loan_id, loan_id);
    assert_eq!(loan.status, LoanStatus::Active as i32);
    assert_eq!(minor(&loan.outstanding_principal), 300_000);
    assert_eq!(loan.penalty_daily_rate, "0.00075");
    let apr: f64 = loan.apr.parse().expect("decimal");
    assert!((apr - 0.1825).abs() < 0.005, "{}", loan.apr);
    let schedule = loan.schedule.as_ref().expect("schedule");
    assert_eq!(schedule.installments.len(), 10);
    assert_eq!(
        schedule
            .installments
            .iter()
            .map(|item| minor(&item.principal))
            .sum::<i64>(),
        300_000
    );
    assert!(
        schedule
            .installments
            .iter()
            .all(|item| item.status == InstallmentStatus::Scheduled as i32)
    );
    let codes: Vec<i32> = booked
        .transfers
        .iter()
        .map(|transfer| transfer.code)
        .collect();
    assert_eq!(
        codes,
        [
            TransferCode::DisbursementHeadroom as i32,
            TransferCode::DisbursementPrincipal as i32
        ]
    );
    let line_after = booked.credit_line.as_ref().expect("line");
    assert_eq!(minor(&line_after.available), 700_000);
    assert_eq!(minor(&line_after.utilised), 300_000);
    assert_eq!(minor(&line_after.limit), 1_000_000);

    // The same request again replays; the same loan under another request_id returns it.
    assert_eq!(
        book.disburse(request.clone()).await.expect("replay"),
        booked
    );
    let again = book
        .disburse(DisburseRequest {
            request_id: new_id(),
            ..request.clone()
        })
        .await
        .expect("same loan, same terms");
    assert_eq!(
        again.loan.as_ref().map(|loan| &loan.loan_id),
        Some(&loan_id)
    );
    let other_terms = book
        .disburse(DisburseRequest {
            request_id: new_id(),
            term_months: 5,
            ..request
        })
        .await
        .expect_err("other terms");
    assert_eq!(other_terms.code(), Code::AlreadyExists);
    assert_eq!(reason(&other_terms), "LOAN_EXISTS");

    let got = book
        .client
        .get_loan(book.request(GetLoanRequest {
            loan_id: loan_id.clone(),
        }))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got.loan.as_ref(), booked.loan.as_ref());

    let pool = book.pool().await;
    assert_eq!(count(&pool, "SELECT count(*) FROM loans").await, 1);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM outbox WHERE event_type = 'EVENT_TYPE_LOAN_DISBURSED'"
        )
        .await,
        1
    );
    pool.close().await;
    book.verify().await;
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn concurrent_drawdowns_never_take_a_line_past_its_limit() {
    let mut book = book().await;
    let customer = new_id();
    let limit = 1_000_000;
    let line = book.open_line(&customer, limit).await;
    // 40 drawdowns of 300 CNY race for 10,000 CNY of headroom: 33 fit, 7 are refused.
    let principal = 30_000;
    let attempts = 40;
    let calls = (0..attempts).map(|_| {
        let mut client = book.client.clone();
        let request = book.request(book.drawdown(&customer, &line, principal));
        async move { client.disburse(request).await }
    });
    let results = futures::future::join_all(calls).await;
    let booked = results.iter().filter(|result| result.is_ok()).count() as i64;
    for refused in results.iter().filter_map(|result| result.as_ref().err()) {
        assert_eq!(refused.code(), Code::FailedPrecondition, "{refused:?}");
        assert_eq!(reason(refused), "CREDIT_LIMIT_EXCEEDED");
    }
    assert_eq!(booked, limit / principal);
    let pool = book.pool().await;
    let disbursed: i64 =
        sqlx::query_scalar("SELECT COALESCE(sum(principal_minor), 0)::bigint FROM loans")
            .fetch_one(&pool)
            .await
            .expect("sum");
    assert_eq!(disbursed, booked * principal);
    assert!(disbursed <= limit);
    pool.close().await;
    book.verify().await;
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn refused_drawdowns_say_why_and_book_nothing() {
    let mut book = book().await;
    let customer = new_id();
    let line = book.open_line(&customer, 500_000).await;

    let too_big = book
        .disburse(book.drawdown(&customer, &line, 500_001))
        .await
        .expect_err("over the line");
    assert_eq!(reason(&too_big), "CREDIT_LIMIT_EXCEEDED");
    let metadata = too_big
        .get_error_details()
        .error_info()
        .map(|info| info.metadata.clone())
        .unwrap_or_default();
    assert_eq!(
        metadata.get("available_minor_units").map(String::as_str),
        Some("500000")
    );

    for (principal, want) in [
        (9_999, "DRAWDOWN_BELOW_MINIMUM"),
        (4_000_001, "DRAWDOWN_LIMIT_EXCEEDED"),
    ] {
        let status = book
            .disburse(book.drawdown(&customer, &line, principal))
            .await
            .expect_err(want);
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(reason(&status), want);
    }

    let malformed = DisburseRequest {
        request_id: "bad request id".into(),
        principal: cny(0),
        term_months: 7,
        daily_rate: "0.01".into(),
        ..book.drawdown(&customer, &line, 1)
    };
    let status = book.disburse(malformed).await.expect_err("malformed");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        fields(&status),
        ["request_id", "principal", "term_months", "daily_rate"]
    );

    let stranger = book
        .disburse(book.drawdown(&new_id(), &line, 50_000))
        .await
        .expect_err("no line");
    assert_eq!(stranger.code(), Code::NotFound);

    // A line closed in the ledger (limit 0) refuses drawdowns with CREDIT_LINE_NOT_OPEN.
    let closed = book
        .client
        .change_credit_limit(book.request(ChangeCreditLimitRequest {
            request_id: new_id(),
            customer_id: customer.clone(),
            new_limit: cny(0),
            clamp_to_utilisation: false,
        }))
        .await
        .expect("closed")
        .into_inner();
    assert_eq!(minor(&closed.credit_line.as_ref().expect("line").limit), 0);
    let status = book
        .disburse(book.drawdown(&customer, &line, 50_000))
        .await
        .expect_err("closed");
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(reason(&status), "CREDIT_LINE_NOT_OPEN");

    let pool = book.pool().await;
    assert_eq!(count(&pool, "SELECT count(*) FROM loans").await, 0);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM transfers WHERE code IN (20, 21)"
        )
        .await,
        0
    );
    pool.close().await;
    book.verify().await;
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn limits_change_by_one_transfer_and_never_below_what_is_drawn() {
    let mut book = book().await;
    let customer = new_id();
    let line = book.open_line(&customer, 1_000_000).await;
    book.disburse(book.drawdown(&customer, &line, 400_000))
        .await
        .expect("drawn");
    let change = |new_limit: i64, clamp: bool| ChangeCreditLimitRequest {
        request_id: new_id(),
        customer_id: customer.clone(),
        new_limit: cny(new_limit),
        clamp_to_utilisation: clamp,
    };

    let raised = book
        .client
        .change_credit_limit(book.request(change(2_000_000, false)))
        .await
        .expect("raised")
        .into_inner();
    assert_eq!(minor(&raised.previous_limit), 1_000_000);
    assert_eq!(
        raised.transfer.as_ref().map(|t| t.code),
        Some(TransferCode::CreditLimitIncrease as i32)
    );
    assert_eq!(
        minor(&raised.credit_line.as_ref().expect("line").available),
        1_600_000
    );

    let refused = book
        .client
        .change_credit_limit(book.request(change(300_000, false)))
        .await
        .expect_err("below drawn");
    assert_eq!(reason(&refused), "LIMIT_BELOW_UTILISATION");
    let clamped = book
        .client
        .change_credit_limit(book.request(change(300_000, true)))
        .await
        .expect("clamped")
        .into_inner();
    let line_after = clamped.credit_line.expect("line");
    assert_eq!(minor(&line_after.limit), 400_000);
    assert_eq!(minor(&line_after.available), 0);
    let unchanged = book
        .client
        .change_credit_limit(book.request(change(400_000, false)))
        .await
        .expect("same")
        .into_inner();
    assert!(unchanged.transfer.is_none());

    let second_open = book
        .client
        .open_credit_line(book.request(OpenCreditLineRequest {
            request_id: new_id(),
            customer_id: customer.clone(),
            credit_line_id: new_id(),
            limit: cny(600_000),
        }))
        .await
        .expect_err("already open");
    assert_eq!(second_open.code(), Code::AlreadyExists);
    assert_eq!(reason(&second_open), "CREDIT_LINE_EXISTS");

    for (limit, field) in [(49_999, "limit"), (20_000_001, "limit")] {
        let status = book
            .client
            .open_credit_line(book.request(OpenCreditLineRequest {
                request_id: new_id(),
                customer_id: new_id(),
                credit_line_id: new_id(),
                limit: cny(limit),
            }))
            .await
            .expect_err("out of range");
        assert_eq!(fields(&status), [field]);
    }
    book.verify().await;
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn repayments_allocate_restore_headroom_and_settle_the_loan() {
    let mut book = book().await;
    let customer = new_id();
    let line = book.open_line(&customer, 1_000_000).await;
    let drawdown = book.drawdown(&customer, &line, 300_000);
    let loan_id = drawdown.loan_id.clone();
    book.disburse(drawdown).await.expect("booked");
    let repay = |amount: Option<i64>, pay_off: bool| RepayRequest {
        request_id: new_id(),
        customer_id: customer.clone(),
        loan_id: loan_id.clone(),
        amount: amount.and_then(cny),
        pay_off,
        external_reference: "wx-1".into(),
    };

    // On the disbursement day nothing has accrued: the current instalment's principal,
    // then prepayment from the last instalment backwards.
    let first = book
        .client
        .repay(book.request(repay(Some(50_000), false)))
        .await
        .expect("repaid")
        .into_inner();
    let repayment = first.repayment.expect("repayment");
    let sequences: Vec<i32> = repayment.allocations.iter().map(|a| a.sequence).collect();
    assert_eq!(sequences, [1, 10]);
    assert_eq!(minor(&repayment.principal_paid), 50_000);
    assert_eq!(minor(&repayment.prepaid_principal), 20_000);
    assert_eq!(minor(&repayment.interest_paid), 0);
    assert!(!repayment.paid_off);
    let codes: Vec<i32> = first.transfers.iter().map(|t| t.code).collect();
    assert_eq!(
        codes,
        [
            TransferCode::RepaymentPrincipal as i32,
            TransferCode::HeadroomRestore as i32
        ]
    );
    let line_after = first.credit_line.expect("line");
    assert_eq!(
        (minor(&line_after.available), minor(&line_after.utilised)),
        (750_000, 250_000)
    );

    let quote = book
        .client
        .quote_payoff(book.request(QuotePayoffRequest {
            loan_id: loan_id.clone(),
            payoff_date: None,
        }))
        .await
        .expect("quote")
        .into_inner()
        .quote
        .expect("quote");
    assert_eq!(minor(&quote.total), 250_000);
    assert_eq!(minor(&quote.per_diem), 125);

    let too_much = book
        .client
        .repay(book.request(repay(Some(250_001), false)))
        .await
        .expect_err("too much");
    assert_eq!(reason(&too_much), "REPAYMENT_EXCEEDS_BALANCE");
    let both = book
        .client
        .repay(book.request(repay(Some(1), true)))
        .await
        .expect_err("both");
    assert_eq!(fields(&both), ["amount"]);
    let stranger = RepayRequest {
        customer_id: new_id(),
        ..repay(Some(100), false)
    };
    let status = book
        .client
        .repay(book.request(stranger))
        .await
        .expect_err("not theirs");
    assert_eq!(status.code(), Code::NotFound);

    let settled = book
        .client
        .repay(book.request(repay(None, true)))
        .await
        .expect("paid off")
        .into_inner();
    assert!(settled.repayment.expect("repayment").paid_off);
    let loan = settled.loan.expect("loan");
    assert_eq!(loan.status, LoanStatus::PaidOff as i32);
    assert_eq!(minor(&loan.total_outstanding), 0);
    let line_after = settled.credit_line.expect("line");
    assert_eq!(
        (minor(&line_after.available), minor(&line_after.utilised)),
        (1_000_000, 0)
    );
    let again = book
        .client
        .repay(book.request(repay(Some(100), false)))
        .await
        .expect_err("settled");
    assert_eq!(reason(&again), "LOAN_NOT_ACTIVE");

    let pool = book.pool().await;
    let events: Vec<String> = sqlx::query_scalar("SELECT event_type FROM outbox ORDER BY id")
        .fetch_all(&pool)
        .await
        .expect("events");
    assert_eq!(
        events,
        [
            "EVENT_TYPE_LOAN_DISBURSED",
            "EVENT_TYPE_REPAYMENT_RECEIVED",
            "EVENT_TYPE_REPAYMENT_RECEIVED",
            "EVENT_TYPE_LOAN_PAID_OFF"
        ]
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM repayments").await, 2);
    pool.close().await;
    book.verify().await;
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn loans_list_newest_first_by_customer_and_status_a_page_at_a_time() {
    let mut book = book().await;
    let customer = new_id();
    let line = book.open_line(&customer, 2_000_000).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let request = book.drawdown(&customer, &line, 100_000);
        ids.push(request.loan_id.clone());
        book.disburse(request).await.expect("booked");
    }
    let other = new_id();
    let other_line = book.open_line(&other, 500_000).await;
    book.disburse(book.drawdown(&other, &other_line, 100_000))
        .await
        .expect("booked");

    let mut seen = Vec::new();
    let mut token = String::new();
    for _ in 0..5 {
        let page = book
            .client
            .list_loans(book.request(ListLoansRequest {
                customer_id: customer.clone(),
                page_size: 2,
                page_token: token.clone(),
                ..ListLoansRequest::default()
            }))
            .await
            .expect("page")
            .into_inner();
        seen.extend(page.loans.iter().map(|loan| loan.loan_id.clone()));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, every loan once");

    let whole_book = book
        .client
        .list_loans(book.request(ListLoansRequest::default()))
        .await
        .expect("book")
        .into_inner();
    assert_eq!(whole_book.loans.len(), 4);
    let paid_off = book
        .client
        .list_loans(book.request(ListLoansRequest {
            statuses: vec![LoanStatus::PaidOff as i32],
            ..ListLoansRequest::default()
        }))
        .await
        .expect("none")
        .into_inner();
    assert!(paid_off.loans.is_empty());
    for (request, field) in [
        (
            ListLoansRequest {
                page_token: "forged".into(),
                ..ListLoansRequest::default()
            },
            "page_token",
        ),
        (
            ListLoansRequest {
                page_size: -1,
                ..ListLoansRequest::default()
            },
            "page_size",
        ),
        (
            ListLoansRequest {
                customer_id: "nope".into(),
                ..ListLoansRequest::default()
            },
            "customer_id",
        ),
    ] {
        let status = book
            .client
            .list_loans(book.request(request))
            .await
            .expect_err(field);
        assert_eq!(fields(&status), [field]);
    }
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn verify_integrity_finds_a_line_or_loan_out_of_balance() {
    use microloan_proto::ledger::v1::IntegrityViolationKind;
    let mut book = book().await;
    let customer = new_id();
    let line = book.open_line(&customer, 1_000_000).await;
    book.disburse(book.drawdown(&customer, &line, 200_000))
        .await
        .expect("booked");
    let request = book.request(VerifyIntegrityRequest::default());
    let clean = book
        .client
        .verify_integrity(request)
        .await
        .expect("verify")
        .into_inner();
    assert!(clean.ok, "{:?}", clean.violations);
    assert_eq!(clean.loans_checked, 1);

    let pool = book.pool().await;
    sqlx::query("UPDATE credit_lines SET limit_minor = limit_minor + 1")
        .execute(&pool)
        .await
        .expect("corrupt the line");
    sqlx::query("UPDATE installments SET principal_paid = 1 WHERE sequence = 2")
        .execute(&pool)
        .await
        .expect("corrupt an instalment");
    pool.close().await;
    let request = book.request(VerifyIntegrityRequest::default());
    let report = book
        .client
        .verify_integrity(request)
        .await
        .expect("verify")
        .into_inner();
    assert!(!report.ok);
    let kinds: Vec<i32> = report.violations.iter().map(|v| v.kind).collect();
    assert!(
        kinds.contains(&(IntegrityViolationKind::CreditLineMismatch as i32)),
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&(IntegrityViolationKind::LoanBalanceMismatch as i32)),
        "{kinds:?}"
    );
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_portfolio_report_sums_the_book() {
    use microloan_proto::{common::v1::DelinquencyBucket, ledger::v1::GetPortfolioReportRequest};
    let mut book = book().await;
    let first = new_id();
    let first_line = book.open_line(&first, 1_000_000).await;
    let second = new_id();
    let second_line = book.open_line(&second, 500_000).await;
    book.disburse(book.drawdown(&first, &first_line, 300_000))
        .await
        .expect("booked");
    book.disburse(book.drawdown(&second, &second_line, 100_000))
        .await
        .expect("booked");
    let short = book.drawdown(&second, &second_line, 50_000);
    let short_id = short.loan_id.clone();
    book.disburse(short).await.expect("booked");
    book.client
        .repay(book.request(RepayRequest {
            request_id: new_id(),
            customer_id: second.clone(),
            loan_id: short_id,
            amount: None,
            pay_off: true,
            external_reference: String::new(),
        }))
        .await
        .expect("paid off");

    let report = book.portfolio_report().await;
    assert_eq!(report.active_loans, 2);
    assert_eq!(minor(&report.outstanding_principal), 400_000);
    assert_eq!(minor(&report.total_outstanding), 400_000);
    assert_eq!(report.buckets.len(), 5);
    assert_eq!(report.buckets[0].bucket, DelinquencyBucket::Current as i32);
    assert_eq!(report.buckets[0].loan_count, 2);
    assert_eq!(report.buckets[0].principal_share, "1");
    assert_eq!(minor(&report.npl_principal), 0);
    assert_eq!(report.npl_ratio, "0");
    assert_eq!(report.open_credit_lines, 2);
    assert_eq!(minor(&report.total_limit), 1_500_000);
    assert_eq!(minor(&report.total_available), 1_100_000);
    assert_eq!(report.utilisation_ratio, "0.266667");
    assert_eq!(minor(&report.cumulative_disbursed), 450_000);
    assert_eq!(report.loans_paid_off, 1);
    assert_eq!(report.loans_written_off, 0);
    let status = book
        .client
        .get_portfolio_report(book.request(GetPortfolioReportRequest {
            currency_code: "USD".into(),
        }))
        .await
        .expect_err("currency");
    assert_eq!(fields(&status), ["currency_code"]);
    book.app.stop().await.expect("clean stop");
}

fn purposed(request: DisburseRequest, purpose: LoanPurpose) -> DisburseRequest {
    DisburseRequest {
        purpose: purpose as i32,
        ..request
    }
}

/// A repayment of `amount_minor`, or the payoff with `None`.
fn repayment(customer_id: &str, loan_id: &str, amount_minor: Option<i64>) -> RepayRequest {
    RepayRequest {
        request_id: new_id(),
        customer_id: customer_id.to_owned(),
        loan_id: loan_id.to_owned(),
        amount: amount_minor.and_then(cny),
        pay_off: amount_minor.is_none(),
        external_reference: String::new(),
    }
}

#[tokio::test]
async fn a_drawdown_without_a_purpose_is_refused_and_books_nothing() {
    let mut book = book().await;
    let customer = new_id();
    let line = book.open_line(&customer, 1_000_000).await;
    let pool = book.pool().await;
    let transfers_before = count(&pool, "SELECT count(*) FROM transfers").await;
    // UNSPECIFIED, and a number that is no LoanPurpose.
    for purpose in [LoanPurpose::Unspecified as i32, 99] {
        let status = book
            .disburse(DisburseRequest {
                purpose,
                ..book.drawdown(&customer, &line, 300_000)
            })
            .await
            .expect_err("refused");
        assert_eq!(status.code(), Code::InvalidArgument, "{purpose}");
        assert_eq!(fields(&status), ["purpose"], "{purpose}");
    }
    assert_eq!(count(&pool, "SELECT count(*) FROM loans").await, 0);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM transfers").await,
        transfers_before
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM outbox").await, 0);
    // The line's headroom is untouched: the whole limit can still be drawn.
    book.disburse(book.drawdown(&customer, &line, 1_000_000))
        .await
        .expect("the full limit is still available");
    pool.close().await;
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_purpose_stays_with_the_loan_and_goes_on_the_event() {
    let mut book = book().await;
    let customer = new_id();
    let line = book.open_line(&customer, 1_000_000).await;
    let request = DisburseRequest {
        purpose: LoanPurpose::Travel as i32,
        ..book.drawdown(&customer, &line, 200_000)
    };
    let loan_id = request.loan_id.clone();
    let booked = book.disburse(request.clone()).await.expect("booked");
    assert_eq!(
        booked.loan.as_ref().map(|loan| loan.purpose),
        Some(LoanPurpose::Travel as i32)
    );

    let got = book
        .client
        .get_loan(book.request(GetLoanRequest {
            loan_id: loan_id.clone(),
        }))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        got.loan.map(|loan| loan.purpose),
        Some(LoanPurpose::Travel as i32)
    );
    let listed = book
        .client
        .list_loans(book.request(ListLoansRequest {
            customer_id: customer.clone(),
            ..ListLoansRequest::default()
        }))
        .await
        .expect("list")
        .into_inner();
    let purposes: Vec<i32> = listed.loans.iter().map(|loan| loan.purpose).collect();
    assert_eq!(purposes, [LoanPurpose::Travel as i32]);

    // The purpose is one of the terms: the same loan_id with another purpose is refused.
    let other_purpose = book
        .disburse(DisburseRequest {
            request_id: new_id(),
            purpose: LoanPurpose::Medical as i32,
            ..request
        })
        .await
        .expect_err("other purpose");
    assert_eq!(other_purpose.code(), Code::AlreadyExists);
    assert_eq!(reason(&other_purpose), "LOAN_EXISTS");

    let pool = book.pool().await;
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar(
        "SELECT payload FROM outbox WHERE event_type = 'EVENT_TYPE_LOAN_DISBURSED'",
    )
    .fetch_all(&pool)
    .await
    .expect("outbox");
    assert_eq!(payloads.len(), 1);
    let event =
        <microloan_proto::events::v1::Event as prost::Message>::decode(payloads[0].as_slice())
            .expect("an Event");
    let Some(microloan_proto::events::v1::event::Payload::LoanDisbursed(disbursed)) = event.payload
    else {
        panic!("not LoanDisbursed: {event:?}");
    };
    assert_eq!(disbursed.loan_id, loan_id);
    assert_eq!(disbursed.purpose, LoanPurpose::Travel as i32);
    pool.close().await;
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_portfolio_report_breaks_the_book_down_by_purpose() {
    let mut book = book().await;
    let first = new_id();
    let first_line = book.open_line(&first, 1_000_000).await;
    let second = new_id();
    let second_line = book.open_line(&second, 1_000_000).await;
    // CONSUMPTION: 3,000 CNY active and 500 CNY paid off; SMALL_BUSINESS: 1,000 CNY with
    // 200 CNY prepaid on the day of disbursement (no interest accrued yet, so all of it
    // is principal); MEDICAL: 500 CNY active. 5,000 CNY lent in all.
    let mut loan_ids = Vec::new();
    for (customer, line, principal_minor, purpose) in [
        (&first, &first_line, 300_000, LoanPurpose::Consumption),
        (&second, &second_line, 50_000, LoanPurpose::Consumption),
        (&second, &second_line, 100_000, LoanPurpose::SmallBusiness),
        (&first, &first_line, 50_000, LoanPurpose::Medical),
    ] {
        let booked = book
            .disburse(purposed(
                book.drawdown(customer, line, principal_minor),
                purpose,
            ))
            .await
            .expect("booked");
        loan_ids.push(booked.loan.expect("loan").loan_id);
    }
    for (loan_id, amount_minor) in [(&loan_ids[1], None), (&loan_ids[2], Some(20_000))] {
        book.client
            .repay(book.request(repayment(&second, loan_id, amount_minor)))
            .await
            .expect("repaid");
    }

    let report = book.portfolio_report().await;
    let summary = |purpose: LoanPurpose, loan_count, disbursed, outstanding, share: &str| {
        microloan_proto::ledger::v1::PurposeSummary {
            purpose: purpose as i32,
            loan_count,
            disbursed_principal: cny(disbursed),
            outstanding_principal: cny(outstanding),
            disbursed_share: share.to_owned(),
        }
    };
    // In LoanPurpose number order; purposes without loans are left out.
    assert_eq!(
        report.purposes,
        [
            summary(LoanPurpose::Consumption, 2, 350_000, 300_000, "0.7"),
            summary(LoanPurpose::Medical, 1, 50_000, 50_000, "0.1"),
            summary(LoanPurpose::SmallBusiness, 1, 100_000, 80_000, "0.2"),
        ]
    );
    // The breakdown adds up to the report's totals.
    assert_eq!(minor(&report.cumulative_disbursed), 500_000);
    assert_eq!(minor(&report.outstanding_principal), 430_000);
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn an_empty_book_has_no_purposes() {
    let mut book = book().await;
    let report = book.portfolio_report().await;
    assert!(report.purposes.is_empty());
    book.app.stop().await.expect("clean stop");
}

/// sqlx prepares each statement once per pooled connection, and Postgres may cache a
/// generic plan for it; made on a nearly empty, never-analyzed table such a plan was a
/// sequential scan kept while the table grew (docs/ledger.md Performance: instalments
/// and account balances on every Disburse and Repay). The instalment reads and the
/// balance write probe keys, so even generic plans on a tiny table read no table whole.
#[tokio::test]
async fn instalment_reads_and_balance_writes_scan_no_table_even_with_generic_plans() {
    use ledger::{
        book::{Posting, chain},
        gl::{
            accounts::AccountCode,
            transfers::{BatchContext, Poster, TransferCode as Code},
        },
        store,
    };
    let mut book = book().await;
    let customer = new_id();
    let line = book.open_line(&customer, 1_000_000).await;
    let drawdown = book.drawdown(&customer, &line, 300_000);
    let loan_id: uuid::Uuid = drawdown.loan_id.parse().expect("uuid");
    let customer_id: uuid::Uuid = customer.parse().expect("uuid");
    book.disburse(drawdown).await.expect("booked");

    let pool = book.pool().await;
    let mut tx = pool.begin().await.expect("begin");
    let platform =
        store::book::ensure_platform_accounts(&mut tx, &[AccountCode::CreditLineControl], 0)
            .await
            .expect("platform accounts");
    sqlx::query("SET LOCAL plan_cache_mode = force_generic_plan")
        .execute(&mut *tx)
        .await
        .expect("generic plans");
    let seq_scans = async |tx: &mut sqlx::PgConnection, table: &str| -> i64 {
        sqlx::query_scalar(
            "SELECT coalesce(sum(seq_scan), 0)::int8 FROM pg_stat_xact_user_tables \
             WHERE relname = $1",
        )
        .bind(table)
        .fetch_one(tx)
        .await
        .expect("scan count")
    };
    let installments_before = seq_scans(&mut tx, "installments").await;
    let installments = store::book::load_installments(&mut tx, loan_id)
        .await
        .expect("instalments");
    assert_eq!(installments.len(), 10);
    let by_loan = store::book::load_installments_of(&mut tx, &[loan_id])
        .await
        .expect("a page's instalments");
    assert_eq!(by_loan.get(&loan_id), Some(&installments));
    assert_eq!(
        seq_scans(&mut tx, "installments").await,
        installments_before,
        "an instalment read scanned the table"
    );

    // A limit increase on the customer's line (rolled back with the transaction): its
    // lock, balance read and balance update must find the rows by key.
    let line_account = store::book::lock_line(&mut tx, customer_id)
        .await
        .expect("line")
        .expect("the line")
        .account_id;
    let items = chain(
        &[Posting {
            code: Code::CreditLimitIncrease,
            debit_account_id: platform[0],
            credit_account_id: line_account,
            amount_minor: 1,
            customer_id,
            loan_id: None,
        }],
        "generic plan probe",
    );
    let accounts_before = seq_scans(&mut tx, "accounts").await;
    let plan = store::transfers::apply_transfers(
        &mut tx,
        &items,
        BatchContext {
            now: chrono::Utc::now(),
            business_date: chrono::Utc::now().date_naive(),
            poster: Poster::Service,
        },
    )
    .await
    .expect("posted");
    assert_eq!(plan.created.len(), 1, "{:?}", plan.results);
    assert_eq!(plan.changed_accounts.len(), 2);
    assert_eq!(
        seq_scans(&mut tx, "accounts").await,
        accounts_before,
        "locking, reading or updating the balances scanned accounts"
    );
    tx.rollback().await.expect("rollback");
}
