//! Customer journeys across the four running services, only through gRPC (issue #12,
//! journeys 1-4): three customers of a synthetic population are onboarded, their
//! signals ingested, their lines approved; each borrows 10-month equal-principal loans
//! and the book is run day by day through `RunEndOfDay`:
//! - the good payer pays every instalment on its due date → PAID_OFF, headroom back;
//! - the late payer misses the first instalment, is reminded on overdue day 1 with the
//!   credit-bureau warning, is charged penalty, and pays 45 days late → cured;
//! - the defaulter never pays → written off at 180 days past due.
//!
//! One timeline for all three keeps the suite's time bounded (one end of day per
//! business date serves every journey).

use std::{collections::BTreeMap, time::Duration};

use chrono::NaiveDate;
use e2e::{
    Stack, customer_token,
    journey::{Clients, application, cny, from_date, minor, onboard, safest},
    with_token,
};
use microloan_proto::{
    account::v1::{
        ApplyForCreditLineRequest, BorrowRequest, GetCreditLineRequest, QuoteLoanRequest,
        RepayRequest,
    },
    common::v1::{
        CreditLineStatus, DecisionOutcome, Loan, LoanPurpose, LoanStatus, RepaymentMethod,
    },
    ledger::v1::{
        GetLoanRequest, GetPortfolioReportRequest, GetTrialBalanceRequest, VerifyIntegrityRequest,
    },
    notification::v1::Notification,
    scoring::v1::{ReviewActionKind, RunPortfolioReviewRequest},
};

/// Principal of each loan (fen): 3,000 CNY, within any approved line's limit.
const PRINCIPAL_MINOR: i64 = 300_000;
const TERM_MONTHS: i32 = 10;
/// A bound on the business days the test runs: 10 monthly instalments and the
/// defaulter's 180 days past due fit well inside it.
const BUSINESS_DAYS_MAX: usize = 360;
const LATE_DAYS: i64 = 45;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Borrower {
    OnTime,
    Late,
    Defaulter,
}

