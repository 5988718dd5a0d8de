//! The loan book's rules, as plain functions over values (no SQL, no proto): the
//! product bounds, parsing a drawdown once, which platform sub-account a customer's
//! postings use, and the postings of each operation as transfer items that the general
//! ledger applies (DESIGN §3: "a credit limit IS a ledger balance").

pub mod end_of_day;
pub mod ops;

use std::str::FromStr;

use microloan_domain::{
    DailyRate,
    loan::{RepaymentMethod, TermMonths, penalty_daily_rate},
};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{
    error::LedgerError,
    gl::{
        CURRENCY_CNY, SUB_ACCOUNTS,
        ids::IdField,
        transfers::{ItemAmount, TransferCode, TransferFlags, TransferItem},
    },
};

/// The product's bounds as the ledger enforces them (ledger.proto: the ledger checks
/// them from its own configuration, with the same defaults as account): one type and one
/// parser in libs/domain, shared with account.
pub type BookRules = microloan_domain::ProductRules;

/// The platform sub-account (0..63) every posting of `customer_id` uses: the same
/// FNV-1a hash the events outbox partitions by, so a customer always lands on one
/// sub-account and concurrent customers spread over 64 rows instead of one hot row.
pub fn sub_account_for(customer_id: Uuid) -> i32 {
    let hash = microloan_events::outbox::customer_hash(&customer_id.to_string());
    i32::try_from(hash % SUB_ACCOUNTS.unsigned_abs()).expect("below 64")
}

