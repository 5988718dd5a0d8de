//! Four borrowers, one book, a 10-month loan each, driven through `RunEndOfDay` one
//! business date at a time to maturity: on time, paid off early in month 3, 45 days
//! late then cured, and written off at 180 days past due. Every figure is computed by
//! hand here from loan.proto's rules, not by `microloan_domain`.
//!
//! The loans: 3,000.00 CNY (300,000 fen), EQUAL_PRINCIPAL over 10 months at 0.0005 a
//! day, penalty 1.5 x = 0.00075 a day, on lines of 5,000.00 CNY (500,000 fen).
//! - Instalment principal: 300,000 / 10 = 30,000 fen each, no remainder.
//! - Daily interest: outstanding x 0.0005 = outstanding / 2,000, exact on every multiple
//!   of 30,000: 300,000 → 150 fen, 270,000 → 135, 240,000 → 120, …, 30,000 → 15.
//!   Before instalment k (paid on time) the outstanding is 300,000 − 30,000 (k − 1), so
//!   its daily interest is 150 − 15 (k − 1).
//! - Daily penalty: overdue principal x 0.00075 rounded half-even per loan:
//!   30,000 → 22.5 → 22, 60,000 → 45, 90,000 → 67.5 → 68, 120,000 → 90,
//!   150,000 → 112.5 → 112, 180,000 → 135, 210,000 → 157.5 → 158 (`PENALTY`).
//! - Due dates: the due day is the disbursement day of month (29-31 → 28) of the k-th
//!   calendar month after the disbursement month; period k = due_k − due_(k−1) days
//!   (period 1 from the disbursement date).
//! - Day count (docs/ledger.md): end of day of date d accrues day d on the principal
//!   left after that day's repayments, to the earliest unsettled instalment due on or
//!   after d; overdue means due before d. An instalment paid on its due date (before
//!   that night's run) therefore carries exactly period_k days of interest, and a loan
//!   paid on time costs Σ period_k x (150 − 15 (k − 1)), the schedule's own total.

mod common;

use common::{Book, cny, minor, naive, new_id, proto_date};

use chrono::{Datelike, Days, Months, NaiveDate};
use ledger::Ledger;
use microloan_platform::{
    auth::Role,
    testing::{self},
};
use microloan_proto::{
    common::v1::{
        DelinquencyBucket, InstallmentStatus, Loan, LoanPurpose, LoanStatus, RepaymentMethod,
        WriteOffReason,
    },
    ledger::v1::{
        CreditLineBalance, DisburseRequest, EndOfDaySummary, GetAccountRequest,
        GetBusinessDateRequest, GetLoanRequest, GetTrialBalanceRequest, OpenCreditLineRequest,
        QuotePayoffRequest, RepayRequest, RepayResponse, RunEndOfDayRequest,
        VerifyIntegrityRequest, get_account_request::Lookup,
        ledger_service_client::LedgerServiceClient,
    },
};

const LIMIT: i64 = 500_000;
const PRINCIPAL: i64 = 300_000;
const TERM: u32 = 10;
/// 300,000 / 10.
const INSTALMENT_PRINCIPAL: i64 = 30_000;
/// The daily penalty by the number of overdue instalments (30,000 fen each) x 0.00075,
/// rounded half-even: 22.5 → 22, 67.5 → 68, 112.5 → 112, 157.5 → 158.
const PENALTY: [i64; 8] = [0, 22, 45, 68, 90, 112, 135, 158];

/// Interest of one day on `outstanding` fen at 0.0005: outstanding / 2,000, exact here.
fn daily_interest(outstanding: i64) -> i64 {
    assert_eq!(outstanding % 2_000, 0, "not a round figure: {outstanding}");
    outstanding / 2_000
}

/// Due date of instalment k by the rule in loan.proto's header, written out again.
fn due_date(disbursed: NaiveDate, k: u32) -> NaiveDate {
    let due_day = disbursed.day().min(28);
    disbursed
        .with_day(1)
        .and_then(|first| first.checked_add_months(Months::new(k)))
        .and_then(|month| month.with_day(due_day))
        .expect("due date")
}

struct Borrower {
    customer_id: String,
    loan_id: String,
    line_account: String,
}

/// (outstanding principal, outstanding interest, outstanding penalty) of a loan.
fn balances(loan: &Loan) -> (i64, i64, i64) {
    (
        minor(&loan.outstanding_principal),
        minor(&loan.outstanding_interest),
        minor(&loan.outstanding_penalty),
    )
}

