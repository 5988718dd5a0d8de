//! proto ⇄ domain for the loan book: requests parsed once, rows and schedules shown as
//! `Loan`, `CreditLineBalance` and events.

use chrono::NaiveDate;
use microloan_domain::loan::RepaymentMethod;
use microloan_platform::idempotency::RequestKey;
use microloan_proto::{
    common::v1 as common,
    events::v1::{
        InstallmentDueSoon, InstallmentOverdue, LoanDisbursed, LoanPaidOff, LoanWrittenOff,
        RepaymentReceived, event::Payload,
    },
    ledger::v1 as proto,
};
use prost::Message;
use rust_decimal::Decimal;

use super::{LedgerApi, convert, decode};
use crate::{
    book::{
        self, Disbursement, DisbursementFields, UnpaidPrincipal,
        end_of_day::{CREDIT_BUREAU_WARNING_DAYS, EndOfDay},
        ops::{self, Disbursed, LimitChanged, LineOpened, Repaid, RepaymentOrder, WrittenOff},
        required_amount, required_id,
    },
    error::LedgerError,
    gl::{
        CURRENCY_CNY,
        requests::{self, PageToken},
    },
    store::{
        self,
        book::{InstallmentRow, LineBalanceRow, LoanRow},
        end_of_day::ReminderRow,
    },
};

fn cny(minor_units: i64) -> Option<common::Money> {
    convert::money(CURRENCY_CNY, minor_units)
}

fn rate_text(rate: Decimal) -> String {
    rate.normalize().to_string()
}

pub(super) fn line_balance(line: &LineBalanceRow) -> proto::CreditLineBalance {
    proto::CreditLineBalance {
        customer_id: line.customer_id.to_string(),
        credit_line_id: line.credit_line_id.to_string(),
        account_id: line.account_id.to_string(),
        limit: cny(line.limit_minor),
        available: cny(line.available_minor),
        utilised: cny(line.utilised_minor),
        update_time: convert::timestamp(line.update_time),
    }
}

fn loan_accounts(loan: &LoanRow) -> proto::LoanAccounts {
    proto::LoanAccounts {
        principal_receivable_account_id: loan.principal_account_id.to_string(),
        interest_receivable_account_id: loan.interest_account_id.to_string(),
        penalty_receivable_account_id: loan.penalty_account_id.to_string(),
    }
}

/// Interest shown on a booked instalment: the projection until its period ends, the
/// accrued amount after (loan.proto `Installment.interest`).
fn interest_shown(item: &InstallmentRow, business_date: NaiveDate) -> i64 {
    if item.due_date <= business_date {
        item.interest_accrued
    } else {
        item.interest_minor.max(item.interest_accrued)
    }
}

fn outstanding(item: &InstallmentRow, business_date: NaiveDate) -> i64 {
    if item.settled_date.is_some() {
        return 0;
    }
    (item.principal_minor - item.principal_paid)
        + (interest_shown(item, business_date) - item.interest_paid)
        + (item.penalty_charged - item.penalty_paid)
}

fn installment_status(
    item: &InstallmentRow,
    loan_status: common::LoanStatus,
    business_date: NaiveDate,
) -> common::InstallmentStatus {
    use common::InstallmentStatus as S;
    match (item.settled_date, loan_status) {
        (Some(_), _) => S::Paid,
        (None, common::LoanStatus::WrittenOff) => S::WrittenOff,
        (None, _) if item.due_date > business_date => S::Scheduled,
        (None, _) if item.due_date == business_date => S::Due,
        (None, _) => S::Overdue,
    }
}

fn loan_status(status: i16) -> common::LoanStatus {
    common::LoanStatus::try_from(i32::from(status)).unwrap_or(common::LoanStatus::Unspecified)
}

fn bucket(days_past_due: i64) -> common::DelinquencyBucket {
    use common::DelinquencyBucket as B;
    match days_past_due {
        ..=0 => B::Current,
        1..=30 => B::Dpd1To30,
        31..=60 => B::Dpd31To60,
        61..=90 => B::Dpd61To90,
        _ => B::DpdOver90,
    }
}

