//! The loan product's arithmetic (DESIGN §4, loan.proto header): due dates, schedules,
//! interest, APR and repayment allocation. Pure functions on integer fen and exact
//! decimals, so account's `QuoteLoan` shows exactly what the ledger's `Disburse` books.
//!
//! Rounding to the fen happens at the named points only, half-even
//! ([`round_half_even_fen`]): the daily accrual and each instalment's interest and
//! principal split.

mod allocation;
mod apr;
mod dates;
mod schedule;

pub use allocation::{
    AllocationError, InstallmentAllocation, InstallmentOwed, RepaymentAllocation,
    allocate_repayment, payoff_amount_minor,
};
pub use apr::{apr_of_schedule, headline_apr};
pub use dates::{due_date, due_day, period_days};
pub use schedule::{
    PlannedInstallment, RepaymentMethod, Schedule, ScheduleError, TermMonths, build_schedule,
};

use rust_decimal::{Decimal, RoundingStrategy};

/// Longest term any configuration may offer; bounds every per-instalment loop.
pub const TERM_MONTHS_MAX: u32 = 60;

/// `value` rounded half-even (banker's rounding) to a whole number of fen.
/// `None` when the result does not fit in `i64`.
pub fn round_half_even_fen(value: Decimal) -> Option<i64> {
    let rounded = value.round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven);
    i64::try_from(rounded).ok()
}

/// Interest on `principal_minor` fen at `daily_rate` for `days` days, rounded half-even
/// to the fen: one day is the daily accrual, a period's days an instalment's interest.
/// `None` on overflow (impossible for any principal the product allows).
pub fn interest_minor(principal_minor: i64, daily_rate: Decimal, days: u32) -> Option<i64> {
    let exact = Decimal::from(principal_minor)
        .checked_mul(daily_rate)?
        .checked_mul(Decimal::from(days))?;
    round_half_even_fen(exact)
}

/// The penalty daily rate: `daily_rate` x `multiplier` (default 1.5, DESIGN §4).
pub fn penalty_daily_rate(daily_rate: Decimal, multiplier: Decimal) -> Decimal {
    (daily_rate * multiplier).normalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).expect("decimal")
    }

    #[test]
    fn rounding_to_the_fen_is_half_even() {
        assert_eq!(round_half_even_fen(dec("2.5")), Some(2));
        assert_eq!(round_half_even_fen(dec("3.5")), Some(4));
        assert_eq!(round_half_even_fen(dec("2.5000001")), Some(3));
        assert_eq!(round_half_even_fen(dec("-2.5")), Some(-2));
        assert_eq!(round_half_even_fen(Decimal::MAX), None);
    }

    #[test]
    fn interest_is_principal_times_rate_times_days_rounded_once() {
        // 10,000 CNY at 0.05% a day: 5 CNY a day, 150 CNY over 30 days.
        assert_eq!(interest_minor(1_000_000, dec("0.0005"), 1), Some(500));
        assert_eq!(interest_minor(1_000_000, dec("0.0005"), 30), Some(15_000));
        // 33.33 CNY at 0.03%: 0.9999 fen a day rounds to 1; 30 days 29.997 rounds to 30.
        assert_eq!(interest_minor(3_333, dec("0.0003"), 1), Some(1));
        assert_eq!(interest_minor(3_333, dec("0.0003"), 30), Some(30));
        // 0.5 fen exactly rounds to the even 0.
        assert_eq!(interest_minor(1_000, dec("0.0005"), 1), Some(0));
        assert_eq!(interest_minor(0, dec("0.0005"), 31), Some(0));
    }

    #[test]
    fn the_penalty_rate_is_one_and_a_half_times_the_daily_rate() {
        assert_eq!(
            penalty_daily_rate(dec("0.0005"), dec("1.5")).to_string(),
            "0.00075"
        );
    }
}
