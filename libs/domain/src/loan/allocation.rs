//! Repayment allocation (loan.proto `Repayment`, DESIGN §4), on the business date:
//!   1. overdue instalments (due before the business date), oldest first: penalty,
//!      interest, principal;
//!   2. the current instalment (the earliest unpaid one not yet past due): its interest
//!      accrued so far, then its principal;
//!   3. prepayment of principal, on the remaining instalments from the last backwards.
//!
//! Instalments after the current one have accrued nothing, so step 3 is principal only
//! in practice; it still clears any penalty or interest they hold before their
//! principal, so that the payoff amount always settles the loan whatever the input.

use chrono::NaiveDate;

/// What is still owed on one instalment of a booked loan, in fen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InstallmentOwed {
    pub sequence: u32,
    pub due_date: NaiveDate,
    pub penalty_minor: i64,
    /// Interest accrued on it and not yet paid (nothing for periods not yet begun).
    pub interest_minor: i64,
    pub principal_minor: i64,
}

impl InstallmentOwed {
    fn total_minor(&self) -> i64 {
        self.penalty_minor + self.interest_minor + self.principal_minor
    }
}

/// How much of a repayment went to one instalment (loan.proto `InstallmentAllocation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct InstallmentAllocation {
    pub sequence: u32,
    pub penalty_minor: i64,
    pub interest_minor: i64,
    pub principal_minor: i64,
}

/// A repayment split over the instalments, entries in allocation order.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RepaymentAllocation {
    pub allocations: Vec<InstallmentAllocation>,
    pub penalty_minor: i64,
    pub interest_minor: i64,
    pub principal_minor: i64,
    /// Principal allocated in step 3 (beyond the current instalment).
    pub prepaid_principal_minor: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("a repayment must be positive (got {0} fen)")]
    AmountNotPositive(i64),
    #[error("the repayment exceeds everything owed ({payoff_minor} fen)")]
    ExceedsBalance { payoff_minor: i64 },
    #[error("an instalment owes a negative amount or the total overflows")]
    InvalidBalances,
}

/// Everything owed: what a repayment must be to settle the loan today.
pub fn payoff_amount_minor(owed: &[InstallmentOwed]) -> Result<i64, AllocationError> {
    owed.iter().try_fold(0_i64, |sum, item| {
        let parts = [
            item.penalty_minor,
            item.interest_minor,
            item.principal_minor,
        ];
        if parts.iter().any(|part| *part < 0) {
            return Err(AllocationError::InvalidBalances);
        }
        parts
            .iter()
            .try_fold(sum, |sum, part| sum.checked_add(*part))
            .ok_or(AllocationError::InvalidBalances)
    })
}