/// A booked loan as the proto shows it, as of `business_date`.
pub(super) fn loan(
    loan: &LoanRow,
    installments: &[InstallmentRow],
    business_date: NaiveDate,
) -> common::Loan {
    let status = loan_status(loan.status);
    let open = status == common::LoanStatus::Active;
    let unpaid: Vec<&InstallmentRow> = installments
        .iter()
        .filter(|item| item.settled_date.is_none())
        .collect();
    let overdue: Vec<&&InstallmentRow> = unpaid
        .iter()
        .filter(|item| item.due_date < business_date)
        .collect();
    let days_past_due = overdue
        .first()
        .map_or(0, |item| (business_date - item.due_date).num_days());
    let next = unpaid.first().filter(|_| open);
    let principal_paid: i64 = installments.iter().map(|item| item.principal_paid).sum();
    let interest_paid: i64 = installments.iter().map(|item| item.interest_paid).sum();
    let penalty_paid: i64 = installments.iter().map(|item| item.penalty_paid).sum();
    let total_interest: i64 = installments.iter().map(|item| item.interest_minor).sum();
    let schedule_items = installments
        .iter()
        .map(|item| common::Installment {
            sequence: item.sequence,
            due_date: convert::date(item.due_date),
            principal: cny(item.principal_minor),
            interest: cny(interest_shown(item, business_date)),
            total: cny(item.principal_minor + interest_shown(item, business_date)),
            remaining_principal: cny(loan.principal_minor
                - installments
                    .iter()
                    .filter(|other| other.sequence <= item.sequence)
                    .map(|other| other.principal_minor)
                    .sum::<i64>()),
            period_days: item.period_days,
            status: installment_status(item, status, business_date) as i32,
            principal_paid: cny(item.principal_paid),
            interest_paid: cny(item.interest_paid),
            penalty_charged: cny(item.penalty_charged),
            penalty_paid: cny(item.penalty_paid),
            amount_outstanding: cny(outstanding(item, business_date)),
            days_past_due: if item.settled_date.is_none() && item.due_date < business_date {
                i32::try_from((business_date - item.due_date).num_days()).unwrap_or(i32::MAX)
            } else {
                0
            },
            settled_date: item.settled_date.and_then(convert::date),
        })
        .collect();
    let outstanding_total = loan.principal_outstanding_minor
        + loan.interest_outstanding_minor
        + loan.penalty_outstanding_minor;
    common::Loan {
        loan_id: loan.loan_id.to_string(),
        customer_id: loan.customer_id.to_string(),
        credit_line_id: loan.credit_line_id.to_string(),
        status: status as i32,
        principal: cny(loan.principal_minor),
        term_months: loan.term_months,
        repayment_method: match loan.repayment_method {
            2 => common::RepaymentMethod::EqualInstallment,
            _ => common::RepaymentMethod::EqualPrincipal,
        } as i32,
        daily_rate: rate_text(loan.daily_rate),
        penalty_daily_rate: rate_text(loan.penalty_daily_rate),
        apr: rate_text(loan.apr),
        disbursement_date: convert::date(loan.disbursement_date),
        disburse_time: convert::timestamp(loan.disburse_time),
        outstanding_principal: cny(loan.principal_outstanding_minor),
        outstanding_interest: cny(loan.interest_outstanding_minor),
        outstanding_penalty: cny(loan.penalty_outstanding_minor),
        total_outstanding: cny(outstanding_total),
        overdue_amount: cny(overdue
            .iter()
            .map(|item| outstanding(item, business_date))
            .sum()),
        days_past_due: i32::try_from(days_past_due).unwrap_or(i32::MAX),
        delinquency_bucket: bucket(days_past_due) as i32,
        next_due_date: next.and_then(|item| convert::date(item.due_date)),
        next_due_amount: next.and_then(|item| cny(outstanding(item, business_date))),
        schedule: Some(common::RepaymentSchedule {
            installments: schedule_items,
            total_principal: cny(loan.principal_minor),
            total_interest: cny(total_interest),
            total_repayable: cny(loan.principal_minor + total_interest),
            first_due_date: installments
                .first()
                .and_then(|item| convert::date(item.due_date)),
            maturity_date: installments
                .last()
                .and_then(|item| convert::date(item.due_date)),
        }),
        principal_paid: cny(principal_paid),
        interest_paid: cny(interest_paid),
        penalty_paid: cny(penalty_paid),
        paid_off_date: loan.paid_off_date.and_then(convert::date),
        written_off_date: loan.written_off_date.and_then(convert::date),
        write_off_reason: i32::from(loan.write_off_reason),
        written_off_amount: loan.written_off_minor.and_then(cny),
        update_time: convert::timestamp(loan.update_time),
        purpose: i32::from(loan.purpose),
    }
}

