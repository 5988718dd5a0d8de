//! APR (loan.proto header): nominal, following PBOC announcement [2021] No. 3:
//! APR = 12 x r, r the monthly IRR of the schedule (each period one month), rounded
//! half-even to 4 places. A credit line's headline APR is daily_rate x 365 exactly.

use rust_decimal::{Decimal, RoundingStrategy};

use super::Schedule;
use crate::DailyRate;

/// Bisection steps: the bracket [0, 1] halves each step, so 2^-64 of a month's rate is
/// far below the 4 decimal places the APR is rounded to.
const IRR_BISECTION_STEPS: u32 = 64;
const APR_DECIMAL_PLACES: u32 = 4;

/// The APR of `schedule` (nominal: 12 x the monthly IRR), rounded half-even to 4 places.
pub fn apr_of_schedule(schedule: &Schedule) -> Decimal {
    let principal = Decimal::from(schedule.total_principal_minor());
    let totals: Vec<Decimal> = schedule
        .installments()
        .iter()
        .map(|item| Decimal::from(item.total_minor))
        .collect();
    let monthly = monthly_irr(principal, &totals);
    (monthly * Decimal::from(12))
        .round_dp_with_strategy(APR_DECIMAL_PLACES, RoundingStrategy::MidpointNearestEven)
        .normalize()
}

/// A line's headline APR: daily_rate x 365, exactly.
pub fn headline_apr(daily_rate: DailyRate) -> Decimal {
    (daily_rate.as_decimal() * Decimal::from(365)).normalize()
}

/// The r in [0, 1] with principal = sum of totals[k] / (1 + r)^(k+1). The present value
/// falls as r rises, so bisection converges; totals summing to the principal give 0.
fn monthly_irr(principal: Decimal, totals: &[Decimal]) -> Decimal {
    let present_value = |rate: Decimal| {
        let factor = Decimal::ONE + rate;
        let mut discount = Decimal::ONE;
        let mut sum = Decimal::ZERO;
        for total in totals {
            discount /= factor;
            sum += *total * discount;
        }
        sum
    };
    let (mut low, mut high) = (Decimal::ZERO, Decimal::ONE);
    if present_value(low) <= principal {
        return Decimal::ZERO;
    }
    for _ in 0..IRR_BISECTION_STEPS {
        let middle = (low + high) / Decimal::TWO;
        if present_value(middle) > principal {
            low = middle;
        } else {
            high = middle;
        }
    }
    (low + high) / Decimal::TWO
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loan::{RepaymentMethod, TermMonths, build_schedule};
    use chrono::NaiveDate;
    use std::str::FromStr;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str(text).expect("decimal")
    }

    fn schedule(rate: &str, months: i64, method: RepaymentMethod) -> Schedule {
        build_schedule(
            1_000_000,
            DailyRate::parse(rate).expect("rate"),
            TermMonths::parse(months, &[5, 10, 20]).expect("term"),
            method,
            NaiveDate::from_ymd_opt(2026, 3, 10).expect("date"),
        )
        .expect("schedule")
    }

    #[test]
    fn the_headline_apr_is_the_daily_rate_times_365() {
        assert_eq!(
            headline_apr(DailyRate::parse("0.0005").expect("rate")),
            dec("0.1825")
        );
        assert_eq!(
            headline_apr(DailyRate::parse("0.0002").expect("rate")),
            dec("0.073")
        );
    }

    #[test]
    fn a_schedules_apr_is_close_to_the_headline_and_never_above_the_cap() {
        for rate in ["0.0002", "0.0003", "0.0005"] {
            for months in [5, 10, 20] {
                for method in [
                    RepaymentMethod::EqualPrincipal,
                    RepaymentMethod::EqualInstallment,
                ] {
                    let apr = apr_of_schedule(&schedule(rate, months, method));
                    let headline = headline_apr(DailyRate::parse(rate).expect("rate"));
                    assert!(
                        (apr - headline).abs() <= dec("0.005"),
                        "{rate} {months} {method:?}: {apr} vs {headline}"
                    );
                    assert!(apr <= dec("0.24"));
                    assert!(apr.scale() <= 4);
                }
            }
        }
    }

    #[test]
    fn the_irr_of_a_known_annuity_is_its_rate() {
        // 1,000 repaid as 12 x 88.85 is the 1%-a-month annuity: APR 12%.
        let totals = vec![dec("88.84879"); 12];
        let monthly = monthly_irr(dec("1000"), &totals);
        assert!(
            (monthly - dec("0.01")).abs() < dec("0.0000001"),
            "{monthly}"
        );
        assert_eq!(
            monthly_irr(dec("100"), &[dec("50"), dec("50")]),
            Decimal::ZERO
        );
    }
}
