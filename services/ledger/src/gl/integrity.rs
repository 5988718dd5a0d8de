//! `VerifyIntegrity`: the invariants, the violations they report, and how a report is
//! cut to `max_violations`. The checks themselves are queries in `store/integrity.rs`,
//! one per invariant, listed in `store::integrity::Check::ALL`; the loan book adds its
//! own (LOAN_BALANCE_MISMATCH, CREDIT_LINE_MISMATCH) there.

use chrono::{DateTime, NaiveDate, Utc};
use uuid::Uuid;

/// `IntegrityViolationKind`, with the proto's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViolationKind {
    DebitsCreditsMismatch = 1,
    AccountBalanceMismatch = 2,
    BalanceConstraintViolated = 3,
    PendingTransferInconsistent = 4,
    TransferAccountInvalid = 5,
    LoanBalanceMismatch = 6,
    CreditLineMismatch = 7,
}

/// One broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub kind: ViolationKind,
    pub account_id: Option<Uuid>,
    pub transfer_id: Option<Uuid>,
    pub loan_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub expected: Option<i64>,
    pub actual: Option<i64>,
    pub detail: String,
}

impl Violation {
    pub fn new(kind: ViolationKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            account_id: None,
            transfer_id: None,
            loan_id: None,
            customer_id: None,
            expected: None,
            actual: None,
            detail: detail.into(),
        }
    }

    pub fn amounts(self, expected: i64, actual: i64) -> Self {
        Self {
            expected: Some(expected),
            actual: Some(actual),
            ..self
        }
    }
}

/// Sums of the four balances over a scope (fen).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub debits_posted: i64,
    pub credits_posted: i64,
    pub debits_pending: i64,
    pub credits_pending: i64,
}

impl Totals {
    /// DEBITS_CREDITS_MISMATCH for posted and for pending (whole ledger only).
    pub fn mismatches(self) -> Vec<Violation> {
        let mut violations = Vec::new();
        if self.debits_posted != self.credits_posted {
            violations.push(
                Violation::new(
                    ViolationKind::DebitsCreditsMismatch,
                    "sum of debits posted != sum of credits posted",
                )
                .amounts(self.credits_posted, self.debits_posted),
            );
        }
        if self.debits_pending != self.credits_pending {
            violations.push(
                Violation::new(
                    ViolationKind::DebitsCreditsMismatch,
                    "sum of debits pending != sum of credits pending",
                )
                .amounts(self.credits_pending, self.debits_pending),
            );
        }
        violations
    }
}

/// What `VerifyIntegrity` answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub accounts_checked: i64,
    pub transfers_checked: i64,
    pub loans_checked: i64,
    pub totals: Totals,
    pub violations: Vec<Violation>,
    pub violations_truncated: bool,
    pub business_date: NaiveDate,
    pub check_time: DateTime<Utc>,
}

/// Keeps the first `max` violations and says whether any were dropped.
pub fn truncate(mut violations: Vec<Violation>, max: usize) -> (Vec<Violation>, bool) {
    let truncated = violations.len() > max;
    violations.truncate(max);
    (violations, truncated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balanced_totals_are_no_violation() {
        let totals = Totals {
            debits_posted: 5,
            credits_posted: 5,
            debits_pending: 1,
            credits_pending: 1,
        };
        assert!(totals.mismatches().is_empty());
        let broken = Totals {
            debits_posted: 6,
            ..totals
        };
        let violations = broken.mismatches();
        assert_eq!(violations.len(), 1);
        assert_eq!(
            (violations[0].expected, violations[0].actual),
            (Some(5), Some(6))
        );
    }

    #[test]
    fn truncation_keeps_the_first_and_says_so() {
        let violation = Violation::new(ViolationKind::AccountBalanceMismatch, "x");
        let (kept, truncated) = truncate(vec![violation.clone(); 3], 2);
        assert_eq!((kept.len(), truncated), (2, true));
        let (kept, truncated) = truncate(vec![violation; 2], 2);
        assert_eq!((kept.len(), truncated), (2, false));
    }
}