fn loan_disbursed_event(disbursed: &Disbursed) -> LoanDisbursed {
    let first = disbursed.installments.first();
    LoanDisbursed {
        loan_id: disbursed.loan.loan_id.to_string(),
        credit_line_id: disbursed.loan.credit_line_id.to_string(),
        principal: cny(disbursed.loan.principal_minor),
        term_months: disbursed.loan.term_months,
        repayment_method: i32::from(disbursed.loan.repayment_method),
        daily_rate: rate_text(disbursed.loan.daily_rate),
        apr: rate_text(disbursed.loan.apr),
        disbursement_date: convert::date(disbursed.loan.disbursement_date),
        first_due_date: first.and_then(|item| convert::date(item.due_date)),
        first_due_amount: first.and_then(|item| cny(item.principal_minor + item.interest_minor)),
        maturity_date: disbursed
            .installments
            .last()
            .and_then(|item| convert::date(item.due_date)),
        total_interest: cny(disbursed
            .installments
            .iter()
            .map(|item| item.interest_minor)
            .sum()),
        available_after: cny(disbursed.line.available_minor),
        purpose: i32::from(disbursed.loan.purpose),
    }
}

fn disburse_response(disbursed: &Disbursed) -> proto::DisburseResponse {
    proto::DisburseResponse {
        loan: Some(loan(
            &disbursed.loan,
            &disbursed.installments,
            disbursed.business_date,
        )),
        accounts: Some(loan_accounts(&disbursed.loan)),
        transfers: disbursed.transfers.iter().map(convert::transfer).collect(),
        credit_line: Some(line_balance(&disbursed.line)),
    }
}

/// The Repayment message of a repayment (loan.proto), as stored, sent and returned.
fn repayment(repaid: &Repaid) -> common::Repayment {
    let allocation = &repaid.allocation;
    common::Repayment {
        repayment_id: repaid.repayment_id.to_string(),
        loan_id: repaid.loan.loan_id.to_string(),
        customer_id: repaid.loan.customer_id.to_string(),
        amount: cny(repaid.amount_minor),
        penalty_paid: cny(allocation.penalty_minor),
        interest_paid: cny(allocation.interest_minor),
        principal_paid: cny(allocation.principal_minor),
        prepaid_principal: cny(allocation.prepaid_principal_minor),
        allocations: allocation
            .allocations
            .iter()
            .map(|item| common::InstallmentAllocation {
                sequence: i32::try_from(item.sequence).unwrap_or(i32::MAX),
                penalty: cny(item.penalty_minor),
                interest: cny(item.interest_minor),
                principal: cny(item.principal_minor),
            })
            .collect(),
        value_date: convert::date(repaid.business_date),
        create_time: convert::timestamp(repaid.create_time),
        external_reference: repaid.external_reference.clone(),
        paid_off: repaid.paid_off,
    }
}

fn repayment_events(
    repaid: &Repaid,
) -> Vec<(Option<microloan_proto::google::r#type::Date>, Payload)> {
    let shown = loan(&repaid.loan, &repaid.installments, repaid.business_date);
    let mut events = vec![(
        convert::date(repaid.business_date),
        Payload::RepaymentReceived(RepaymentReceived {
            repayment: Some(repayment(repaid)),
            outstanding_after: shown.total_outstanding.clone(),
            days_past_due_after: shown.days_past_due,
            available_after: cny(repaid.line.available_minor),
        }),
    )];
    if repaid.paid_off {
        events.push((
            convert::date(repaid.business_date),
            Payload::LoanPaidOff(LoanPaidOff {
                loan_id: repaid.loan.loan_id.to_string(),
                paid_off_date: convert::date(repaid.business_date),
                principal_paid: shown.principal_paid.clone(),
                interest_paid: shown.interest_paid.clone(),
                penalty_paid: shown.penalty_paid.clone(),
                early: repaid
                    .installments
                    .last()
                    .is_some_and(|last| repaid.business_date < last.due_date),
                max_days_past_due: repaid
                    .installments
                    .iter()
                    .map(|item| {
                        let settled = item.settled_date.unwrap_or(repaid.business_date);
                        (settled - item.due_date).num_days().max(0)
                    })
                    .max()
                    .and_then(|days| i32::try_from(days).ok())
                    .unwrap_or(0),
            }),
        ));
    }
    events
}

/// Longest external_reference of a repayment.
const EXTERNAL_REFERENCE_CHARS_MAX: usize = 128;
/// QuotePayoff looks at most this many days past the business date.
const PAYOFF_DAYS_AHEAD_MAX: i64 = 30;

fn request_id_violations(request_id: &str) -> Vec<requests::Violation> {
    microloan_platform::idempotency::request_id_problem(request_id)
        .map(|problem| vec![("request_id", problem.to_owned())])
        .unwrap_or_default()
}

