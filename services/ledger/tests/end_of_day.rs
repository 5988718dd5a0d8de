//! End of day through gRPC against real Postgres: a loan driven day by day past its
//! first due date with every figure computed by hand, replays of closed dates, the
//! refusals, end of day racing postings and a second run, and the SQL helpers checked
//! against the domain's own rules.

mod common;

use common::{Book, book, cny, minor, naive, new_id, proto_date};

use chrono::{Days, NaiveDate};
use microloan_platform::testing::{self};
use microloan_proto::{
    common::v1::{
        DelinquencyBucket, InstallmentStatus, LoanPurpose, LoanStatus, RepaymentMethod,
        WriteOffReason,
    },
    ledger::v1::{
        ChangeCreditLimitRequest, DisburseRequest, DisburseResponse, EndOfDaySummary,
        GetBusinessDateRequest, GetLoanRequest, OpenCreditLineRequest, RunEndOfDayRequest,
        TransferCode, VerifyIntegrityRequest, WriteOffRequest,
    },
};
use rust_decimal::Decimal;
use sqlx::PgPool;
use tonic::{Code, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

fn error_info(status: &Status) -> (String, std::collections::HashMap<String, String>) {
    status
        .get_error_details()
        .error_info()
        .map(|info| {
            assert_eq!(info.domain, "microloan.ledger");
            (info.reason.clone(), info.metadata.clone())
        })
        .unwrap_or_default()
}

async fn count(pool: &PgPool, sql: &str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.expect(sql)
}

impl Book {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        testing::with_token(message, &self.token)
    }

    async fn open_line(&mut self, customer_id: &str) -> String {
        let credit_line_id = new_id();
        let request = self.request(OpenCreditLineRequest {
            request_id: new_id(),
            customer_id: customer_id.to_owned(),
            credit_line_id: credit_line_id.clone(),
            limit: cny(1_000_000),
        });
        self.client.open_credit_line(request).await.expect("opened");
        credit_line_id
    }

    fn drawdown(customer_id: &str, credit_line_id: &str, principal_minor: i64) -> DisburseRequest {
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

    async fn disburse(&mut self, request: DisburseRequest) -> DisburseResponse {
        let request = self.request(request);
        self.client
            .disburse(request)
            .await
            .expect("disbursed")
            .into_inner()
    }

    async fn business_date(&mut self) -> NaiveDate {
        let request = self.request(GetBusinessDateRequest {});
        let answer = self
            .client
            .get_business_date(request)
            .await
            .expect("business date")
            .into_inner();
        naive(&answer.business_date)
    }

    async fn run(&mut self, date: NaiveDate) -> Result<EndOfDaySummary, Status> {
        let request = self.request(RunEndOfDayRequest {
            request_id: new_id(),
            business_date: proto_date(date),
        });
        self.client
            .run_end_of_day(request)
            .await
            .map(|answer| answer.into_inner().summary.expect("summary"))
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

    async fn pool(&self) -> PgPool {
        PgPool::connect(&self.app.database_url)
            .await
            .expect("connect")
    }
}

fn bucket_count(summary: &EndOfDaySummary, bucket: DelinquencyBucket) -> i64 {
    summary
        .buckets
        .iter()
        .find(|b| b.bucket == bucket as i32)
        .map_or(-1, |b| b.loan_count)
}

fn reminder_count(summary: &EndOfDaySummary, offset_days: i32) -> i64 {
    summary
        .reminders
        .iter()
        .find(|r| r.offset_days == offset_days)
        .map_or(-1, |r| r.count)
}

/// 3,010 CNY at 0.05% a day: 301,000 x 0.0005 = 150.5 fen a day, rounded half-even to
/// 150 (half away from zero would say 151). The first instalment's principal is 30,100
/// fen; once it is overdue, 30,100 x 0.00075 = 22.575 fen of penalty a day, i.e. 23.
const PRINCIPAL: i64 = 301_000;
const DAILY_INTEREST: i64 = 150;
const FIRST_PRINCIPAL: i64 = 30_100;
const DAILY_PENALTY: i64 = 23;

#[tokio::test]
async fn a_loan_driven_day_by_day_past_its_first_due_date() {
    let mut book = book().await;
    let customer = new_id();
    let line = book.open_line(&customer).await;
    let drawdown = Book::drawdown(&customer, &line, PRINCIPAL);
    let loan_id = drawdown.loan_id.clone();
    let booked = book.disburse(drawdown).await;
    let schedule = booked.loan.expect("loan").schedule.expect("schedule");
    let first = &schedule.installments[0];
    assert_eq!(minor(&first.principal), FIRST_PRINCIPAL);
    let due = naive(&first.due_date);
    let opened = book.business_date().await;
    let last = due + Days::new(7);

    let mut day = opened;
    let mut runs = 0;
    while day <= last {
        let summary = book.run(day).await.expect("end of day");
        runs += 1;
        let overdue = day > due;
        assert_eq!(naive(&summary.business_date), day);
        assert_eq!(naive(&summary.next_business_date), day + Days::new(1));
        assert!(!summary.replayed);
        assert_eq!(summary.loans_processed, 1, "{day}");
        assert_eq!(minor(&summary.interest_accrued), DAILY_INTEREST, "{day}");
        assert_eq!(
            minor(&summary.penalty_accrued),
            if overdue { DAILY_PENALTY } else { 0 },
            "{day}"
        );
        assert_eq!(summary.installments_due, i64::from(day == due), "{day}");
        assert_eq!(
            summary.installments_newly_overdue,
            i64::from(day == due + Days::new(1)),
            "{day}"
        );
        assert_eq!(
            (
                bucket_count(&summary, DelinquencyBucket::Current),
                bucket_count(&summary, DelinquencyBucket::Dpd1To30)
            ),
            if overdue { (0, 1) } else { (1, 0) },
            "{day}"
        );
        let offset = (day - due).num_days() as i32;
        for scheduled in [-3, 0, 1, 7, 30, 60, 90, 120, 150] {
            assert_eq!(
                reminder_count(&summary, scheduled),
                i64::from(scheduled == offset),
                "{day} offset {scheduled}"
            );
        }
        assert_eq!(
            summary.events_emitted,
            i64::from([-3, 0, 1, 7].contains(&offset))
        );
        assert_eq!(summary.loans_written_off, 0);
        day = day + Days::new(1);
    }
    assert_eq!(book.business_date().await, last + Days::new(1));

    // The loan: every day's interest; the first instalment took the days up to and
    // including its due date, the second the 7 days after; penalty on the first only.
    let days_to_due = (due - opened).num_days() + 1;
    let loan = book
        .client
        .get_loan(book.request(GetLoanRequest {
            loan_id: loan_id.clone(),
        }))
        .await
        .expect("loan")
        .into_inner()
        .loan
        .expect("loan");
    assert_eq!(minor(&loan.outstanding_principal), PRINCIPAL);
    assert_eq!(minor(&loan.outstanding_interest), runs * DAILY_INTEREST);
    assert_eq!(minor(&loan.outstanding_penalty), 7 * DAILY_PENALTY);
    assert_eq!(loan.days_past_due, 8);
    assert_eq!(loan.delinquency_bucket, DelinquencyBucket::Dpd1To30 as i32);
    let items = loan.schedule.expect("schedule").installments;
    assert_eq!(items[0].status, InstallmentStatus::Overdue as i32);
    assert_eq!(minor(&items[0].interest), days_to_due * DAILY_INTEREST);
    assert_eq!(minor(&items[0].penalty_charged), 7 * DAILY_PENALTY);
    assert_eq!(
        minor(&loan.overdue_amount),
        FIRST_PRINCIPAL + days_to_due * DAILY_INTEREST + 7 * DAILY_PENALTY
    );
    let pool = book.pool().await;
    let second: i64 = sqlx::query_scalar(
        "SELECT interest_accrued FROM installments WHERE loan_id = $1::uuid AND sequence = 2",
    )
    .bind(&loan_id)
    .fetch_one(&pool)
    .await
    .expect("second");
    assert_eq!(second, 7 * DAILY_INTEREST);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM transfers WHERE code = 30").await,
        runs
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM transfers WHERE code = 31").await,
        7
    );

    // The outbox: due in 3 days, due today, overdue days 1 and 7, for this instalment.
    let events: Vec<(String, i64)> = sqlx::query_as(
        "SELECT event_type, count(*) FROM outbox GROUP BY event_type ORDER BY event_type",
    )
    .fetch_all(&pool)
    .await
    .expect("events");
    assert_eq!(
        events,
        [
            ("EVENT_TYPE_INSTALLMENT_DUE_SOON".to_owned(), 2),
            ("EVENT_TYPE_INSTALLMENT_OVERDUE".to_owned(), 2),
            ("EVENT_TYPE_LOAN_DISBURSED".to_owned(), 1),
        ]
    );

    // Replaying a closed date returns its summary and changes nothing.
    let transfers = count(&pool, "SELECT count(*) FROM transfers").await;
    let replay = book.run(opened).await.expect("replay");
    assert!(replay.replayed);
    assert_eq!(naive(&replay.business_date), opened);
    assert_eq!(minor(&replay.interest_accrued), DAILY_INTEREST);
    let due_day = book.run(due).await.expect("replay");
    assert!(due_day.replayed);
    assert_eq!(due_day.installments_due, 1);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM transfers").await,
        transfers
    );
    assert_eq!(count(&pool, "SELECT count(*) FROM outbox").await, 5);
    assert_eq!(book.business_date().await, last + Days::new(1));

    // A date after the current one, or before the first, was never closed.
    let current = last + Days::new(1);
    for wrong in [current + Days::new(1), opened - Days::new(1)] {
        let status = book.run(wrong).await.expect_err("mismatch");
        assert_eq!(status.code(), Code::FailedPrecondition);
        let (reason, metadata) = error_info(&status);
        assert_eq!(reason, "BUSINESS_DATE_MISMATCH");
        assert_eq!(metadata["business_date"], current.to_string());
    }
    let unset = book
        .client
        .run_end_of_day(book.request(RunEndOfDayRequest {
            request_id: new_id(),
            business_date: None,
        }))
        .await
        .expect_err("unset");
    assert_eq!(unset.code(), Code::InvalidArgument);
    assert_eq!(
        count(&pool, "SELECT count(*) FROM transfers").await,
        transfers
    );

    pool.close().await;
    book.verify().await;
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn end_of_day_waits_for_postings_and_a_second_run_is_refused() {
    let mut book = book().await;
    let customer = new_id();
    let line = book.open_line(&customer).await;
    book.disburse(Book::drawdown(&customer, &line, PRINCIPAL))
        .await;
    let today = book.business_date().await;
    let pool = book.pool().await;

    // A posting in flight holds the business date FOR SHARE: the run takes its lock and
    // waits for it.
    let mut posting = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM business_date FOR SHARE")
        .execute(&mut *posting)
        .await
        .expect("share");
    let mut first_client = book.client.clone();
    let first_request = book.request(RunEndOfDayRequest {
        request_id: new_id(),
        business_date: proto_date(today),
    });
    let first = tokio::spawn(async move { first_client.run_end_of_day(first_request).await });
    for attempt in 0.. {
        let waiting = count(
            &pool,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE%'",
        )
        .await;
        if waiting == 1 {
            break;
        }
        assert!(attempt < 500, "the run never waited for the posting");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // GetBusinessDate says so, and a second run meanwhile is refused at once.
    let running = book
        .client
        .get_business_date(book.request(GetBusinessDateRequest {}))
        .await
        .expect("business date")
        .into_inner();
    assert!(running.end_of_day_running);
    let second = book.run(today).await.expect_err("running");
    assert_eq!(second.code(), Code::Aborted);
    assert_eq!(error_info(&second).0, "END_OF_DAY_RUNNING");

    // A drawdown racing the run either books before it (and accrues tonight) or after
    // it (on the next date), or is told to retry; never half of either.
    let mut racing_client = book.client.clone();
    let racing_request = book.request(Book::drawdown(&customer, &line, 100_000));
    let racing_loan = racing_request.get_ref().loan_id.clone();
    let racing = tokio::spawn(async move { racing_client.disburse(racing_request).await });
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    posting.commit().await.expect("release");

    let summary = first
        .await
        .expect("join")
        .expect("end of day")
        .into_inner()
        .summary
        .expect("summary");
    assert!(!summary.replayed);
    let booked_on: Option<NaiveDate> = match racing.await.expect("join") {
        Ok(answer) => Some(naive(
            &answer.into_inner().loan.expect("loan").disbursement_date,
        )),
        Err(status) => {
            assert_eq!(status.code(), Code::Aborted);
            assert_eq!(error_info(&status).0, "END_OF_DAY_RUNNING");
            None
        }
    };
    let expected_loans = 1 + i64::from(booked_on == Some(today));
    assert!(booked_on.is_none_or(|date| date == today || date == today + Days::new(1)));
    assert_eq!(summary.loans_processed, expected_loans, "{booked_on:?}");
    let racing_accruals: i64 =
        sqlx::query_scalar("SELECT count(*) FROM transfers WHERE code = 30 AND loan_id = $1::uuid")
            .bind(&racing_loan)
            .fetch_one(&pool)
            .await
            .expect("accruals");
    assert_eq!(racing_accruals, i64::from(booked_on == Some(today)));

    // Retried after it finished, the second run is a replay.
    let again = book.run(today).await.expect("replay");
    assert!(again.replayed);
    assert_eq!(again.loans_processed, expected_loans);
    assert_eq!(book.business_date().await, today + Days::new(1));
    let after = book
        .client
        .get_business_date(book.request(GetBusinessDateRequest {}))
        .await
        .expect("business date")
        .into_inner();
    assert!(!after.end_of_day_running && after.last_end_of_day_time.is_some());

    // While a run holds the business date, a posting is refused at once, booking
    // nothing.
    let loans = count(&pool, "SELECT count(*) FROM loans").await;
    let mut run = pool.begin().await.expect("begin");
    sqlx::query("SELECT 1 FROM business_date FOR UPDATE")
        .execute(&mut *run)
        .await
        .expect("lock");
    let refused = book
        .client
        .disburse(book.request(Book::drawdown(&customer, &line, 10_000)))
        .await
        .expect_err("end of day running");
    assert_eq!(refused.code(), Code::Aborted);
    assert_eq!(error_info(&refused).0, "END_OF_DAY_RUNNING");
    run.rollback().await.expect("release");
    assert_eq!(count(&pool, "SELECT count(*) FROM loans").await, loans);
    pool.close().await;
    book.verify().await;
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_sql_helpers_agree_with_the_domain_rules() {
    let book = book().await;
    let pool = book.pool().await;
    // Half-even ties both ways, then a spread of ordinary values.
    let mut cases: Vec<(i64, &str)> = vec![
        (301_000, "0.0005"),
        (303_000, "0.0005"),
        (1, "0.5"),
        (3, "0.5"),
        (5, "0.5"),
        (0, "0.0005"),
        (30_100, "0.00075"),
        (4_000_000, "0.00075"),
    ];
    let rates = ["0.0002", "0.00035", "0.0005", "0.00075", "0.0003"];
    for principal in (1..200).map(|k| k * 997) {
        cases.push((principal, rates[principal as usize % rates.len()]));
    }
    for (principal, rate) in cases {
        let decimal: Decimal = rate.parse().expect("rate");
        let expected = microloan_domain::loan::interest_minor(principal, decimal, 1).expect("fits");
        let rounded: i64 =
            sqlx::query_scalar("SELECT ledger_round_half_even($1::numeric * $2::numeric)")
                .bind(principal)
                .bind(decimal)
                .fetch_one(&pool)
                .await
                .expect("round");
        assert_eq!(rounded, expected, "{principal} x {rate}");
    }
    for _ in 0..200 {
        let customer = Uuid::new_v4();
        let sub: i32 = sqlx::query_scalar("SELECT ledger_sub_account($1)")
            .bind(customer)
            .fetch_one(&pool)
            .await
            .expect("sub-account");
        assert_eq!(sub, ledger::book::sub_account_for(customer), "{customer}");
    }
    pool.close().await;
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_write_off_closes_the_line_and_end_of_day_writes_off_at_180_days() {
    let mut book = book().await;
    let customer = new_id();
    let line = book.open_line(&customer).await;
    let fraud = Book::drawdown(&customer, &line, PRINCIPAL);
    let fraud_loan = fraud.loan_id.clone();
    book.disburse(fraud).await;
    book.disburse(Book::drawdown(&customer, &line, 100_000))
        .await;
    let today = book.business_date().await;
    let first = book.run(today).await.expect("end of day");
    assert_eq!(minor(&first.interest_accrued), DAILY_INTEREST + 50);

    let write_off = |loan_id: &str, reason: WriteOffReason, note: &str| WriteOffRequest {
        request_id: new_id(),
        loan_id: loan_id.to_owned(),
        reason: reason as i32,
        note: note.to_owned(),
    };
    for (request, field) in [
        (
            write_off(&fraud_loan, WriteOffReason::DaysPastDue, "x"),
            "reason",
        ),
        (
            write_off(&fraud_loan, WriteOffReason::Unspecified, "x"),
            "reason",
        ),
        (write_off(&fraud_loan, WriteOffReason::Fraud, ""), "note"),
        (write_off("nope", WriteOffReason::Fraud, "x"), "loan_id"),
    ] {
        let status = book
            .client
            .write_off(book.request(request))
            .await
            .expect_err("invalid");
        assert_eq!(status.code(), Code::InvalidArgument);
        let fields: Vec<String> = status
            .get_error_details()
            .bad_request()
            .map(|bad| {
                bad.field_violations
                    .iter()
                    .map(|v| v.field.clone())
                    .collect()
            })
            .unwrap_or_default();
        assert_eq!(fields, [field]);
    }
    let unknown = book
        .client
        .write_off(book.request(write_off(&new_id(), WriteOffReason::Fraud, "x")))
        .await
        .expect_err("unknown");
    assert_eq!(unknown.code(), Code::NotFound);

    // Written off: everything owed moves to write_off_expense; the line keeps only the
    // other loan's principal as its limit, with no headroom.
    let done = book
        .client
        .write_off(book.request(write_off(
            &fraud_loan,
            WriteOffReason::Fraud,
            "identity theft confirmed",
        )))
        .await
        .expect("written off")
        .into_inner();
    assert_eq!(
        (
            minor(&done.principal),
            minor(&done.interest),
            minor(&done.penalty)
        ),
        (PRINCIPAL, DAILY_INTEREST, 0)
    );
    let posted: Vec<(i32, i64)> = done
        .transfers
        .iter()
        .map(|t| (t.code, minor(&t.amount)))
        .collect();
    assert_eq!(
        posted,
        [
            (TransferCode::WriteOffPrincipal as i32, PRINCIPAL),
            (TransferCode::WriteOffInterest as i32, DAILY_INTEREST),
            (TransferCode::HeadroomRestore as i32, PRINCIPAL),
            // The headroom left (1,000,000 - 401,000) plus the principal restored.
            (
                TransferCode::CreditLimitDecrease as i32,
                599_000 + PRINCIPAL
            ),
        ]
    );
    let loan = done.loan.expect("loan");
    assert_eq!(loan.status, LoanStatus::WrittenOff as i32);
    assert_eq!(loan.write_off_reason, WriteOffReason::Fraud as i32);
    assert_eq!(minor(&loan.written_off_amount), PRINCIPAL + DAILY_INTEREST);
    let again = book
        .client
        .write_off(book.request(write_off(&fraud_loan, WriteOffReason::Fraud, "again")))
        .await
        .expect_err("not active");
    assert_eq!(error_info(&again).0, "LOAN_NOT_ACTIVE");
    let closed = book
        .client
        .change_credit_limit(book.request(ChangeCreditLimitRequest {
            request_id: new_id(),
            customer_id: customer.clone(),
            new_limit: cny(500_000),
            clamp_to_utilisation: false,
        }))
        .await
        .expect_err("closed");
    assert_eq!(error_info(&closed).0, "CREDIT_LINE_NOT_OPEN");
    let pool = book.pool().await;
    let limit: i64 = sqlx::query_scalar(
        "SELECT limit_minor FROM credit_lines WHERE customer_id = $1::uuid AND closed",
    )
    .bind(&customer)
    .fetch_one(&pool)
    .await
    .expect("closed line");
    assert_eq!(limit, 100_000);

    // Another customer's first instalment 180 days overdue: tonight's accruals, then
    // the automatic write-off; the other loan keeps running.
    let late = new_id();
    let late_line = book.open_line(&late).await;
    let late_request = Book::drawdown(&late, &late_line, PRINCIPAL);
    let late_loan = late_request.loan_id.clone();
    book.disburse(late_request).await;
    let tonight = book.business_date().await;
    sqlx::query("UPDATE installments SET due_date = $2 WHERE loan_id = $1::uuid AND sequence = 1")
        .bind(&late_loan)
        .bind(tonight - Days::new(180))
        .execute(&pool)
        .await
        .expect("backdate");
    let summary = book.run(tonight).await.expect("end of day");
    assert_eq!(summary.loans_processed, 2);
    assert_eq!(minor(&summary.interest_accrued), DAILY_INTEREST + 50);
    assert_eq!(minor(&summary.penalty_accrued), DAILY_PENALTY);
    assert_eq!(summary.loans_written_off, 1);
    assert_eq!(
        minor(&summary.amount_written_off),
        PRINCIPAL + DAILY_INTEREST + DAILY_PENALTY
    );
    assert_eq!(summary.events_emitted, 1);
    assert_eq!(bucket_count(&summary, DelinquencyBucket::Current), 1);
    assert_eq!(bucket_count(&summary, DelinquencyBucket::DpdOver90), 0);
    let status: i16 = sqlx::query_scalar(
        "SELECT status FROM loans WHERE loan_id = $1::uuid AND write_off_reason = 1",
    )
    .bind(&late_loan)
    .fetch_one(&pool)
    .await
    .expect("written off");
    assert_eq!(status, LoanStatus::WrittenOff as i16);
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM outbox WHERE event_type = 'EVENT_TYPE_LOAN_WRITTEN_OFF'"
        )
        .await,
        2
    );
    pool.close().await;
    book.verify().await;
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_run_refreshes_the_book_statistics_after_it_commits() {
    let mut book = book().await;
    let customer = new_id();
    let line = book.open_line(&customer).await;
    book.disburse(Book::drawdown(&customer, &line, 100_000))
        .await;
    let pool = book.pool().await;
    let analyzed = "SELECT count(*) FROM pg_stat_user_tables \
         WHERE relname IN ('accounts', 'transfers', 'pending_transfers', 'credit_lines', \
                           'loans', 'installments', 'repayments') \
           AND last_analyze IS NOT NULL";
    let before = count(&pool, analyzed).await;
    let today = book.business_date().await;
    book.run(today).await.expect("end of day");
    // ANALYZE runs after the commit, in the background; the statistics collector
    // reports it a moment later.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let after = count(&pool, analyzed).await;
        if after == 7 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{after} of 7 book tables analyzed 10 s after end of day (before: {before})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(before < 7, "a fresh database has no manual ANALYZE yet");
    // Only stale tables are analyzed again (autovacuum's rule: 50 + 10% of the rows
    // modified since): now none, then `accounts` after 60 updates of its few rows.
    // pg_stat_force_next_flush makes this session's counts visible when it commits.
    assert_eq!(
        ledger::store::end_of_day::stale_book_tables(&pool)
            .await
            .expect("stale tables"),
        Vec::<String>::new()
    );
    let mut session = pool.acquire().await.expect("connection");
    for _ in 0..60 {
        sqlx::query("UPDATE accounts SET create_time = create_time WHERE id = (SELECT id FROM accounts ORDER BY id LIMIT 1)")
            .execute(&mut *session)
            .await
            .expect("update");
    }
    sqlx::query("SELECT pg_stat_force_next_flush()")
        .execute(&mut *session)
        .await
        .expect("flush");
    sqlx::query("SELECT 1")
        .execute(&mut *session)
        .await
        .expect("a transaction end");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stale = ledger::store::end_of_day::stale_book_tables(&pool)
            .await
            .expect("stale tables");
        if stale == ["accounts"] {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "stale: {stale:?}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(
        ledger::store::end_of_day::refresh_statistics(&pool)
            .await
            .expect("analyze"),
        ["accounts"]
    );
    book.app.stop().await.expect("clean stop");
}

/// An accrual transfer's id is the business date's day number since 2000-01-01 (4
/// bytes) followed by 12 bytes of md5('end-of-day/<loan>/<date>/<code>'): the same
/// loan, date and code always give the same id (a second posting is a primary-key
/// violation), and a later day's ids sort after an earlier day's, below every UUIDv7.
#[tokio::test]
async fn accrual_transfer_ids_are_deterministic_and_sort_by_business_date() {
    let mut book = book().await;
    let customer = new_id();
    let line = book.open_line(&customer).await;
    let loan = book
        .disburse(Book::drawdown(&customer, &line, PRINCIPAL))
        .await
        .loan
        .expect("loan");
    let loan_id = Uuid::parse_str(&loan.loan_id).expect("uuid");
    let first = book.business_date().await;
    let second = first.succ_opt().expect("a next day");
    book.run(first).await.expect("day 1");
    book.run(second).await.expect("day 2");
    let pool = book.pool().await;
    let accruals: Vec<(Uuid, NaiveDate)> = sqlx::query_as(
        "SELECT id, business_date FROM transfers WHERE loan_id = $1 AND code = $2 ORDER BY id",
    )
    .bind(loan_id)
    .bind(TransferCode::InterestAccrual as i32)
    .fetch_all(&pool)
    .await
    .expect("accruals");
    let dates: Vec<NaiveDate> = accruals.iter().map(|(_, date)| *date).collect();
    assert_eq!(dates, [first, second], "ids in business-date order");
    let epoch = NaiveDate::from_ymd_opt(2000, 1, 1).expect("epoch");
    for (id, date) in &accruals {
        let expected_tail: String = sqlx::query_scalar(
            "SELECT substr(md5(format('end-of-day/%s/%s/%s', $1::uuid, $2::date, $3::int4)), 9)",
        )
        .bind(loan_id)
        .bind(date)
        .bind(TransferCode::InterestAccrual as i32)
        .fetch_one(&pool)
        .await
        .expect("md5");
        let hex = id.simple().to_string();
        assert_eq!(
            hex,
            format!("{:08x}{expected_tail}", (*date - epoch).num_days()),
            "{date}"
        );
    }
    let other: Uuid = sqlx::query_scalar(
        "SELECT id FROM transfers WHERE loan_id = $1 AND code <> $2 ORDER BY id LIMIT 1",
    )
    .bind(loan_id)
    .bind(TransferCode::InterestAccrual as i32)
    .fetch_one(&pool)
    .await
    .expect("the disbursement's transfers");
    assert!(
        accruals.iter().all(|(id, _)| *id < other),
        "below UUIDv7 ids"
    );
    book.verify().await;
}