/// (limit, available, utilised) of a line.
fn line(line: &Option<CreditLineBalance>) -> (i64, i64, i64) {
    let line = line.as_ref().expect("line");
    (
        minor(&line.limit),
        minor(&line.available),
        minor(&line.utilised),
    )
}

impl Book {
    fn request<T>(&self, message: T) -> tonic::Request<T> {
        testing::with_token(message, &self.token)
    }

    /// A line of 5,000 CNY and a 3,000 CNY loan on it: available 200,000, utilised
    /// 300,000.
    async fn borrower(&mut self) -> Borrower {
        let customer_id = new_id();
        let credit_line_id = new_id();
        let opened = self
            .client
            .open_credit_line(self.request(OpenCreditLineRequest {
                request_id: new_id(),
                customer_id: customer_id.clone(),
                credit_line_id: credit_line_id.clone(),
                limit: cny(LIMIT),
            }))
            .await
            .expect("opened")
            .into_inner();
        let line_account = opened.credit_line.expect("line").account_id;
        let loan_id = new_id();
        let booked = self
            .client
            .disburse(self.request(DisburseRequest {
                request_id: new_id(),
                customer_id: customer_id.clone(),
                loan_id: loan_id.clone(),
                credit_line_id,
                principal: cny(PRINCIPAL),
                term_months: TERM as i32,
                repayment_method: RepaymentMethod::EqualPrincipal as i32,
                daily_rate: "0.0005".into(),
                penalty_daily_rate: String::new(),
                purpose: LoanPurpose::Consumption as i32,
            }))
            .await
            .expect("disbursed")
            .into_inner();
        assert_eq!(
            line(&booked.credit_line),
            (LIMIT, LIMIT - PRINCIPAL, PRINCIPAL)
        );
        Borrower {
            customer_id,
            loan_id,
            line_account,
        }
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

    async fn run(&mut self, date: NaiveDate) -> EndOfDaySummary {
        let request = self.request(RunEndOfDayRequest {
            request_id: new_id(),
            business_date: proto_date(date),
        });
        self.client
            .run_end_of_day(request)
            .await
            .expect("end of day")
            .into_inner()
            .summary
            .expect("summary")
    }

    async fn loan(&mut self, borrower: &Borrower) -> Loan {
        let request = self.request(GetLoanRequest {
            loan_id: borrower.loan_id.clone(),
        });
        self.client
            .get_loan(request)
            .await
            .expect("loan")
            .into_inner()
            .loan
            .expect("loan")
    }

    async fn repay(&mut self, borrower: &Borrower, amount: Option<i64>) -> RepayResponse {
        let request = self.request(RepayRequest {
            request_id: new_id(),
            customer_id: borrower.customer_id.clone(),
            loan_id: borrower.loan_id.clone(),
            amount: amount.and_then(cny),
            pay_off: amount.is_none(),
            external_reference: String::new(),
        });
        self.client
            .repay(request)
            .await
            .expect("repaid")
            .into_inner()
    }

    /// Pays instalment k on its due date: GetLoan asks for exactly the hand figure
    /// (`principal` + `interest`), and the repayment pays it, nothing prepaid.
    async fn pay_instalment(
        &mut self,
        borrower: &Borrower,
        k: u32,
        principal: i64,
        interest: i64,
    ) -> RepayResponse {
        let loan = self.loan(borrower).await;
        assert_eq!(loan.days_past_due, 0, "instalment {k}");
        assert_eq!(minor(&loan.overdue_amount), 0, "instalment {k}");
        assert_eq!(
            minor(&loan.next_due_amount),
            principal + interest,
            "instalment {k}"
        );
        let paid = self.repay(borrower, Some(principal + interest)).await;
        let repayment = paid.repayment.as_ref().expect("repayment");
        assert_eq!(
            (
                minor(&repayment.principal_paid),
                minor(&repayment.interest_paid),
                minor(&repayment.penalty_paid),
                minor(&repayment.prepaid_principal),
            ),
            (principal, interest, 0, 0),
            "instalment {k}"
        );
        let sequences: Vec<i32> = repayment.allocations.iter().map(|a| a.sequence).collect();
        assert_eq!(sequences, [k as i32]);
        let loan = paid.loan.as_ref().expect("loan");
        let item = &loan.schedule.as_ref().expect("schedule").installments[k as usize - 1];
        assert_eq!(
            item.status,
            InstallmentStatus::Paid as i32,
            "instalment {k}"
        );
        assert_eq!(minor(&item.interest), interest, "instalment {k}");
        assert_eq!(minor(&item.interest_paid), interest, "instalment {k}");
        paid
    }
}

/// Hand-kept state of one loan: what end of day will accrue tonight.
struct Track {
    active: bool,
    principal: i64,
    /// Number of instalments overdue (unpaid and due before the date being closed).
    overdue: usize,
    interest: i64,
    penalty: i64,
}

impl Track {
    fn new() -> Self {
        Self {
            active: true,
            principal: PRINCIPAL,
            overdue: 0,
            interest: 0,
            penalty: 0,
        }
    }

