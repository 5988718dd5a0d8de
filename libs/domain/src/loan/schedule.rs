//! Repayment schedules (loan.proto `RepaymentMethod`, `Installment`): the plan a quote
//! shows and a booked loan starts from.

use chrono::NaiveDate;
use rust_decimal::Decimal;

use super::{TERM_MONTHS_MAX, dates, interest_minor, round_half_even_fen};
use crate::DailyRate;

/// How principal is spread over the instalments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum RepaymentMethod {
    /// 等额本金: equal principal, interest on the remaining principal. The default.
    #[default]
    EqualPrincipal,
    /// 等额本息: a level payment (annuity); the last instalment absorbs the rounding.
    EqualInstallment,
}

/// A loan term the product offers, in months.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TermMonths(u32);

impl TermMonths {
    /// A term from `offered` (the configured set, default 5, 10, 20).
    pub fn parse(months: i64, offered: &[u32]) -> Result<Self, ScheduleError> {
        u32::try_from(months)
            .ok()
            .filter(|months| offered.contains(months) && (1..=TERM_MONTHS_MAX).contains(months))
            .map(Self)
            .ok_or_else(|| ScheduleError::TermNotOffered {
                months,
                offered: offered.to_vec(),
            })
    }

    pub fn months(self) -> u32 {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("term {months} months is not offered (offered: {offered:?})")]
    TermNotOffered { months: i64, offered: Vec<u32> },
    #[error("principal must be positive (got {0} fen)")]
    PrincipalNotPositive(i64),
    #[error("the schedule overflows 64-bit fen or the calendar")]
    Overflow,
}

/// One planned instalment (loan.proto `Installment` fields 1-7), amounts in fen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedInstallment {
    pub sequence: u32,
    pub due_date: NaiveDate,
    pub principal_minor: i64,
    pub interest_minor: i64,
    pub total_minor: i64,
    /// Principal outstanding after this instalment is paid as planned.
    pub remaining_principal_minor: i64,
    pub period_days: u32,
}

/// A full schedule; built only by [`build_schedule`], so its invariants hold: the
/// principal parts sum to the loan's principal and the last leaves nothing remaining.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    installments: Vec<PlannedInstallment>,
    principal_minor: i64,
}

impl Schedule {
    pub fn installments(&self) -> &[PlannedInstallment] {
        &self.installments
    }

    pub fn total_principal_minor(&self) -> i64 {
        self.principal_minor
    }

    pub fn total_interest_minor(&self) -> i64 {
        self.installments
            .iter()
            .map(|item| item.interest_minor)
            .sum()
    }

    pub fn total_repayable_minor(&self) -> i64 {
        self.total_principal_minor() + self.total_interest_minor()
    }

    pub fn first_due_date(&self) -> NaiveDate {
        self.installments[0].due_date
    }

    pub fn maturity_date(&self) -> NaiveDate {
        self.installments[self.installments.len() - 1].due_date
    }
}

/// The schedule of `principal_minor` fen disbursed on `disbursement_date` at
/// `daily_rate` over `term`, by `method` (loan.proto `RepaymentMethod`).
pub fn build_schedule(
    principal_minor: i64,
    daily_rate: DailyRate,
    term: TermMonths,
    method: RepaymentMethod,
    disbursement_date: NaiveDate,
) -> Result<Schedule, ScheduleError> {
    if principal_minor <= 0 {
        return Err(ScheduleError::PrincipalNotPositive(principal_minor));
    }
    let rate = daily_rate.as_decimal();
    let months = term.months();
    let level_principal =
        round_half_even_fen(Decimal::from(principal_minor) / Decimal::from(months))
            .ok_or(ScheduleError::Overflow)?;
    let level_payment = match method {
        RepaymentMethod::EqualPrincipal => None,
        RepaymentMethod::EqualInstallment => Some(
            annuity_payment_minor(principal_minor, rate, months).ok_or(ScheduleError::Overflow)?,
        ),
    };

    let mut installments = Vec::with_capacity(months as usize);
    let mut remaining = principal_minor;
    let mut period_start = disbursement_date;
    for sequence in 1..=months {
        let due_date =
            dates::due_date(disbursement_date, sequence).ok_or(ScheduleError::Overflow)?;
        let period_days = dates::period_days(period_start, due_date);
        let interest =
            interest_minor(remaining, rate, period_days).ok_or(ScheduleError::Overflow)?;
        let principal = if sequence == months {
            remaining
        } else {
            match level_payment {
                None => level_principal,
                Some(payment) => payment - interest,
            }
            .clamp(0, remaining)
        };
        remaining -= principal;
        installments.push(PlannedInstallment {
            sequence,
            due_date,
            principal_minor: principal,
            interest_minor: interest,
            total_minor: principal
                .checked_add(interest)
                .ok_or(ScheduleError::Overflow)?,
            remaining_principal_minor: remaining,
            period_days,
        });
        period_start = due_date;
    }
    debug_assert_eq!(remaining, 0);
    debug_assert_eq!(
        installments
            .iter()
            .map(|item| item.principal_minor)
            .sum::<i64>(),
        principal_minor
    );
    Ok(Schedule {
        installments,
        principal_minor,
    })
}