#[tokio::test]
async fn three_borrowers_through_a_ten_month_book() {
    let stack = Stack::start().await.expect("the four services start");
    let mut clients = Clients::of(&stack);
    let onboarded = onboard(&mut clients, 2026, 400, |population| safest(population, 3))
        .await
        .expect("onboarding");
    let borrowers = [Borrower::OnTime, Borrower::Late, Borrower::Defaulter];
    let customer_ids: BTreeMap<Borrower, String> = borrowers
        .into_iter()
        .zip(&onboarded.customers)
        .map(|(borrower, person)| (borrower, person.customer_id.to_string()))
        .collect();

    // --- 1. apply: approved with a limit, a rate and an APR; the notice in English ----
    let mut limits = BTreeMap::new();
    for (borrower, person) in borrowers.into_iter().zip(&onboarded.customers) {
        let customer_id = &customer_ids[&borrower];
        let applied = clients
            .apply(ApplyForCreditLineRequest {
                // The good payer asks for a modest line, below what it could get: room
                // for the portfolio review to raise it.
                requested_limit: (borrower == Borrower::OnTime)
                    .then(|| cny(500_000))
                    .flatten(),
                device_id: person.devices.first().cloned().unwrap_or_default(),
                ..application(
                    &format!("apply-{customer_id}"),
                    customer_id,
                    cny(person.monthly_income_fen * 12),
                )
            })
            .await
            .expect("apply");
        assert_eq!(
            applied.outcome,
            DecisionOutcome::Approved as i32,
            "{borrower:?} (hidden PD {:.3}) approved: {applied:?}",
            person.default_probability
        );
        let line = applied.credit_line.expect("an opened line");
        assert_eq!(line.status, CreditLineStatus::Active as i32);
        assert!(minor(&line.limit) >= PRINCIPAL_MINOR, "{line:?}");
        assert_eq!(minor(&line.available), minor(&line.limit));
        assert!(
            !line.daily_rate.is_empty() && !line.apr.is_empty(),
            "{line:?}"
        );
        limits.insert(borrower, minor(&line.limit));
    }
    let opened = wait_for_notice(&mut clients, &customer_ids[&Borrower::OnTime], |notice| {
        notice.template_key == "CREDIT_LINE_OPENED"
    })
    .await;
    assert_eq!(opened.locale, "en");
    assert!(
        opened.body.contains("credit line") || opened.title.contains("credit line"),
        "an English notice: {opened:?}"
    );

    // --- 2. quote and borrow: the quote is what is booked --------------------------------
    let mut loans: BTreeMap<Borrower, Loan> = BTreeMap::new();
    for borrower in borrowers {
        let customer_id = &customer_ids[&borrower];
        let token = customer_token(customer_id);
        let quote = clients
            .account
            .quote_loan(with_token(
                QuoteLoanRequest {
                    customer_id: customer_id.clone(),
                    principal: cny(PRINCIPAL_MINOR),
                    term_months: TERM_MONTHS,
                    repayment_method: RepaymentMethod::EqualPrincipal as i32,
                    ..Default::default()
                },
                &token,
            ))
            .await
            .expect("quote")
            .into_inner()
            .quote
            .expect("a quote");
        let borrowed = clients
            .account
            .borrow(with_token(
                BorrowRequest {
                    request_id: format!("borrow-{customer_id}"),
                    customer_id: customer_id.clone(),
                    principal: cny(PRINCIPAL_MINOR),
                    term_months: TERM_MONTHS,
                    repayment_method: RepaymentMethod::EqualPrincipal as i32,
                    quote_id: quote.quote_id.clone(),
                    purpose: LoanPurpose::Consumption as i32,
                    ..Default::default()
                },
                &token,
            ))
            .await
            .expect("borrow")
            .into_inner();
        let loan = borrowed.loan.expect("the loan");
        assert_eq!(loan.apr, quote.apr, "the quoted APR is booked");
        let booked = loan.schedule.as_ref().expect("a schedule");
        let quoted = quote.schedule.as_ref().expect("a quoted schedule");
        assert_eq!(booked.installments.len(), TERM_MONTHS as usize);
        for (booked, quoted) in booked.installments.iter().zip(&quoted.installments) {
            assert_eq!(
                (
                    booked.due_date,
                    minor(&booked.principal),
                    minor(&booked.interest)
                ),
                (
                    quoted.due_date,
                    minor(&quoted.principal),
                    minor(&quoted.interest)
                ),
                "instalment {} as quoted",
                booked.sequence
            );
        }
        let line = borrowed.credit_line.expect("the line after borrowing");
        assert_eq!(
            minor(&line.available),
            limits[&borrower] - PRINCIPAL_MINOR,
            "headroom taken"
        );
        loans.insert(borrower, loan);
    }

    // --- 3. the book, day by day ---------------------------------------------------------
    let due_dates: Vec<NaiveDate> = loans[&Borrower::OnTime]
        .schedule
        .as_ref()
        .expect("schedule")
        .installments
        .iter()
        .map(|installment| from_date(installment.due_date.as_ref()).expect("a due date"))
        .collect();
    let first_due = due_dates[0];
    let cure_date = first_due + chrono::Duration::days(LATE_DAYS);
    let mut date = clients.business_date().await.expect("business date");
    let mut seen_frozen = false;
    let mut seen_penalty = false;
    let mut cured = false;
    let review_date = due_dates[3];
    let mut raised = None;
    for _ in 0..BUSINESS_DAYS_MAX {
        // After three instalments paid on time, the portfolio review raises the good
        // payer's limit (and says so).
        if date == review_date {
            raised = Some(review(&mut clients, &customer_ids[&Borrower::OnTime], date).await);
        }
        // Payments are made during the day, before it closes.
        for borrower in [Borrower::OnTime, Borrower::Late] {
            let loan_id = loans[&borrower].loan_id.clone();
            let loan = get_loan(&mut clients, &loan_id).await;
            if loan.status != LoanStatus::Active as i32 {
                continue;
            }
            let pays_today = match borrower {
                Borrower::OnTime => due_dates.contains(&date),
                Borrower::Late => {
                    date == cure_date || (date > cure_date && due_dates.contains(&date))
                }
                Borrower::Defaulter => false,
            };
            if !pays_today {
                continue;
            }
            // What is owed today: everything overdue plus the instalment due today.
            let owed: i64 = loan
                .schedule
                .as_ref()
                .expect("schedule")
                .installments
                .iter()
                .filter(|installment| {
                    from_date(installment.due_date.as_ref()).expect("due date") <= date
                })
                .map(|installment| minor(&installment.amount_outstanding))
                .sum();
            if owed == 0 {
                continue;
            }
            let customer_id = &customer_ids[&borrower];
            let repaid = clients
                .account
                .repay(with_token(
                    RepayRequest {
                        request_id: format!("repay-{loan_id}-{date}"),
                        customer_id: customer_id.clone(),
                        loan_id: loan_id.clone(),
                        amount: cny(owed),
                        ..Default::default()
                    },
                    &customer_token(customer_id),
                ))
                .await
                .unwrap_or_else(|status| panic!("{borrower:?} repays {owed} on {date}: {status:?}"))
                .into_inner();
            let after = repaid.loan.expect("the loan after repaying");
            assert_eq!(
                minor(&after.overdue_amount),
                0,
                "{borrower:?} is current on {date}"
            );
            if borrower == Borrower::Late && date == cure_date {
                cured = true;
            }
        }
        date = clients.end_of_day(date).await.expect("end of day");

        // The late payer, overdue: frozen, penalty charged (checked as it happens).
        let late = get_loan(&mut clients, &loans[&Borrower::Late].loan_id).await;
        if !cured && late.days_past_due > 0 {
            seen_penalty |= minor(&late.outstanding_penalty) > 0;
            let line = credit_line(&mut clients, &customer_ids[&Borrower::Late]).await;
            seen_frozen |= line.status == CreditLineStatus::Frozen as i32;
        }
        let statuses = [
            get_loan(&mut clients, &loans[&Borrower::OnTime].loan_id)
                .await
                .status,
            late.status,
            get_loan(&mut clients, &loans[&Borrower::Defaulter].loan_id)
                .await
                .status,
        ];
        if statuses
            == [
                LoanStatus::PaidOff as i32,
                LoanStatus::PaidOff as i32,
                LoanStatus::WrittenOff as i32,
            ]
        {
            break;
        }
    }

    // --- the good payer: paid off, headroom restored, cache = ledger, notices once ------
    let on_time_id = &customer_ids[&Borrower::OnTime];
    let on_time = get_loan(&mut clients, &loans[&Borrower::OnTime].loan_id).await;
    assert_eq!(on_time.status, LoanStatus::PaidOff as i32, "{on_time:?}");
    assert_eq!(minor(&on_time.total_outstanding), 0);
    assert_eq!(
        minor(&on_time.outstanding_penalty),
        0,
        "never late, never charged"
    );
    let (old_limit, new_limit) = raised.expect("the review ran");
    assert_eq!(old_limit, limits[&Borrower::OnTime]);
    assert!(
        new_limit > old_limit,
        "the good payer's limit was raised: {old_limit} → {new_limit}"
    );
    let line = credit_line(&mut clients, on_time_id).await;
    assert_eq!(minor(&line.limit), new_limit);
    assert_eq!(minor(&line.available), new_limit, "headroom restored");
    assert_eq!(minor(&line.utilised), 0);

    let notices = settled_notices(&mut clients, on_time_id, |notices| {
        count(notices, "LOAN_PAID_OFF") == 1
    })
    .await;
    assert_eq!(count(&notices, "LOAN_DISBURSED"), 1, "{}", keys(&notices));
    assert_eq!(
        count(&notices, "REPAYMENT_RECEIVED"),
        TERM_MONTHS as usize,
        "{}",
        keys(&notices)
    );
    assert_eq!(count(&notices, "LOAN_PAID_OFF"), 1);
    assert_eq!(
        count(&notices, "CREDIT_LINE_CHANGED"),
        1,
        "the raise is notified: {}",
        keys(&notices)
    );
    assert_eq!(count(&notices, "INSTALLMENT_OVERDUE"), 0, "never overdue");
    let due_soon = count(&notices, "INSTALLMENT_DUE_SOON");
    assert!(
        (TERM_MONTHS as usize..=2 * TERM_MONTHS as usize).contains(&due_soon),
        "a reminder 3 days before (and on) each due date: {due_soon}"
    );
    let mut events: Vec<&str> = notices
        .iter()
        .map(|notice| notice.event_id.as_str())
        .collect();
    events.sort_unstable();
    let before = events.len();
    events.dedup();
    assert_eq!(events.len(), before, "one in-app notice per event");

    // --- the late payer: reminded with the bureau warning, frozen, charged, cured -----
    let late_id = &customer_ids[&Borrower::Late];
    assert!(cured, "the late payer paid on {cure_date}");
    assert!(seen_penalty, "penalty was charged while overdue");
    assert!(seen_frozen, "the line was frozen while overdue");
    let late_line = credit_line(&mut clients, late_id).await;
    assert_eq!(
        late_line.status,
        CreditLineStatus::Active as i32,
        "cured → unfrozen: {late_line:?}"
    );
    let overdue = wait_for_notice(&mut clients, late_id, |notice| {
        notice.template_key == "INSTALLMENT_OVERDUE"
    })
    .await;
    assert!(
        overdue.body.to_lowercase().contains("credit bureau"),
        "day 1 warns of the credit bureau: {overdue:?}"
    );

    // --- the defaulter: written off at 180 days; the portfolio shows it ----------------
    let defaulted = get_loan(&mut clients, &loans[&Borrower::Defaulter].loan_id).await;
    assert_eq!(
        defaulted.status,
        LoanStatus::WrittenOff as i32,
        "{defaulted:?}"
    );
    let written_off = from_date(defaulted.written_off_date.as_ref()).expect("a write-off date");
    assert_eq!(
        written_off,
        first_due + chrono::Duration::days(180),
        "at 180 DPD"
    );
    let report = clients
        .ledger
        .get_portfolio_report(with_token(
            GetPortfolioReportRequest::default(),
            &clients.operator,
        ))
        .await
        .expect("portfolio")
        .into_inner()
        .report
        .expect("a report");
    assert_eq!(report.loans_written_off, 1, "{report:?}");
    assert_eq!(report.loans_paid_off, 2, "{report:?}");
    assert_eq!(minor(&report.cumulative_disbursed), 3 * PRINCIPAL_MINOR);
    assert!(minor(&report.cumulative_written_off) > 0);

    // --- the books ---------------------------------------------------------------------
    let integrity = clients
        .ledger
        .verify_integrity(with_token(
            VerifyIntegrityRequest::default(),
            &clients.operator,
        ))
        .await
        .expect("integrity")
        .into_inner();
    assert!(integrity.ok, "{integrity:?}");
    let trial = clients
        .ledger
        .get_trial_balance(with_token(
            GetTrialBalanceRequest::default(),
            &clients.operator,
        ))
        .await
        .expect("trial balance")
        .into_inner();
    assert!(trial.balanced, "{trial:?}");

    stack.stop().await.expect("a clean stop");
}