    /// End of day: tonight's interest and penalty, added to the totals.
    fn accrue(&mut self) -> (i64, i64) {
        if !self.active {
            return (0, 0);
        }
        let (interest, penalty) = (daily_interest(self.principal), PENALTY[self.overdue]);
        self.interest += interest;
        self.penalty += penalty;
        (interest, penalty)
    }
}

#[tokio::test]
async fn four_borrowers_over_ten_months_day_by_day() {
    let started = std::time::Instant::now();
    let app = testing::spawn::<Ledger>(&[]).await;
    let client = LedgerServiceClient::new(app.channel().await);
    let mut book = Book {
        app,
        client,
        token: testing::token(Role::Service, None),
    };
    let on_time = book.borrower().await;
    let early = book.borrower().await;
    let cured = book.borrower().await;
    let written_off = book.borrower().await;
    let mut track: Vec<Track> = (0..4).map(|_| Track::new()).collect();
    const ON_TIME: usize = 0;
    const EARLY: usize = 1;
    const CURED: usize = 2;
    const WRITTEN_OFF: usize = 3;

    // Dates: disbursed on the first business date; due dates and periods by hand.
    let disbursed = book.business_date().await;
    let due: Vec<NaiveDate> = (0..=TERM)
        .map(|k| {
            if k == 0 {
                disbursed
            } else {
                due_date(disbursed, k)
            }
        })
        .collect();
    let period = |k: usize| (due[k] - due[k - 1]).num_days();
    // Daily interest while instalment k is the current one and every earlier one was
    // paid on time: 150, 135, …, 15.
    let daily = |k: usize| 150 - 15 * (k as i64 - 1);
    let schedule = book.loan(&on_time).await.schedule.expect("schedule");
    for (k, item) in (1..).zip(&schedule.installments) {
        assert_eq!(naive(&item.due_date), due[k], "due date {k}");
        assert_eq!(i64::from(item.period_days), period(k), "period {k}");
        assert_eq!(minor(&item.principal), INSTALMENT_PRINCIPAL);
        assert_eq!(minor(&item.interest), period(k) * daily(k), "interest {k}");
    }
    let planned_interest: i64 = (1..=TERM as usize).map(|k| period(k) * daily(k)).sum();
    assert_eq!(minor(&schedule.total_interest), planned_interest);

    // The key dates: the early borrower pays off 10 days into month 3; the late one
    // pays what is overdue 45 days after the first due date (after the second due date,
    // before the third); the last one is written off by the run of due_1 + 180.
    let payoff_day = due[2] + Days::new(10);
    let cure_day = due[1] + Days::new(45);
    assert!(due[2] < cure_day && cure_day < due[3]);
    let write_off_day = due[1] + Days::new(180);
    assert!(due[6] < write_off_day && write_off_day < due[7]);

    let mut day = disbursed;
    let mut runs = 0;
    while day <= due[10] {
        // The day's repayments, before its end of day.
        if let Some(k) = (1..=TERM as usize).find(|&k| due[k] == day) {
            // On time: instalment k's principal and period_k days of interest.
            let paid = book
                .pay_instalment(
                    &on_time,
                    k as u32,
                    INSTALMENT_PRINCIPAL,
                    period(k) * daily(k),
                )
                .await;
            track[ON_TIME].principal -= INSTALMENT_PRINCIPAL;
            let paid_principal = INSTALMENT_PRINCIPAL * k as i64;
            assert_eq!(
                line(&paid.credit_line),
                (
                    LIMIT,
                    LIMIT - PRINCIPAL + paid_principal,
                    PRINCIPAL - paid_principal
                )
            );
            if k == TERM as usize {
                let loan = paid.loan.expect("loan");
                assert!(paid.repayment.expect("repayment").paid_off);
                assert_eq!(loan.status, LoanStatus::PaidOff as i32);
                assert_eq!(naive(&loan.paid_off_date), day);
                assert_eq!(balances(&loan), (0, 0, 0));
                assert_eq!(minor(&loan.interest_paid), planned_interest);
                assert_eq!(minor(&loan.penalty_paid), 0);
                track[ON_TIME].active = false;
            }
            // Paid off early: instalments 1 and 2 on time like the first borrower.
            if k <= 2 {
                book.pay_instalment(&early, k as u32, INSTALMENT_PRINCIPAL, period(k) * daily(k))
                    .await;
                track[EARLY].principal -= INSTALMENT_PRINCIPAL;
            }
            // Cured: from instalment 4 on as on time. Instalment 3 carries the days
            // due_2 + 1 ..= cure_day − 1 on 300,000 (150 a day, nothing was repaid
            // yet) and cure_day ..= due_3 − 1 on 240,000 (120 a day).
            if k == 3 {
                let interest = (cure_day - due[2]).num_days() - 1;
                let interest = interest * 150 + (due[3] - cure_day).num_days() * 120;
                book.pay_instalment(&cured, 3, INSTALMENT_PRINCIPAL, interest)
                    .await;
                track[CURED].principal -= INSTALMENT_PRINCIPAL;
            } else if k > 3 {
                let paid = book
                    .pay_instalment(&cured, k as u32, INSTALMENT_PRINCIPAL, period(k) * daily(k))
                    .await;
                track[CURED].principal -= INSTALMENT_PRINCIPAL;
                if k == TERM as usize {
                    let loan = paid.loan.expect("loan");
                    assert_eq!(loan.status, LoanStatus::PaidOff as i32);
                    assert_eq!(balances(&loan), (0, 0, 0));
                    assert_eq!(minor(&loan.interest_paid), track[CURED].interest);
                    assert_eq!(minor(&loan.penalty_paid), track[CURED].penalty);
                    assert_eq!(line(&paid.credit_line), (LIMIT, LIMIT, 0));
                    track[CURED].active = false;
                }
            }
        }
        if day == payoff_day {
            // 240,000 outstanding since due_2's repayment: the days due_2 ..= payoff_day
            // − 1, i.e. 10 days at 120 = 1,200 fen; one more day would add 120.
            let quote = book
                .client
                .quote_payoff(book.request(QuotePayoffRequest {
                    loan_id: early.loan_id.clone(),
                    payoff_date: None,
                }))
                .await
                .expect("quote")
                .into_inner()
                .quote
                .expect("quote");
            assert_eq!(
                (
                    minor(&quote.principal),
                    minor(&quote.interest),
                    minor(&quote.penalty),
                    minor(&quote.total),
                    minor(&quote.per_diem),
                ),
                (240_000, 1_200, 0, 241_200, 120)
            );
            assert_eq!(
                track[EARLY].interest - period(1) * 150 - period(2) * 135,
                1_200
            );
            let paid = book.repay(&early, None).await;
            let repayment = paid.repayment.expect("repayment");
            assert!(repayment.paid_off);
            assert_eq!(
                (
                    minor(&repayment.amount),
                    minor(&repayment.principal_paid),
                    minor(&repayment.interest_paid),
                    minor(&repayment.prepaid_principal),
                ),
                // Instalment 3's principal is current; 4..10 are prepaid.
                (241_200, 240_000, 1_200, 210_000)
            );
            let sequences: Vec<i32> = repayment.allocations.iter().map(|a| a.sequence).collect();
            assert_eq!(sequences, [3, 10, 9, 8, 7, 6, 5, 4]);
            let loan = paid.loan.expect("loan");
            assert_eq!(loan.status, LoanStatus::PaidOff as i32);
            assert_eq!(naive(&loan.paid_off_date), day);
            assert_eq!(balances(&loan), (0, 0, 0));
            // Interest only for the days used.
            assert_eq!(
                minor(&loan.interest_paid),
                period(1) * 150 + period(2) * 135 + 1_200
            );
            assert_eq!(line(&paid.credit_line), (LIMIT, LIMIT, 0));
            track[EARLY].active = false;
        }
        if day == cure_day {
            // 45 days past due, in 31-60. Interest: every day from the disbursement on
            // 300,000, 150 a day. Penalty: 22 a day on instalment 1's principal for
            // due_1 + 1 ..= due_2, then 45 a day on both instalments' for due_2 + 1 ..=
            // cure_day − 1.
            let loan = book.loan(&cured).await;
            let days = (cure_day - disbursed).num_days();
            let one_overdue = (due[2] - due[1]).num_days();
            let two_overdue = (cure_day - due[2]).num_days() - 1;
            let penalty = one_overdue * 22 + two_overdue * 45;
            assert_eq!(one_overdue + two_overdue, 44);
            assert_eq!(balances(&loan), (PRINCIPAL, days * 150, penalty));
            assert_eq!(loan.days_past_due, 45);
            assert_eq!(loan.delinquency_bucket, DelinquencyBucket::Dpd31To60 as i32);
            // Overdue: both principals; instalment 1's days disbursed ..= due_1 (period
            // 1 plus the due date itself, which was unpaid that night), instalment 2's
            // due_1 + 1 ..= due_2; all the penalty. Instalment 3's days stay current.
            let overdue_interest = (period(1) + 1) * 150 + period(2) * 150;
            let overdue = 2 * INSTALMENT_PRINCIPAL + overdue_interest + penalty;
            assert_eq!(minor(&loan.overdue_amount), overdue);
            assert_eq!(
                (track[CURED].interest, track[CURED].penalty),
                (days * 150, penalty)
            );
            let items = &loan.schedule.as_ref().expect("schedule").installments;
            assert_eq!(items[0].status, InstallmentStatus::Overdue as i32);
            assert_eq!(items[0].days_past_due, 45);
            assert_eq!(items[1].status, InstallmentStatus::Overdue as i32);
            assert_eq!(items[2].status, InstallmentStatus::Scheduled as i32);

            let paid = book.repay(&cured, Some(overdue)).await;
            let repayment = paid.repayment.expect("repayment");
            assert_eq!(
                (
                    minor(&repayment.penalty_paid),
                    minor(&repayment.interest_paid),
                    minor(&repayment.principal_paid),
                    minor(&repayment.prepaid_principal),
                ),
                (penalty, overdue_interest, 2 * INSTALMENT_PRINCIPAL, 0)
            );
            let sequences: Vec<i32> = repayment.allocations.iter().map(|a| a.sequence).collect();
            assert_eq!(sequences, [1, 2]);
            let loan = paid.loan.expect("loan");
            assert_eq!(
                balances(&loan),
                (
                    PRINCIPAL - 2 * INSTALMENT_PRINCIPAL,
                    days * 150 - overdue_interest,
                    0
                )
            );
            assert_eq!(loan.days_past_due, 0);
            assert_eq!(minor(&loan.overdue_amount), 0);
            assert_eq!(
                line(&paid.credit_line),
                (LIMIT, LIMIT - PRINCIPAL + 60_000, PRINCIPAL - 60_000)
            );
            track[CURED].principal -= 2 * INSTALMENT_PRINCIPAL;
            track[CURED].overdue = 0;
        }

        // Tonight: overdue means due before `day` and unpaid (the late borrowers only).
        let passed = (1..=TERM as usize).filter(|&k| due[k] < day).count();
        track[WRITTEN_OFF].overdue = passed;
        if day < cure_day {
            track[CURED].overdue = passed;
        }
        let (mut interest, mut penalty) = (0, 0);
        for loan in &mut track {
            let (i, p) = loan.accrue();
            interest += i;
            penalty += p;
        }
        let summary = book.run(day).await;
        runs += 1;
        assert_eq!(naive(&summary.business_date), day);
        assert_eq!(minor(&summary.interest_accrued), interest, "{day}");
        assert_eq!(minor(&summary.penalty_accrued), penalty, "{day}");
        let written = track[WRITTEN_OFF].active && day == write_off_day;
        assert_eq!(summary.loans_written_off, i64::from(written), "{day}");
        if written {
            // 300,000 + every day's 150 (the disbursement date through tonight) + the
            // penalty: 22, 45, 68, 90, 112, 135 a day as instalments 1..6 fell overdue.
            let days = (day - disbursed).num_days() + 1;
            let mut penalty = 0;
            for n in 1..=6 {
                let until = if n == 6 { day } else { due[n + 1] };
                penalty += (until - due[n]).num_days() * PENALTY[n];
            }
            assert_eq!(
                (track[WRITTEN_OFF].interest, track[WRITTEN_OFF].penalty),
                (days * 150, penalty)
            );
            let amount = PRINCIPAL + days * 150 + penalty;
            assert_eq!(minor(&summary.amount_written_off), amount);
            let loan = book.loan(&written_off).await;
            assert_eq!(loan.status, LoanStatus::WrittenOff as i32);
            assert_eq!(naive(&loan.written_off_date), day);
            assert_eq!(loan.write_off_reason, WriteOffReason::DaysPastDue as i32);
            assert_eq!(minor(&loan.written_off_amount), amount);
            assert_eq!(balances(&loan), (0, 0, 0));
            // The line is closed at the principal drawn elsewhere: none.
            let account = book
                .client
                .get_account(book.request(GetAccountRequest {
                    lookup: Some(Lookup::AccountId(written_off.line_account.clone())),
                }))
                .await
                .expect("line account")
                .into_inner()
                .account
                .expect("account");
            assert_eq!(
                minor(&account.credits_posted) - minor(&account.debits_posted),
                0
            );
            track[WRITTEN_OFF].active = false;
        }
        if day + Days::new(1) == write_off_day {
            // The eve: 179 days past due tonight, 180 on the new business date.
            let loan = book.loan(&written_off).await;
            let days = (day - disbursed).num_days() + 1;
            assert_eq!(
                balances(&loan),
                (PRINCIPAL, days * 150, track[WRITTEN_OFF].penalty)
            );
            assert_eq!(loan.status, LoanStatus::Active as i32);
            assert_eq!(loan.days_past_due, 180);
            assert_eq!(loan.delinquency_bucket, DelinquencyBucket::DpdOver90 as i32);
            // Overdue: all but instalments 7..10's principal and instalment 7's interest
            // so far (due_6 + 1 ..= day, 150 a day).
            let current_interest = (day - due[6]).num_days() * 150;
            assert_eq!(
                minor(&loan.overdue_amount),
                minor(&loan.total_outstanding) - 4 * INSTALMENT_PRINCIPAL - current_interest
            );
        }
        if day == cure_day {
            let loan = book.loan(&cured).await;
            assert_eq!(loan.days_past_due, 0);
            assert_eq!(loan.delinquency_bucket, DelinquencyBucket::Current as i32);
        }
        if day == due[1] + Days::new(1) {
            let loan = book.loan(&cured).await;
            assert_eq!(loan.delinquency_bucket, DelinquencyBucket::Dpd1To30 as i32);
            assert_eq!(loan.days_past_due, 2);
        }
        // The on-time borrower is never past due and never charged a penalty.
        let loan = book.loan(&on_time).await;
        assert_eq!(loan.days_past_due, 0, "{day}");
        assert_eq!(minor(&loan.outstanding_penalty), 0, "{day}");
        day = day + Days::new(1);
    }
    assert_eq!(book.business_date().await, due[10] + Days::new(1));

    // The cured loan: the interest of every day and the penalty of its 44 late days.
    let cured_interest = (cure_day - disbursed).num_days() * 150
        + (due[3] - cure_day).num_days() * 120
        + (4..=TERM as usize)
            .map(|k| period(k) * daily(k))
            .sum::<i64>();
    assert_eq!(track[CURED].interest, cured_interest);

    let pool = sqlx::PgPool::connect(&book.app.database_url)
        .await
        .expect("connect");
    let (limit, closed): (i64, bool) =
        sqlx::query_as("SELECT limit_minor, closed FROM credit_lines WHERE customer_id = $1::uuid")
            .bind(&written_off.customer_id)
            .fetch_one(&pool)
            .await
            .expect("line");
    assert_eq!((limit, closed), (0, true));
    pool.close().await;

    let report = book
        .client
        .verify_integrity(book.request(VerifyIntegrityRequest::default()))
        .await
        .expect("verify")
        .into_inner();
    assert!(report.ok, "{:?}", report.violations);
    let trial = book
        .client
        .get_trial_balance(book.request(GetTrialBalanceRequest {
            currency_code: "CNY".into(),
            as_of_date: None,
        }))
        .await
        .expect("trial balance")
        .into_inner();
    assert!(trial.balanced);
    assert_eq!(
        minor(&trial.total_debits_posted),
        minor(&trial.total_credits_posted)
    );
    eprintln!("{runs} end-of-day runs in {:?}", started.elapsed());
    book.app.stop().await.expect("clean stop");
}
