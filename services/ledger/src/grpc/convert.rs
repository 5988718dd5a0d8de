//! proto ⇄ domain for the general ledger: items as received (bad values kept for their
//! result statuses), domain values out.

use chrono::{DateTime, Datelike, NaiveDate, Utc};
use microloan_proto::{common::v1::Money, google::r#type::Date, ledger::v1 as proto};
use prost_types::Timestamp;

use crate::gl::{
    accounts::{Account, AccountFlags, AccountItem, AccountsPlan},
    ids::IdField,
    integrity::{Report, Violation},
    transfers::{ItemAmount, Transfer, TransferFlags, TransferItem, TransfersPlan},
};
use crate::store::reports::TrialBalanceLine;

pub fn money(currency: &str, minor_units: i64) -> Option<Money> {
    Some(Money {
        currency_code: currency.to_owned(),
        minor_units,
    })
}

pub fn timestamp(time: DateTime<Utc>) -> Option<Timestamp> {
    Some(microloan_platform::convert::timestamp(time))
}

pub fn date(date: NaiveDate) -> Option<Date> {
    Some(Date {
        year: date.year(),
        month: i32::try_from(date.month()).unwrap_or(0),
        day: i32::try_from(date.day()).unwrap_or(0),
    })
}

/// A full calendar date, or None if any part is missing or the date does not exist.
pub fn naive_date(date: &Date) -> Option<NaiveDate> {
    NaiveDate::from_ymd_opt(
        date.year,
        u32::try_from(date.month).ok()?,
        u32::try_from(date.day).ok()?,
    )
}

fn money_set(money: Option<&Money>) -> bool {
    money.is_some_and(|money| money.minor_units != 0)
}

pub fn account_item(account: &proto::Account) -> AccountItem {
    let flags = account.flags.unwrap_or_default();
    AccountItem {
        id: IdField::parse(&account.account_id),
        code: account.code,
        currency: account.currency_code.clone(),
        customer_id: IdField::parse(&account.customer_id),
        loan_id: IdField::parse(&account.loan_id),
        sub_account: account.sub_account,
        flags: AccountFlags {
            linked: flags.linked,
            debits_must_not_exceed_credits: flags.debits_must_not_exceed_credits,
            credits_must_not_exceed_debits: flags.credits_must_not_exceed_debits,
        },
        output_fields_set: [
            &account.debits_posted,
            &account.credits_posted,
            &account.debits_pending,
            &account.credits_pending,
        ]
        .into_iter()
        .any(|balance| money_set(balance.as_ref()))
            || account.create_time.is_some(),
    }
}

pub fn account(account: &Account) -> proto::Account {
    let balances = account.balances;
    let currency = account.currency.as_str();
    proto::Account {
        account_id: account.id.to_string(),
        code: account.code.as_i32(),
        currency_code: account.currency.clone(),
        customer_id: account
            .customer_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        loan_id: account.loan_id.map(|id| id.to_string()).unwrap_or_default(),
        sub_account: account.sub_account,
        flags: Some(proto::AccountFlags {
            linked: account.flags.linked,
            debits_must_not_exceed_credits: account.flags.debits_must_not_exceed_credits,
            credits_must_not_exceed_debits: account.flags.credits_must_not_exceed_debits,
        }),
        debits_posted: money(currency, balances.debits_posted),
        credits_posted: money(currency, balances.credits_posted),
        debits_pending: money(currency, balances.debits_pending),
        credits_pending: money(currency, balances.credits_pending),
        create_time: timestamp(account.create_time),
    }
}

/// Each result with its 0-based index (the proto's int32) and its request item.
fn indexed<'a, S, T, I>(
    results: &'a [(S, Option<T>)],
    items: &'a [I],
) -> impl Iterator<Item = (i32, &'a I, &'a S, Option<&'a T>)> {
    results
        .iter()
        .zip(items)
        .enumerate()
        .map(|(index, ((status, stored), item))| {
            (
                i32::try_from(index).unwrap_or(i32::MAX),
                item,
                status,
                stored.as_ref(),
            )
        })
}

pub fn create_accounts_response(
    request: &[proto::Account],
    plan: &AccountsPlan,
) -> proto::CreateAccountsResponse {
    let results = indexed(&plan.results, request).map(|(index, item, status, stored)| {
        proto::CreateAccountResult {
            index,
            account_id: item.account_id.clone(),
            status: *status as i32,
            account: stored.map(account),
        }
    });
    proto::CreateAccountsResponse {
        results: results.collect(),
    }
}