/// RunPortfolioReview for one customer: (limit before, limit after) of its LIMIT_RAISED.
async fn review(clients: &mut Clients, customer_id: &str, date: NaiveDate) -> (i64, i64) {
    let report = clients
        .scoring
        .run_portfolio_review(with_token(
            RunPortfolioReviewRequest {
                request_id: format!("review-{date}"),
                customer_ids: vec![customer_id.to_owned()],
                ..Default::default()
            },
            &clients.operator,
        ))
        .await
        .expect("portfolio review")
        .into_inner();
    assert_eq!(report.limits_raised, 1, "{report:?}");
    let action = report
        .actions
        .iter()
        .find(|action| action.kind == ReviewActionKind::LimitRaised as i32)
        .unwrap_or_else(|| panic!("a LIMIT_RAISED action: {report:?}"));
    assert!(action.applied, "{action:?}");
    (minor(&action.previous_limit), minor(&action.new_limit))
}

async fn get_loan(clients: &mut Clients, loan_id: &str) -> Loan {
    clients
        .ledger
        .get_loan(with_token(
            GetLoanRequest {
                loan_id: loan_id.to_owned(),
            },
            &clients.operator,
        ))
        .await
        .expect("get loan")
        .into_inner()
        .loan
        .expect("a loan")
}