/// A line limit: CNY, within [min, max] (0 allowed only where `allow_zero`).
fn line_limit(
    violations: &mut Vec<requests::Violation>,
    field: &'static str,
    money: Option<&common::Money>,
    rules: &book::BookRules,
    allow_zero: bool,
) -> Option<i64> {
    let amount = required_amount(
        violations,
        field,
        money.map(|money| (money.currency_code.as_str(), money.minor_units)),
        allow_zero,
    )?;
    let min = if allow_zero {
        0
    } else {
        rules.line_limit_min_minor
    };
    if amount < min || amount > rules.line_limit_max_minor {
        violations.push((
            field,
            format!(
                "must be {}{} to {} fen",
                if allow_zero { "0 or " } else { "" },
                rules.line_limit_min_minor,
                rules.line_limit_max_minor
            ),
        ));
        return None;
    }
    if allow_zero && amount != 0 && amount < rules.line_limit_min_minor {
        violations.push((field, "must be 0 or at least the minimum line limit".into()));
        return None;
    }
    Some(amount)
}

impl LedgerApi {
    pub(super) async fn open_credit_line(
        &self,
        caller: &str,
        request: proto::OpenCreditLineRequest,
    ) -> Result<proto::OpenCreditLineResponse, LedgerError> {
        let mut violations = request_id_violations(&request.request_id);
        let customer_id = required_id(&mut violations, "customer_id", &request.customer_id);
        let credit_line_id =
            required_id(&mut violations, "credit_line_id", &request.credit_line_id);
        let limit = line_limit(
            &mut violations,
            "limit",
            request.limit.as_ref(),
            &self.rules,
            false,
        );
        book::finish(violations)?;
        let (Some(customer_id), Some(credit_line_id), Some(limit)) =
            (customer_id, credit_line_id, limit)
        else {
            return Err(LedgerError::Internal("parsed without a violation".into()));
        };
        let body = proto::OpenCreditLineRequest {
            request_id: String::new(),
            ..request.clone()
        }
        .encode_to_vec();
        let key = RequestKey {
            caller,
            rpc: "OpenCreditLine",
            request_id: &request.request_id,
            body: &body,
        };
        let response = ops::open_credit_line(
            &self.pool,
            key,
            customer_id,
            credit_line_id,
            limit,
            |opened: &LineOpened| {
                proto::OpenCreditLineResponse {
                    credit_line: Some(line_balance(&opened.line)),
                    transfer: Some(convert::transfer(&opened.transfer)),
                }
                .encode_to_vec()
            },
        )
        .await?;
        decode(&response)
    }

    pub(super) async fn change_credit_limit(
        &self,
        caller: &str,
        request: proto::ChangeCreditLimitRequest,
    ) -> Result<proto::ChangeCreditLimitResponse, LedgerError> {
        let mut violations = request_id_violations(&request.request_id);
        let customer_id = required_id(&mut violations, "customer_id", &request.customer_id);
        let new_limit = line_limit(
            &mut violations,
            "new_limit",
            request.new_limit.as_ref(),
            &self.rules,
            true,
        );
        book::finish(violations)?;
        let (Some(customer_id), Some(new_limit)) = (customer_id, new_limit) else {
            return Err(LedgerError::Internal("parsed without a violation".into()));
        };
        let body = proto::ChangeCreditLimitRequest {
            request_id: String::new(),
            ..request.clone()
        }
        .encode_to_vec();
        let key = RequestKey {
            caller,
            rpc: "ChangeCreditLimit",
            request_id: &request.request_id,
            body: &body,
        };
        let response = ops::change_credit_limit(
            &self.pool,
            key,
            customer_id,
            new_limit,
            request.clamp_to_utilisation,
            |changed: &LimitChanged| {
                proto::ChangeCreditLimitResponse {
                    credit_line: Some(line_balance(&changed.line)),
                    previous_limit: cny(changed.previous_limit_minor),
                    transfer: changed.transfer.as_ref().map(convert::transfer),
                }
                .encode_to_vec()
            },
        )
        .await?;
        decode(&response)
    }