pub fn transfer_item(transfer: &proto::Transfer) -> TransferItem {
    let flags = transfer.flags.unwrap_or_default();
    TransferItem {
        id: IdField::parse(&transfer.transfer_id),
        debit_account_id: IdField::parse(&transfer.debit_account_id),
        credit_account_id: IdField::parse(&transfer.credit_account_id),
        same_account_text: transfer
            .debit_account_id
            .eq_ignore_ascii_case(&transfer.credit_account_id),
        amount: transfer.amount.as_ref().map(|amount| ItemAmount {
            currency: amount.currency_code.clone(),
            minor_units: amount.minor_units,
        }),
        code: transfer.code,
        flags: TransferFlags {
            linked: flags.linked,
            pending: flags.pending,
            post_pending: flags.post_pending,
            void_pending: flags.void_pending,
        },
        pending_id: IdField::parse(&transfer.pending_id),
        timeout_seconds: transfer.timeout_seconds,
        customer_id: IdField::parse(&transfer.customer_id),
        loan_id: IdField::parse(&transfer.loan_id),
        description: transfer.description.clone(),
        output_fields_set: transfer.business_date.is_some()
            || transfer.create_time.is_some()
            || transfer.pending_status != 0,
    }
}

pub fn transfer(transfer: &Transfer) -> proto::Transfer {
    let id = |id: Option<uuid::Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
    proto::Transfer {
        transfer_id: transfer.id.to_string(),
        debit_account_id: transfer.debit_account_id.to_string(),
        credit_account_id: transfer.credit_account_id.to_string(),
        amount: money(&transfer.currency, transfer.amount),
        code: transfer.code.as_i32(),
        flags: Some(proto::TransferFlags {
            linked: transfer.flags.linked,
            pending: transfer.flags.pending,
            post_pending: transfer.flags.post_pending,
            void_pending: transfer.flags.void_pending,
        }),
        pending_id: id(transfer.pending_id),
        timeout_seconds: transfer.timeout_seconds,
        customer_id: id(transfer.customer_id),
        loan_id: id(transfer.loan_id),
        description: transfer.description.clone(),
        business_date: date(transfer.business_date),
        create_time: timestamp(transfer.create_time),
        pending_status: transfer.pending.map_or(0, |pending| pending.status as i32),
    }
}

pub fn create_transfers_response(
    request: &[proto::Transfer],
    plan: &TransfersPlan,
) -> proto::CreateTransfersResponse {
    let results = indexed(&plan.results, request).map(|(index, item, status, stored)| {
        proto::CreateTransferResult {
            index,
            transfer_id: item.transfer_id.clone(),
            status: *status as i32,
            transfer: stored.map(transfer),
        }
    });
    proto::CreateTransfersResponse {
        results: results.collect(),
    }
}

pub fn trial_balance_line(currency: &str, line: &TrialBalanceLine) -> proto::TrialBalanceLine {
    proto::TrialBalanceLine {
        code: line.code.as_i32(),
        account_count: line.account_count,
        debits_posted: money(currency, line.debits_posted),
        credits_posted: money(currency, line.credits_posted),
        debits_pending: money(currency, line.debits_pending),
        credits_pending: money(currency, line.credits_pending),
        // Both sums are within 0..=i64::MAX, so the difference fits.
        net_debit_balance: money(currency, line.debits_posted - line.credits_posted),
    }
}

fn violation(currency: &str, violation: &Violation) -> proto::IntegrityViolation {
    let id = |id: Option<uuid::Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
    proto::IntegrityViolation {
        kind: violation.kind as i32,
        account_id: id(violation.account_id),
        transfer_id: id(violation.transfer_id),
        loan_id: id(violation.loan_id),
        customer_id: id(violation.customer_id),
        expected: violation
            .expected
            .and_then(|amount| money(currency, amount)),
        actual: violation.actual.and_then(|amount| money(currency, amount)),
        detail: violation.detail.clone(),
    }
}

pub fn integrity_report(currency: &str, report: &Report) -> proto::VerifyIntegrityResponse {
    proto::VerifyIntegrityResponse {
        ok: report.violations.is_empty(),
        accounts_checked: report.accounts_checked,
        transfers_checked: report.transfers_checked,
        loans_checked: report.loans_checked,
        total_debits_posted: money(currency, report.totals.debits_posted),
        total_credits_posted: money(currency, report.totals.credits_posted),
        total_debits_pending: money(currency, report.totals.debits_pending),
        total_credits_pending: money(currency, report.totals.credits_pending),
        violations: report
            .violations
            .iter()
            .map(|v| violation(currency, v))
            .collect(),
        violations_truncated: report.violations_truncated,
        business_date: date(report.business_date),
        check_time: timestamp(report.check_time),
    }
}