/// A = P x r / (1 - (1 + r)^-n), r = daily_rate x 365 / 12, rounded half-even.
fn annuity_payment_minor(principal_minor: i64, daily_rate: Decimal, months: u32) -> Option<i64> {
    let monthly_rate = daily_rate.checked_mul(Decimal::from(365))? / Decimal::from(12);
    let mut growth = Decimal::ONE;
    for _ in 0..months {
        growth = growth.checked_mul(Decimal::ONE + monthly_rate)?;
    }
    let discount = Decimal::ONE - Decimal::ONE / growth;
    if discount.is_zero() {
        return round_half_even_fen(Decimal::from(principal_minor) / Decimal::from(months));
    }
    round_half_even_fen(Decimal::from(principal_minor).checked_mul(monthly_rate)? / discount)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OFFERED: [u32; 3] = [5, 10, 20];

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).expect("date")
    }

    fn rate(text: &str) -> DailyRate {
        DailyRate::parse(text).expect("rate")
    }

    fn term(months: i64) -> TermMonths {
        TermMonths::parse(months, &OFFERED).expect("offered term")
    }

    #[test]
    fn only_offered_terms_parse() {
        assert_eq!(term(10).months(), 10);
        for bad in [0, -5, 7, 60, i64::MAX] {
            assert!(TermMonths::parse(bad, &OFFERED).is_err(), "{bad}");
        }
    }

    #[test]
    fn equal_principal_splits_evenly_and_the_last_takes_the_remainder() {
        // 1,000.01 CNY over 5 months: 200.00 x 4 and 200.01.
        let schedule = build_schedule(
            100_001,
            rate("0.0005"),
            term(5),
            RepaymentMethod::EqualPrincipal,
            date(2026, 1, 15),
        )
        .expect("schedule");
        let principal: Vec<i64> = schedule
            .installments()
            .iter()
            .map(|item| item.principal_minor)
            .collect();
        assert_eq!(principal, [20_000, 20_000, 20_000, 20_000, 20_001]);
        // First period Jan 15 -> Feb 15 is 31 days on 1,000.01 CNY: 15.500155 -> 15.50.
        let first = &schedule.installments()[0];
        assert_eq!(first.period_days, 31);
        assert_eq!(first.interest_minor, 1_550);
        assert_eq!(first.total_minor, 21_550);
        assert_eq!(first.remaining_principal_minor, 80_001);
        assert_eq!(schedule.first_due_date(), date(2026, 2, 15));
        assert_eq!(schedule.maturity_date(), date(2026, 6, 15));
        assert_eq!(schedule.installments()[4].remaining_principal_minor, 0);
    }

    #[test]
    fn a_longer_period_can_cost_more_than_the_one_before_it() {
        // Disbursed Jan 28: Feb 28 (31 days), Mar 28 (28 days), Apr 28 (31 days). Over
        // 20 months the principal falls by 2,000 CNY a month while the 31-day period
        // adds 3 days of interest on 36,000 CNY (54 CNY): instalment 3 costs more than 2.
        let schedule = build_schedule(
            4_000_000,
            rate("0.0005"),
            term(20),
            RepaymentMethod::EqualPrincipal,
            date(2026, 1, 28),
        )
        .expect("schedule");
        let totals: Vec<i64> = schedule
            .installments()
            .iter()
            .map(|item| item.total_minor)
            .collect();
        let days: Vec<u32> = schedule
            .installments()
            .iter()
            .map(|item| item.period_days)
            .collect();
        assert_eq!(days[..5], [31, 28, 31, 30, 31]);
        assert_eq!(totals[1], 200_000 + 53_200);
        assert_eq!(totals[2], 200_000 + 55_800);
    }

    #[test]
    fn equal_instalments_are_level_until_the_last() {
        let schedule = build_schedule(
            1_000_000,
            rate("0.0005"),
            term(10),
            RepaymentMethod::EqualInstallment,
            date(2026, 3, 10),
        )
        .expect("schedule");
        let items = schedule.installments();
        // r = 0.0005 x 365 / 12 = 0.015208333...; A = 10,000 x r / (1 - (1+r)^-10)
        // = 152.083 / 0.140101 = 1,085.54 CNY.
        let level = items[0].total_minor;
        assert_eq!(level, 108_554);
        assert!(items[..9].iter().all(|item| item.total_minor == level));
        assert_eq!(items[9].remaining_principal_minor, 0);
        // The last absorbs rounding and day counts (306 actual days here against
        // 10 x 365 / 12 = 304.2 assumed): within 1% of the level payment.
        assert!(
            (items[9].total_minor - level).abs() < level / 100,
            "{}",
            items[9].total_minor
        );
    }

    #[test]
    fn a_non_positive_principal_has_no_schedule() {
        for principal in [0, -1, i64::MIN] {
            assert_eq!(
                build_schedule(
                    principal,
                    rate("0.0005"),
                    term(5),
                    RepaymentMethod::EqualPrincipal,
                    date(2026, 1, 1)
                ),
                Err(ScheduleError::PrincipalNotPositive(principal))
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn every_schedule_repays_exactly_the_principal(
            principal in 10_000_i64..=4_000_000,
            rate_ten_thousandths in 2_u32..=5,
            term_index in 0_usize..3,
            equal_installment in any::<bool>(),
            day_offset in 0_i64..1_500,
        ) {
            let daily_rate = DailyRate::from_decimal(Decimal::new(i64::from(rate_ten_thousandths), 4)).expect("rate");
            let method = if equal_installment { RepaymentMethod::EqualInstallment } else { RepaymentMethod::EqualPrincipal };
            let disbursed = date(2026, 1, 1) + chrono::Duration::days(day_offset);
            let schedule = build_schedule(principal, daily_rate, term(i64::from(OFFERED[term_index])), method, disbursed).expect("schedule");
            let items = schedule.installments();
            prop_assert_eq!(items.len() as u32, OFFERED[term_index]);
            prop_assert_eq!(items.iter().map(|item| item.principal_minor).sum::<i64>(), principal);
            prop_assert_eq!(items.last().map(|item| item.remaining_principal_minor), Some(0));
            let mut remaining = principal;
            let mut previous_due = disbursed;
            for item in items {
                prop_assert!(item.principal_minor >= 0);
                prop_assert!(item.interest_minor > 0);
                prop_assert!((28..=31).contains(&item.period_days));
                prop_assert!(item.due_date > previous_due);
                prop_assert_eq!(item.total_minor, item.principal_minor + item.interest_minor);
                // Interest is on the principal remaining before the instalment.
                prop_assert_eq!(Some(item.interest_minor), interest_minor(remaining, daily_rate.as_decimal(), item.period_days));
                remaining -= item.principal_minor;
                prop_assert_eq!(item.remaining_principal_minor, remaining);
                previous_due = item.due_date;
            }
            prop_assert_eq!(schedule.total_repayable_minor(), items.iter().map(|item| item.total_minor).sum::<i64>());
        }
    }
}