    pub(super) async fn disburse(
        &self,
        caller: &str,
        request: proto::DisburseRequest,
    ) -> Result<proto::DisburseResponse, LedgerError> {
        let method = match common::RepaymentMethod::try_from(request.repayment_method) {
            Ok(common::RepaymentMethod::Unspecified) => Some(None),
            Ok(common::RepaymentMethod::EqualPrincipal) => {
                Some(Some(RepaymentMethod::EqualPrincipal))
            }
            Ok(common::RepaymentMethod::EqualInstallment) => {
                Some(Some(RepaymentMethod::EqualInstallment))
            }
            Err(_) => None,
        };
        let request_id_problems = request_id_violations(&request.request_id);
        let parsed = Disbursement::parse(
            DisbursementFields {
                customer_id: &request.customer_id,
                loan_id: &request.loan_id,
                credit_line_id: &request.credit_line_id,
                principal: request
                    .principal
                    .as_ref()
                    .map(|money| (money.currency_code.as_str(), money.minor_units)),
                term_months: request.term_months,
                method: method.flatten(),
                method_known: method.is_some(),
                daily_rate: &request.daily_rate,
                penalty_daily_rate: &request.penalty_daily_rate,
                purpose: match common::LoanPurpose::try_from(request.purpose) {
                    Ok(common::LoanPurpose::Unspecified) | Err(_) => None,
                    Ok(purpose) => i16::try_from(purpose as i32).ok(),
                },
            },
            &self.rules,
        );
        let drawdown = match (request_id_problems.is_empty(), parsed) {
            (true, parsed) => parsed?,
            (false, Err(LedgerError::InvalidArgument(more))) => {
                return Err(LedgerError::InvalidArgument(
                    [request_id_problems, more].concat(),
                ));
            }
            (false, _) => return Err(LedgerError::InvalidArgument(request_id_problems)),
        };
        let body = proto::DisburseRequest {
            request_id: String::new(),
            ..request.clone()
        }
        .encode_to_vec();
        let key = RequestKey {
            caller,
            rpc: "Disburse",
            request_id: &request.request_id,
            body: &body,
        };
        let response = ops::disburse(
            &self.pool,
            key,
            drawdown,
            &self.rules,
            |disbursed| {
                (
                    convert::date(disbursed.business_date),
                    Payload::LoanDisbursed(loan_disbursed_event(disbursed)),
                )
            },
            |disbursed| disburse_response(disbursed).encode_to_vec(),
        )
        .await?;
        decode(&response)
    }

    pub(super) async fn get_loan(
        &self,
        request: proto::GetLoanRequest,
    ) -> Result<proto::GetLoanResponse, LedgerError> {
        let mut violations = Vec::new();
        let loan_id = required_id(&mut violations, "loan_id", &request.loan_id);
        book::finish(violations)?;
        let loan_id =
            loan_id.ok_or_else(|| LedgerError::Internal("parsed without a violation".into()))?;
        let mut conn = self.pool.acquire().await?;
        let row = store::book::find_loan(&mut conn, loan_id)
            .await?
            .ok_or_else(|| LedgerError::NotFound {
                resource_type: "loan",
                name: loan_id.to_string(),
            })?;
        let installments = store::book::load_installments(&mut conn, loan_id).await?;
        let today = store::business_date::read_business_date_in(&mut conn).await?;
        Ok(proto::GetLoanResponse {
            loan: Some(loan(&row, &installments, today.business_date)),
            accounts: Some(loan_accounts(&row)),
        })
    }

    pub(super) async fn repay(
        &self,
        caller: &str,
        request: proto::RepayRequest,
    ) -> Result<proto::RepayResponse, LedgerError> {
        let mut violations = request_id_violations(&request.request_id);
        let customer_id = required_id(&mut violations, "customer_id", &request.customer_id);
        let loan_id = required_id(&mut violations, "loan_id", &request.loan_id);
        let amount = match (&request.amount, request.pay_off) {
            (Some(_), true) | (None, false) => {
                violations.push(("amount", "set exactly one of amount and pay_off".into()));
                None
            }
            (Some(money), false) => required_amount(
                &mut violations,
                "amount",
                Some((money.currency_code.as_str(), money.minor_units)),
                false,
            )
            .map(Some),
            (None, true) => Some(None),
        };
        if request.external_reference.chars().count() > EXTERNAL_REFERENCE_CHARS_MAX {
            violations.push((
                "external_reference",
                "must be at most 128 characters".into(),
            ));
        }
        book::finish(violations)?;
        let (Some(customer_id), Some(loan_id), Some(amount_minor)) = (customer_id, loan_id, amount)
        else {
            return Err(LedgerError::Internal("parsed without a violation".into()));
        };
        let body = proto::RepayRequest {
            request_id: String::new(),
            ..request.clone()
        }
        .encode_to_vec();
        let key = RequestKey {
            caller,
            rpc: "Repay",
            request_id: &request.request_id,
            body: &body,
        };
        let order = RepaymentOrder {
            customer_id,
            loan_id,
            amount_minor,
            external_reference: request.external_reference.clone(),
        };
        let response = ops::repay(
            &self.pool,
            key,
            order,
            |repaid| repayment(repaid).encode_to_vec(),
            repayment_events,
            |repaid| {
                proto::RepayResponse {
                    repayment: Some(repayment(repaid)),
                    loan: Some(loan(
                        &repaid.loan,
                        &repaid.installments,
                        repaid.business_date,
                    )),
                    transfers: repaid.transfers.iter().map(convert::transfer).collect(),
                    credit_line: Some(line_balance(&repaid.line)),
                }
                .encode_to_vec()
            },
        )
        .await?;
        decode(&response)
    }