/// A required UUID field of a request; a violation naming it otherwise.
pub fn required_id(
    violations: &mut Vec<(&'static str, String)>,
    field: &'static str,
    text: &str,
) -> Option<Uuid> {
    match IdField::parse(text) {
        IdField::Valid(id) => Some(id),
        IdField::Empty => {
            violations.push((field, "is required".into()));
            None
        }
        IdField::Malformed => {
            violations.push((field, "must be a UUID".into()));
            None
        }
    }
}

/// A Money field that must be set, in CNY and > 0 (or >= 0 with `allow_zero`).
pub fn required_amount(
    violations: &mut Vec<(&'static str, String)>,
    field: &'static str,
    money: Option<(&str, i64)>,
    allow_zero: bool,
) -> Option<i64> {
    let Some((currency, minor_units)) = money else {
        violations.push((field, "is required".into()));
        return None;
    };
    if currency != CURRENCY_CNY {
        violations.push((field, "currency must be CNY".into()));
        return None;
    }
    if minor_units < 0 || (minor_units == 0 && !allow_zero) {
        violations.push((field, "must be positive".into()));
        return None;
    }
    Some(minor_units)
}

/// `Err(INVALID_ARGUMENT)` with every violation, or `Ok` when there are none.
pub fn finish(violations: Vec<(&'static str, String)>) -> Result<(), LedgerError> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(LedgerError::InvalidArgument(violations))
    }
}

/// A drawdown request, every field valid (ledger.proto `DisburseRequest`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disbursement {
    pub customer_id: Uuid,
    pub loan_id: Uuid,
    pub credit_line_id: Uuid,
    pub principal_minor: i64,
    pub term: TermMonths,
    pub method: RepaymentMethod,
    pub daily_rate: DailyRate,
    pub penalty_daily_rate: Decimal,
    /// LoanPurpose number (1..=7, never UNSPECIFIED).
    pub purpose: i16,
}

/// The raw fields of a drawdown, as received.
#[derive(Clone, Copy, Debug)]
pub struct DisbursementFields<'a> {
    pub customer_id: &'a str,
    pub loan_id: &'a str,
    pub credit_line_id: &'a str,
    pub principal: Option<(&'a str, i64)>,
    pub term_months: i32,
    /// `None`: UNSPECIFIED (the default method).
    pub method: Option<RepaymentMethod>,
    pub method_known: bool,
    pub daily_rate: &'a str,
    pub penalty_daily_rate: &'a str,
    /// LoanPurpose number; `None`: UNSPECIFIED or not a LoanPurpose (required, so a
    /// violation on `purpose`).
    pub purpose: Option<i16>,
}

impl Disbursement {
    /// Every malformed field in one INVALID_ARGUMENT; the product bounds are checked
    /// separately ([`Disbursement::check_bounds`]) because they are FAILED_PRECONDITION.
    pub fn parse(fields: DisbursementFields<'_>, rules: &BookRules) -> Result<Self, LedgerError> {
        let mut violations = Vec::new();
        let customer_id = required_id(&mut violations, "customer_id", fields.customer_id);
        let loan_id = required_id(&mut violations, "loan_id", fields.loan_id);
        let credit_line_id = required_id(&mut violations, "credit_line_id", fields.credit_line_id);
        let principal = required_amount(&mut violations, "principal", fields.principal, false);
        let term = TermMonths::parse(i64::from(fields.term_months), &rules.offered_terms)
            .map_err(|err| violations.push(("term_months", err.to_string())))
            .ok();
        if !fields.method_known {
            violations.push(("repayment_method", "is not a RepaymentMethod".into()));
        }
        let daily_rate = DailyRate::parse(fields.daily_rate)
            .map_err(|err| violations.push(("daily_rate", err.to_string())))
            .ok();
        let penalty = match (fields.penalty_daily_rate, daily_rate) {
            ("", Some(rate)) => Some(penalty_daily_rate(
                rate.as_decimal(),
                rules.penalty_multiplier,
            )),
            ("", None) => None,
            (text, rate) => {
                let ceiling = DailyRate::MAX * rules.penalty_multiplier;
                match Decimal::from_str_exact(text) {
                    Ok(value)
                        if value > Decimal::ZERO
                            && value <= ceiling
                            && rate.is_none_or(|rate| value >= rate.as_decimal()) =>
                    {
                        Some(value.normalize())
                    }
                    _ => {
                        violations.push((
                            "penalty_daily_rate",
                            format!("must be a decimal from daily_rate up to {ceiling}"),
                        ));
                        None
                    }
                }
            }
        };
        if fields.purpose.is_none() {
            violations.push(("purpose", "is required (a LoanPurpose)".into()));
        }
        finish(violations)?;
        match (
            customer_id,
            loan_id,
            credit_line_id,
            principal,
            term,
            daily_rate,
            penalty,
            fields.purpose,
        ) {
            (
                Some(customer_id),
                Some(loan_id),
                Some(credit_line_id),
                Some(principal_minor),
                Some(term),
                Some(daily_rate),
                Some(penalty_daily_rate),
                Some(purpose),
            ) => Ok(Self {
                customer_id,
                loan_id,
                credit_line_id,
                principal_minor,
                term,
                method: fields.method.unwrap_or_default(),
                daily_rate,
                penalty_daily_rate,
                purpose,
            }),
            _ => Err(LedgerError::Internal(
                "a drawdown field parsed without a violation".into(),
            )),
        }
    }

    /// DRAWDOWN_BELOW_MINIMUM / DRAWDOWN_LIMIT_EXCEEDED (both bounds inclusive).
    pub fn check_bounds(&self, rules: &BookRules) -> Result<(), LedgerError> {
        if self.principal_minor < rules.drawdown_min_minor {
            return Err(LedgerError::precondition(
                "DRAWDOWN_BELOW_MINIMUM",
                "the principal is below the minimum drawdown",
                vec![("min_minor_units", rules.drawdown_min_minor.to_string())],
            ));
        }
        if self.principal_minor > rules.drawdown_max_minor {
            return Err(LedgerError::precondition(
                "DRAWDOWN_LIMIT_EXCEEDED",
                "the principal is above the single-drawdown maximum",
                vec![("max_minor_units", rules.drawdown_max_minor.to_string())],
            ));
        }
        Ok(())
    }
}

/// APR_CAP_EXCEEDED when a schedule's APR is above the cap.
pub fn check_apr(apr: Decimal, rules: &BookRules) -> Result<(), LedgerError> {
    if apr > rules.apr_cap {
        return Err(LedgerError::precondition(
            "APR_CAP_EXCEEDED",
            "the loan's APR is above the cap",
            vec![
                ("apr", apr.to_string()),
                ("cap", rules.apr_cap.normalize().to_string()),
            ],
        ));
    }
    Ok(())
}

/// Parses an exact decimal stored as text or numeric (never through a float).
pub fn decimal(text: &str) -> Result<Decimal, LedgerError> {
    Decimal::from_str(text).map_err(|err| LedgerError::Internal(format!("decimal {text}: {err}")))
}

/// One posting of the loan book: a single-phase transfer between two known accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Posting {
    pub code: TransferCode,
    pub debit_account_id: Uuid,
    pub credit_account_id: Uuid,
    pub amount_minor: i64,
    pub customer_id: Uuid,
    pub loan_id: Option<Uuid>,
}