async fn credit_line(
    clients: &mut Clients,
    customer_id: &str,
) -> microloan_proto::account::v1::CreditLine {
    clients
        .account
        .get_credit_line(with_token(
            GetCreditLineRequest {
                customer_id: customer_id.to_owned(),
            },
            &customer_token(customer_id),
        ))
        .await
        .expect("credit line")
        .into_inner()
        .credit_line
        .expect("a line")
}

fn count(notices: &[Notification], template_key: &str) -> usize {
    notices
        .iter()
        .filter(|notice| notice.template_key == template_key)
        .count()
}

fn keys(notices: &[Notification]) -> String {
    notices
        .iter()
        .map(|notice| notice.template_key.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Notices arrive through the bus: polls (bounded) until `wanted` holds.
async fn wait_for_notice(
    clients: &mut Clients,
    customer_id: &str,
    wanted: impl Fn(&Notification) -> bool,
) -> Notification {
    for _ in 0..300 {
        let notices = clients.in_app_notices(customer_id).await.expect("notices");
        if let Some(notice) = notices.into_iter().find(|notice| wanted(notice)) {
            return notice;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the notice did not arrive within 30 s");
}

/// All notices once `done` holds and one more poll shows nothing new (no late duplicates).
async fn settled_notices(
    clients: &mut Clients,
    customer_id: &str,
    done: impl Fn(&[Notification]) -> bool,
) -> Vec<Notification> {
    for _ in 0..300 {
        let notices = clients.in_app_notices(customer_id).await.expect("notices");
        if done(&notices) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let again = clients.in_app_notices(customer_id).await.expect("notices");
            assert_eq!(
                again.len(),
                notices.len(),
                "no notice arrived late or twice"
            );
            return again;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the notices did not settle within 30 s");
}