    pub(super) async fn list_loans(
        &self,
        request: proto::ListLoansRequest,
    ) -> Result<proto::ListLoansResponse, LedgerError> {
        let mut violations = Vec::new();
        let customer_id = match crate::gl::ids::IdField::parse(&request.customer_id) {
            crate::gl::ids::IdField::Empty => None,
            crate::gl::ids::IdField::Valid(id) => Some(id),
            crate::gl::ids::IdField::Malformed => {
                violations.push(("customer_id", "must be a UUID".to_owned()));
                None
            }
        };
        let statuses: Vec<i16> = request
            .statuses
            .iter()
            .filter(|s| **s != 0)
            .map(|s| *s as i16)
            .collect();
        if request
            .statuses
            .iter()
            .any(|status| common::LoanStatus::try_from(*status).is_err())
        {
            violations.push(("statuses", "must be LoanStatus values".to_owned()));
        }
        let buckets: Vec<i16> = request
            .delinquency_buckets
            .iter()
            .filter(|b| **b != 0)
            .map(|b| *b as i16)
            .collect();
        if request
            .delinquency_buckets
            .iter()
            .any(|bucket| common::DelinquencyBucket::try_from(*bucket).is_err())
        {
            violations.push((
                "delinquency_buckets",
                "must be DelinquencyBucket values".to_owned(),
            ));
        }
        let page_size = requests::page_size(request.page_size)
            .map_err(|v| violations.push(v))
            .ok();
        let status_text: Vec<String> = statuses.iter().map(ToString::to_string).collect();
        let bucket_text: Vec<String> = buckets.iter().map(ToString::to_string).collect();
        let fingerprint = requests::fingerprint(&[
            &request.customer_id,
            &status_text.join(","),
            &bucket_text.join(","),
        ]);
        let token = PageToken::decode(&request.page_token, fingerprint)
            .map_err(|v| violations.push(v))
            .ok();
        book::finish(violations)?;
        let page_size = page_size.unwrap_or(requests::PAGE_SIZE_DEFAULT);
        let mut conn = self.pool.acquire().await?;
        let today = store::business_date::read_business_date_in(&mut conn).await?;
        let mut rows = store::book::list_loans(
            &mut conn,
            customer_id,
            &statuses,
            &buckets,
            today.business_date,
            token.flatten().map(|token| token.after_seq),
            page_size + 1,
        )
        .await?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > page_size;
        rows.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
        let ids: Vec<uuid::Uuid> = rows.iter().map(|row| row.loan_id).collect();
        let installments = store::book::load_installments_of(&mut conn, &ids).await?;
        let loans = rows
            .iter()
            .map(|row| {
                let schedule = installments
                    .get(&row.loan_id)
                    .map_or(&[][..], Vec::as_slice);
                loan(row, schedule, today.business_date)
            })
            .collect();
        Ok(proto::ListLoansResponse {
            loans,
            next_page_token: match (more, rows.last()) {
                (true, Some(last)) => PageToken {
                    after_seq: last.seq,
                    filters: fingerprint,
                }
                .encode(),
                _ => String::new(),
            },
        })
    }