/// The transfer items of `postings`, linked into one all-or-nothing chain, with fresh
/// UUIDv7 ids. Zero amounts are skipped (nothing to move).
pub fn chain(postings: &[Posting], description: &str) -> Vec<TransferItem> {
    let postings: Vec<&Posting> = postings.iter().filter(|p| p.amount_minor > 0).collect();
    let last = postings.len().saturating_sub(1);
    postings
        .iter()
        .enumerate()
        .map(|(index, posting)| TransferItem {
            id: IdField::Valid(Uuid::now_v7()),
            debit_account_id: IdField::Valid(posting.debit_account_id),
            credit_account_id: IdField::Valid(posting.credit_account_id),
            same_account_text: false,
            amount: Some(ItemAmount {
                currency: CURRENCY_CNY.to_owned(),
                minor_units: posting.amount_minor,
            }),
            code: posting.code.as_i32(),
            flags: TransferFlags {
                linked: index < last,
                ..TransferFlags::default()
            },
            pending_id: IdField::Empty,
            timeout_seconds: 0,
            customer_id: IdField::Valid(posting.customer_id),
            loan_id: posting.loan_id.map_or(IdField::Empty, IdField::Valid),
            description: description.to_owned(),
            output_fields_set: false,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields<'a>() -> DisbursementFields<'a> {
        DisbursementFields {
            customer_id: "0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f",
            loan_id: "0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e70",
            credit_line_id: "0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e71",
            principal: Some(("CNY", 500_000)),
            term_months: 10,
            method: None,
            method_known: true,
            daily_rate: "0.0005",
            penalty_daily_rate: "",
            purpose: Some(1),
        }
    }

    #[test]
    fn a_valid_drawdown_parses_with_the_default_penalty_rate() {
        let drawdown = Disbursement::parse(fields(), &BookRules::default()).expect("valid");
        assert_eq!(drawdown.penalty_daily_rate.to_string(), "0.00075");
        assert_eq!(drawdown.method, RepaymentMethod::EqualPrincipal);
        assert!(drawdown.check_bounds(&BookRules::default()).is_ok());
    }

    #[test]
    fn every_malformed_field_is_one_violation() {
        let bad = DisbursementFields {
            customer_id: "",
            loan_id: "nope",
            credit_line_id: "0190C1E4-4B0A-7C1E-9F3A-1D2B3C4D5E71",
            principal: Some(("USD", 100)),
            term_months: 7,
            method: None,
            method_known: false,
            daily_rate: "0.01",
            penalty_daily_rate: "lots",
            purpose: None,
        };
        let Err(LedgerError::InvalidArgument(violations)) =
            Disbursement::parse(bad, &BookRules::default())
        else {
            panic!("invalid");
        };
        let named: Vec<&str> = violations.iter().map(|(field, _)| *field).collect();
        assert_eq!(
            named,
            [
                "customer_id",
                "loan_id",
                "principal",
                "term_months",
                "repayment_method",
                "daily_rate",
                "penalty_daily_rate",
                "purpose"
            ]
        );
        for principal in [None, Some(("CNY", 0)), Some(("CNY", -1))] {
            let result = Disbursement::parse(
                DisbursementFields {
                    principal,
                    ..fields()
                },
                &BookRules::default(),
            );
            assert!(
                matches!(result, Err(LedgerError::InvalidArgument(ref v)) if v[0].0 == "principal")
            );
        }
    }

    #[test]
    fn the_product_bounds_are_inclusive_preconditions() {
        let rules = BookRules::default();
        for (principal, reason) in [
            (9_999, Some("DRAWDOWN_BELOW_MINIMUM")),
            (10_000, None),
            (4_000_000, None),
            (4_000_001, Some("DRAWDOWN_LIMIT_EXCEEDED")),
        ] {
            let drawdown = Disbursement::parse(
                DisbursementFields {
                    principal: Some(("CNY", principal)),
                    ..fields()
                },
                &rules,
            )
            .expect("well-formed");
            match (drawdown.check_bounds(&rules), reason) {
                (Ok(()), None) => {}
                (Err(LedgerError::FailedPrecondition { reason: got, .. }), Some(want)) => {
                    assert_eq!(got, want, "{principal}");
                }
                (other, want) => panic!("{principal}: {other:?} vs {want:?}"),
            }
        }
    }

    #[test]
    fn a_customer_always_posts_to_one_sub_account_and_customers_spread() {
        let customer = Uuid::now_v7();
        assert_eq!(sub_account_for(customer), sub_account_for(customer));
        let used: std::collections::HashSet<i32> = (0..2_000)
            .map(|_| sub_account_for(Uuid::new_v4()))
            .collect();
        assert!(used.iter().all(|sub| (0..64).contains(sub)));
        assert!(used.len() > 60, "{}", used.len());
    }

    #[test]
    fn a_chain_links_all_but_the_last_and_skips_zero_amounts() {
        let customer = Uuid::now_v7();
        let posting = |amount_minor| Posting {
            code: TransferCode::RepaymentPrincipal,
            debit_account_id: Uuid::now_v7(),
            credit_account_id: Uuid::now_v7(),
            amount_minor,
            customer_id: customer,
            loan_id: None,
        };
        let items = chain(&[posting(5), posting(0), posting(7)], "test");
        assert_eq!(items.len(), 2);
        assert!(items[0].flags.linked);
        assert!(!items[1].flags.linked);
    }
}

/// What settles a loan on `payoff_date` (ledger.proto `PayoffQuote`), in fen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PayoffQuote {
    pub principal_minor: i64,
    pub interest_minor: i64,
    pub penalty_minor: i64,
    pub per_diem_minor: i64,
}

impl PayoffQuote {
    pub fn total_minor(&self) -> i64 {
        self.principal_minor + self.interest_minor + self.penalty_minor
    }
}

/// One instalment's unpaid principal and due date, for the payoff projection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnpaidPrincipal {
    pub due_date: chrono::NaiveDate,
    pub principal_minor: i64,
}