/// Splits `amount_minor` over `owed` (the loan's instalments in sequence order) on
/// `business_date`, in the allocation order above.
pub fn allocate_repayment(
    amount_minor: i64,
    owed: &[InstallmentOwed],
    business_date: NaiveDate,
) -> Result<RepaymentAllocation, AllocationError> {
    if amount_minor <= 0 {
        return Err(AllocationError::AmountNotPositive(amount_minor));
    }
    let payoff_minor = payoff_amount_minor(owed)?;
    if amount_minor > payoff_minor {
        return Err(AllocationError::ExceedsBalance { payoff_minor });
    }
    let unpaid = |item: &&InstallmentOwed| item.total_minor() > 0;
    let overdue = owed
        .iter()
        .filter(unpaid)
        .filter(|item| item.due_date < business_date);
    let current_sequence = owed
        .iter()
        .filter(unpaid)
        .find(|item| item.due_date >= business_date)
        .map(|item| item.sequence);
    let current = owed
        .iter()
        .filter(|item| Some(item.sequence) == current_sequence);
    let prepaid = owed
        .iter()
        .rev()
        .filter(unpaid)
        .filter(|item| current_sequence.is_some_and(|current| item.sequence > current));

    let mut left = amount_minor;
    let mut result = RepaymentAllocation::default();
    for (item, is_prepayment) in overdue
        .map(|item| (item, false))
        .chain(current.map(|item| (item, false)))
        .chain(prepaid.map(|item| (item, true)))
    {
        if left == 0 {
            break;
        }
        let mut take = |owed_minor: i64| {
            let taken = owed_minor.min(left);
            left -= taken;
            taken
        };
        let allocation = InstallmentAllocation {
            sequence: item.sequence,
            penalty_minor: take(item.penalty_minor),
            interest_minor: take(item.interest_minor),
            principal_minor: take(item.principal_minor),
        };
        result.penalty_minor += allocation.penalty_minor;
        result.interest_minor += allocation.interest_minor;
        result.principal_minor += allocation.principal_minor;
        if is_prepayment {
            result.prepaid_principal_minor += allocation.principal_minor;
        }
        result.allocations.push(allocation);
    }
    debug_assert_eq!(left, 0, "the payoff bound guarantees the amount is placed");
    debug_assert_eq!(
        result.penalty_minor + result.interest_minor + result.principal_minor,
        amount_minor
    );
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, month, day).expect("date")
    }

    fn owed(
        sequence: u32,
        month: u32,
        penalty: i64,
        interest: i64,
        principal: i64,
    ) -> InstallmentOwed {
        InstallmentOwed {
            sequence,
            due_date: date(month, 15),
            penalty_minor: penalty,
            interest_minor: interest,
            principal_minor: principal,
        }
    }

    /// Instalment 1 overdue, 2 current (interest accrued so far), 3-4 in the future.
    fn book() -> Vec<InstallmentOwed> {
        vec![
            owed(1, 2, 30, 500, 10_000),
            owed(2, 3, 0, 200, 10_000),
            owed(3, 4, 0, 0, 10_000),
            owed(4, 5, 0, 0, 10_000),
        ]
    }

    #[test]
    fn overdue_first_penalty_then_interest_then_principal() {
        let result = allocate_repayment(400, &book(), date(3, 1)).expect("allocated");
        assert_eq!(
            result.allocations,
            [InstallmentAllocation {
                sequence: 1,
                penalty_minor: 30,
                interest_minor: 370,
                principal_minor: 0
            }]
        );
    }

    #[test]
    fn then_the_current_instalment_then_prepayment_from_the_last_backwards() {
        let amount = 10_530 + 10_200 + 12_000;
        let result = allocate_repayment(amount, &book(), date(3, 1)).expect("allocated");
        let sequences: Vec<u32> = result
            .allocations
            .iter()
            .map(|item| item.sequence)
            .collect();
        assert_eq!(sequences, [1, 2, 4, 3]);
        assert_eq!(result.allocations[2].principal_minor, 10_000);
        assert_eq!(result.allocations[3].principal_minor, 2_000);
        assert_eq!(result.prepaid_principal_minor, 12_000);
        assert_eq!(result.penalty_minor, 30);
        assert_eq!(result.interest_minor, 700);
        assert_eq!(result.principal_minor, 32_000);
    }

    #[test]
    fn an_instalment_due_today_is_current_not_overdue() {
        let result = allocate_repayment(100, &book(), date(2, 15)).expect("allocated");
        // Instalment 1 is due today: current, so its interest (not penalty first) is paid.
        assert_eq!(result.allocations[0].sequence, 1);
        assert_eq!(result.allocations[0].penalty_minor, 30);
        assert_eq!(result.prepaid_principal_minor, 0);
    }

    #[test]
    fn the_payoff_settles_everything_and_a_fen_more_is_refused() {
        let payoff = payoff_amount_minor(&book()).expect("payoff");
        assert_eq!(payoff, 40_730);
        let result = allocate_repayment(payoff, &book(), date(3, 1)).expect("allocated");
        assert_eq!(result.principal_minor, 40_000);
        assert_eq!(
            allocate_repayment(payoff + 1, &book(), date(3, 1)),
            Err(AllocationError::ExceedsBalance {
                payoff_minor: payoff
            })
        );
        for bad in [0, -1, i64::MIN] {
            assert_eq!(
                allocate_repayment(bad, &book(), date(3, 1)),
                Err(AllocationError::AmountNotPositive(bad))
            );
        }
        let mut negative = book();
        negative[2].principal_minor = -1;
        assert_eq!(
            payoff_amount_minor(&negative),
            Err(AllocationError::InvalidBalances)
        );
        let overflowing = [owed(1, 2, i64::MAX, 1, 0)];
        assert_eq!(
            payoff_amount_minor(&overflowing),
            Err(AllocationError::InvalidBalances)
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn an_allocation_places_the_whole_amount_and_never_more_than_owed(
            parts in proptest::collection::vec((0_i64..500, 0_i64..2_000, 0_i64..50_000), 1..12),
            business_month in 1_u32..=12,
            amount_share in 1_u32..=1_000,
        ) {
            let owed: Vec<InstallmentOwed> = parts
                .iter()
                .enumerate()
                .map(|(index, (penalty, interest, principal))| {
                    let sequence = u32::try_from(index).expect("small") + 1;
                    InstallmentOwed {
                        sequence,
                        due_date: date(1, 10) + chrono::Months::new(sequence),
                        penalty_minor: *penalty,
                        interest_minor: *interest,
                        principal_minor: *principal,
                    }
                })
                .collect();
            let payoff = payoff_amount_minor(&owed).expect("payoff");
            prop_assume!(payoff > 0);
            let amount = (payoff * i64::from(amount_share) / 1_000).max(1);
            let result = allocate_repayment(amount, &owed, date(business_month, 20)).expect("allocated");
            prop_assert_eq!(result.penalty_minor + result.interest_minor + result.principal_minor, amount);
            let mut seen = std::collections::HashSet::new();
            for allocation in &result.allocations {
                prop_assert!(seen.insert(allocation.sequence), "each instalment once");
                let item = owed[allocation.sequence as usize - 1];
                prop_assert!(allocation.penalty_minor <= item.penalty_minor);
                prop_assert!(allocation.interest_minor <= item.interest_minor);
                prop_assert!(allocation.principal_minor <= item.principal_minor);
            }
            prop_assert!(result.prepaid_principal_minor <= result.principal_minor);
        }
    }
}