    pub(super) async fn quote_payoff(
        &self,
        request: proto::QuotePayoffRequest,
    ) -> Result<proto::QuotePayoffResponse, LedgerError> {
        let mut violations = Vec::new();
        let loan_id = required_id(&mut violations, "loan_id", &request.loan_id);
        let asked = request.payoff_date.as_ref().map(|date| {
            convert::naive_date(date).ok_or((
                "payoff_date",
                "must be a full, existing calendar date".to_owned(),
            ))
        });
        let asked = match asked {
            Some(Err(violation)) => {
                violations.push(violation);
                None
            }
            Some(Ok(date)) => Some(date),
            None => None,
        };
        book::finish(violations)?;
        let loan_id =
            loan_id.ok_or_else(|| LedgerError::Internal("parsed without a violation".into()))?;
        let mut conn = self.pool.acquire().await?;
        let today = store::business_date::read_business_date_in(&mut conn).await?;
        let payoff_date = asked.unwrap_or(today.business_date);
        let days_ahead = (payoff_date - today.business_date).num_days();
        if !(0..=PAYOFF_DAYS_AHEAD_MAX).contains(&days_ahead) {
            return Err(LedgerError::invalid(
                "payoff_date",
                "must be from the business date to 30 days after it",
            ));
        }
        let row = store::book::find_loan(&mut conn, loan_id)
            .await?
            .ok_or_else(|| LedgerError::NotFound {
                resource_type: "loan",
                name: loan_id.to_string(),
            })?;
        if row.status != 1 {
            return Err(ops::loan_not_active(row.status));
        }
        let installments = store::book::load_installments(&mut conn, loan_id).await?;
        let unpaid: Vec<UnpaidPrincipal> = installments
            .iter()
            .filter(|item| item.settled_date.is_none())
            .map(|item| UnpaidPrincipal {
                due_date: item.due_date,
                principal_minor: item.principal_minor - item.principal_paid,
            })
            .collect();
        let quote = book::payoff_quote(
            row.principal_outstanding_minor,
            row.interest_outstanding_minor,
            row.penalty_outstanding_minor,
            &unpaid,
            row.daily_rate,
            row.penalty_daily_rate,
            today.business_date,
            payoff_date,
        )?;
        Ok(proto::QuotePayoffResponse {
            quote: Some(proto::PayoffQuote {
                loan_id: loan_id.to_string(),
                payoff_date: convert::date(payoff_date),
                principal: cny(quote.principal_minor),
                interest: cny(quote.interest_minor),
                penalty: cny(quote.penalty_minor),
                total: cny(quote.total_minor()),
                per_diem: cny(quote.per_diem_minor),
            }),
        })
    }
}

fn reminder_payload(reminder: &ReminderRow) -> Payload {
    if reminder.offset_days <= 0 {
        Payload::InstallmentDueSoon(InstallmentDueSoon {
            loan_id: reminder.loan_id.to_string(),
            installment_sequence: reminder.sequence,
            due_date: convert::date(reminder.due_date),
            amount_due: cny(reminder.amount_minor),
            days_until_due: -reminder.offset_days,
        })
    } else {
        Payload::InstallmentOverdue(InstallmentOverdue {
            loan_id: reminder.loan_id.to_string(),
            installment_sequence: reminder.sequence,
            due_date: convert::date(reminder.due_date),
            overdue_amount: cny(reminder.amount_minor),
            loan_overdue_amount: cny(reminder.loan_overdue_minor),
            days_past_due: reminder.offset_days,
            delinquency_bucket: i32::from(reminder.bucket),
            penalty_daily_rate: rate_text(reminder.penalty_daily_rate),
            credit_bureau_warning: reminder.offset_days >= CREDIT_BUREAU_WARNING_DAYS,
        })
    }
}

fn end_of_day_summary(run: &EndOfDay) -> proto::EndOfDaySummary {
    proto::EndOfDaySummary {
        business_date: convert::date(run.business_date),
        next_business_date: convert::date(run.next_business_date),
        replayed: false,
        loans_processed: run.loans_processed,
        interest_accrued: cny(run.interest.amount_minor),
        penalty_accrued: cny(run.penalty.amount_minor),
        installments_due: run.installments_due,
        installments_newly_overdue: run.installments_newly_overdue,
        buckets: run
            .buckets
            .iter()
            .map(|(bucket, loan_count)| proto::BucketCount {
                bucket: i32::from(*bucket),
                loan_count: *loan_count,
            })
            .collect(),
        reminders: run
            .reminders
            .iter()
            .map(|(offset_days, count)| proto::ReminderCount {
                offset_days: *offset_days,
                count: *count,
            })
            .collect(),
        loans_written_off: run.loans_written_off,
        amount_written_off: cny(run.amount_written_off_minor),
        events_emitted: run.events_emitted,
        start_time: convert::timestamp(run.start_time),
        finish_time: convert::timestamp(run.finish_time),
    }
}