/// The payoff on `payoff_date` (business date .. +30 days): what is owed today plus the
/// interest and penalty that end of day would accrue for each day from the business
/// date up to the day before `payoff_date` (end of day of date d accrues day d, rounded
/// per day, loan.proto), so early repayment pays only the days used. `per_diem` is one
/// more day at `payoff_date`.
#[allow(clippy::too_many_arguments)]
pub fn payoff_quote(
    principal_outstanding_minor: i64,
    interest_owed_minor: i64,
    penalty_owed_minor: i64,
    unpaid: &[UnpaidPrincipal],
    daily_rate: Decimal,
    penalty_rate: Decimal,
    business_date: chrono::NaiveDate,
    payoff_date: chrono::NaiveDate,
) -> Result<PayoffQuote, LedgerError> {
    use microloan_domain::loan::interest_minor;
    let overflow = || LedgerError::Internal("payoff arithmetic overflowed".into());
    let day_accrual = |day: chrono::NaiveDate| -> Result<(i64, i64), LedgerError> {
        let overdue: i64 = unpaid
            .iter()
            .filter(|item| item.due_date < day)
            .map(|item| item.principal_minor)
            .sum();
        Ok((
            interest_minor(principal_outstanding_minor, daily_rate, 1).ok_or_else(overflow)?,
            interest_minor(overdue, penalty_rate, 1).ok_or_else(overflow)?,
        ))
    };
    let mut interest = interest_owed_minor;
    let mut penalty = penalty_owed_minor;
    let mut day = business_date;
    // At most 30 iterations: the payoff date is checked to be within 30 days.
    while day < payoff_date {
        let (day_interest, day_penalty) = day_accrual(day)?;
        interest += day_interest;
        penalty += day_penalty;
        day = day.succ_opt().ok_or_else(overflow)?;
    }
    let (next_interest, next_penalty) = day_accrual(payoff_date)?;
    Ok(PayoffQuote {
        principal_minor: principal_outstanding_minor,
        interest_minor: interest,
        penalty_minor: penalty,
        per_diem_minor: next_interest + next_penalty,
    })
}

#[cfg(test)]
mod payoff_tests {
    use super::*;
    use chrono::NaiveDate;

    fn date(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, day).expect("date")
    }

    #[test]
    fn paying_off_on_the_disbursement_day_costs_the_principal_only() {
        let rate = Decimal::new(5, 4);
        let quote = payoff_quote(
            1_000_000,
            0,
            0,
            &[],
            rate,
            rate * Decimal::new(15, 1),
            date(10),
            date(10),
        )
        .expect("quote");
        assert_eq!(quote.total_minor(), 1_000_000);
        assert_eq!(quote.per_diem_minor, 500);
        // Three days later: three days of 5 CNY.
        let later =
            payoff_quote(1_000_000, 0, 0, &[], rate, rate, date(10), date(13)).expect("quote");
        assert_eq!(later.interest_minor, 1_500);
    }

    #[test]
    fn overdue_principal_adds_penalty_per_day() {
        let rate = Decimal::new(5, 4);
        let penalty_rate = Decimal::new(75, 5);
        let unpaid = [UnpaidPrincipal {
            due_date: date(9),
            principal_minor: 100_000,
        }];
        let quote = payoff_quote(
            400_000,
            300,
            10,
            &unpaid,
            rate,
            penalty_rate,
            date(10),
            date(12),
        )
        .expect("quote");
        // Two days of 200 interest and 75 penalty on top of what is owed today.
        assert_eq!(quote.interest_minor, 300 + 2 * 200);
        assert_eq!(quote.penalty_minor, 10 + 2 * 75);
        assert_eq!(quote.per_diem_minor, 275);
    }
}