impl LedgerApi {
    pub(super) async fn run_end_of_day(
        &self,
        caller: &str,
        request: proto::RunEndOfDayRequest,
    ) -> Result<proto::RunEndOfDayResponse, LedgerError> {
        // request_id is optional here: end of day is idempotent per date anyway.
        let mut violations = if request.request_id.is_empty() {
            Vec::new()
        } else {
            request_id_violations(&request.request_id)
        };
        let business_date = match request.business_date.as_ref() {
            None => {
                violations.push(("business_date", "is required".into()));
                None
            }
            Some(date) => {
                let parsed = convert::naive_date(date);
                if parsed.is_none() {
                    violations.push((
                        "business_date",
                        "must be a full, existing calendar date".into(),
                    ));
                }
                parsed
            }
        };
        book::finish(violations)?;
        let business_date = business_date
            .ok_or_else(|| LedgerError::Internal("parsed without a violation".into()))?;
        let body = proto::RunEndOfDayRequest {
            request_id: String::new(),
            ..request.clone()
        }
        .encode_to_vec();
        let key = (!request.request_id.is_empty()).then_some(RequestKey {
            caller,
            rpc: "RunEndOfDay",
            request_id: &request.request_id,
            body: &body,
        });
        let response = ops::run_end_of_day(
            &self.pool,
            key,
            business_date,
            ops::EndOfDayEvents {
                reminder: &|reminder| (convert::date(business_date), reminder_payload(reminder)),
                written_off: &|written_off| {
                    (
                        convert::date(written_off.business_date),
                        Payload::LoanWrittenOff(loan_written_off_event(written_off)),
                    )
                },
            },
            |run| end_of_day_summary(run).encode_to_vec(),
            &|stored: &[u8], replayed| {
                let summary: proto::EndOfDaySummary = decode(stored)?;
                Ok(proto::RunEndOfDayResponse {
                    summary: Some(proto::EndOfDaySummary {
                        replayed,
                        ..summary
                    }),
                }
                .encode_to_vec())
            },
        )
        .await?;
        decode(&response)
    }
}

fn loan_written_off_event(written_off: &WrittenOff) -> LoanWrittenOff {
    LoanWrittenOff {
        loan_id: written_off.loan.loan_id.to_string(),
        written_off_date: convert::date(written_off.business_date),
        reason: i32::from(written_off.reason),
        principal: cny(written_off.principal_minor),
        interest: cny(written_off.interest_minor),
        penalty: cny(written_off.penalty_minor),
        total: cny(written_off.total_minor()),
        days_past_due: written_off.days_past_due,
    }
}

/// WriteOffRequest.note: 1-512 characters.
const WRITE_OFF_NOTE_CHARS_MAX: usize = 512;

impl LedgerApi {
    pub(super) async fn write_off(
        &self,
        caller: &str,
        request: proto::WriteOffRequest,
    ) -> Result<proto::WriteOffResponse, LedgerError> {
        let mut violations = request_id_violations(&request.request_id);
        let loan_id = required_id(&mut violations, "loan_id", &request.loan_id);
        let reason = match common::WriteOffReason::try_from(request.reason) {
            Ok(common::WriteOffReason::Unspecified) => {
                violations.push(("reason", "is required".into()));
                None
            }
            Ok(common::WriteOffReason::DaysPastDue) => {
                violations.push(("reason", "DAYS_PAST_DUE is reserved for end of day".into()));
                None
            }
            Ok(reason) => i16::try_from(reason as i32).ok(),
            Err(_) => {
                violations.push(("reason", "is not a WriteOffReason".into()));
                None
            }
        };
        let note_chars = request.note.chars().count();
        if note_chars == 0 || note_chars > WRITE_OFF_NOTE_CHARS_MAX {
            violations.push((
                "note",
                format!("must be 1 to {WRITE_OFF_NOTE_CHARS_MAX} characters"),
            ));
        }
        book::finish(violations)?;
        let (Some(loan_id), Some(reason)) = (loan_id, reason) else {
            return Err(LedgerError::Internal("parsed without a violation".into()));
        };
        let body = proto::WriteOffRequest {
            request_id: String::new(),
            ..request.clone()
        }
        .encode_to_vec();
        let key = RequestKey {
            caller,
            rpc: "WriteOff",
            request_id: &request.request_id,
            body: &body,
        };
        let response = ops::write_off(
            &self.pool,
            key,
            loan_id,
            reason,
            |written_off| {
                (
                    convert::date(written_off.business_date),
                    Payload::LoanWrittenOff(loan_written_off_event(written_off)),
                )
            },
            |written_off| {
                proto::WriteOffResponse {
                    loan: Some(loan(
                        &written_off.loan,
                        &written_off.installments,
                        written_off.business_date,
                    )),
                    principal: cny(written_off.principal_minor),
                    interest: cny(written_off.interest_minor),
                    penalty: cny(written_off.penalty_minor),
                    transfers: written_off
                        .transfers
                        .iter()
                        .map(convert::transfer)
                        .collect(),
                }
                .encode_to_vec()
            },
        )
        .await?;
        decode(&response)
    }
}
