//! Behaviour features from a customer's monthly income and spend totals, pure.

use chrono::{Datelike, NaiveDate};
use microloan_proto::scoring::v1::BehaviourCategory;

/// Months of history the behaviour features look at, ending with the latest active one.
pub const WINDOW_MONTHS: i32 = 12;

/// The risky spend categories (scoring.proto `BehaviourCategory`).
pub fn is_risky(category: BehaviourCategory) -> bool {
    matches!(
        category,
        BehaviourCategory::Gambling
            | BehaviourCategory::Lottery
            | BehaviourCategory::Crypto
            | BehaviourCategory::OtherLender
            | BehaviourCategory::CashOut
    )
}

/// One month's totals (fen).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthTotals {
    /// First day of the month (Asia/Shanghai).
    pub month: NaiveDate,
    pub income_fen: i64,
    pub spend_fen: i64,
    pub risky_spend_fen: i64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Behaviour {
    /// Mean monthly income over the window (CNY).
    pub income_monthly_mean: Option<f64>,
    /// 1 − min(1, coefficient of variation of monthly income): 1 = the same every month.
    pub income_stability: Option<f64>,
    /// Coefficient of variation of monthly spend.
    pub spend_volatility: Option<f64>,
    /// Risky spend / all spend over the window.
    pub risky_spend_share: Option<f64>,
    /// Distinct lenders repaid (OTHER_LENDER counterparties), all time.
    pub distinct_lenders: f64,
}

fn month_number(month: NaiveDate) -> i32 {
    month.year() * 12 + month.month0() as i32
}

/// The window is the [`WINDOW_MONTHS`] calendar months ending with the latest month that
/// has any event, starting no earlier than the first such month; months in it without
/// events count as zero. Means and variations need two months or more and a non-zero mean.
pub fn behaviour_features(months: &[MonthTotals], distinct_lenders: u64) -> Behaviour {
    let Some(last) = months.iter().map(|totals| month_number(totals.month)).max() else {
        return Behaviour {
            distinct_lenders: distinct_lenders as f64,
            ..Behaviour::default()
        };
    };
    let first = months
        .iter()
        .map(|totals| month_number(totals.month))
        .min()
        .unwrap_or(last)
        .max(last - WINDOW_MONTHS + 1);
    let span = usize::try_from(last - first + 1).unwrap_or(1);
    let mut income = vec![0.0; span];
    let mut spend = vec![0.0; span];
    let mut risky = 0.0;
    for totals in months {
        let number = month_number(totals.month);
        if number < first {
            continue;
        }
        let index = usize::try_from(number - first).unwrap_or(0);
        income[index] += totals.income_fen as f64 / 100.0;
        spend[index] += totals.spend_fen as f64 / 100.0;
        risky += totals.risky_spend_fen as f64 / 100.0;
    }
    let spend_total: f64 = spend.iter().sum();
    Behaviour {
        income_monthly_mean: Some(mean(&income)),
        income_stability: coefficient_of_variation(&income).map(|cv| 1.0 - cv.min(1.0)),
        spend_volatility: coefficient_of_variation(&spend),
        risky_spend_share: (spend_total > 0.0).then(|| risky / spend_total),
        distinct_lenders: distinct_lenders as f64,
    }
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// Population standard deviation over the mean; `None` below two values or at mean 0.
pub fn coefficient_of_variation(values: &[f64]) -> Option<f64> {
    let average = mean(values);
    if values.len() < 2 || average <= 0.0 {
        return None;
    }
    let variance = values
        .iter()
        .map(|value| (value - average).powi(2))
        .sum::<f64>()
        / values.len() as f64;
    Some(variance.sqrt() / average)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn month(year: i32, month: u32, income: i64, spend: i64, risky: i64) -> MonthTotals {
        MonthTotals {
            month: NaiveDate::from_ymd_opt(year, month, 1).expect("date"),
            income_fen: income,
            spend_fen: spend,
            risky_spend_fen: risky,
        }
    }

    /// Income 10,000 and 6,000 CNY in Jan and Mar, nothing in Feb: incomes [10000, 0,
    /// 6000], mean 5333.33, population sd = sqrt(((4666.67)² + (5333.33)² + (666.67)²)/3)
    /// = 4109.61, CV 0.7706, stability 0.2294. Spend [2000, 1000, 3000] CNY: mean 2000,
    /// sd 816.50, CV 0.4082. Risky 600 of 6000 = 0.1.
    #[test]
    fn income_stability_spend_volatility_and_risky_share_by_hand() {
        let features = behaviour_features(
            &[
                month(2026, 1, 1_000_000, 200_000, 50_000),
                month(2026, 2, 0, 100_000, 0),
                month(2026, 3, 600_000, 300_000, 10_000),
            ],
            2,
        );
        let close = |got: Option<f64>, want: f64| {
            let got = got.expect("defined");
            assert!((got - want).abs() < 1e-4, "{got} vs {want}");
        };
        close(features.income_monthly_mean, 5333.3333);
        close(features.income_stability, 1.0 - 4109.6093 / 5333.3333);
        close(features.spend_volatility, 816.4966 / 2000.0);
        close(features.risky_spend_share, 0.1);
        assert_eq!(features.distinct_lenders, 2.0);
    }

    #[test]
    fn the_window_is_twelve_months_ending_with_the_latest() {
        // A month 13 months before the latest falls out; the gap months count as zero.
        let features = behaviour_features(
            &[
                month(2025, 1, 9_999_900, 0, 0),
                month(2026, 2, 120_000, 0, 0),
            ],
            0,
        );
        // Window Mar 2025 .. Feb 2026: eleven empty months and 1,200 CNY, mean 100;
        // CV = sqrt((11·100² + 1100²)/12)/100 = 3.32, so stability is 0.
        assert_eq!(features.income_monthly_mean, Some(100.0));
        assert_eq!(features.income_stability, Some(0.0));
        assert_eq!(features.risky_spend_share, None);
        // Two months in a row, the window starts at the first.
        let features = behaviour_features(
            &[month(2026, 1, 100_000, 0, 0), month(2026, 2, 100_000, 0, 0)],
            0,
        );
        assert_eq!(features.income_monthly_mean, Some(1000.0));
        assert_eq!(features.income_stability, Some(1.0));
    }

    #[test]
    fn no_behaviour_is_missing_but_lenders_are_counted() {
        let features = behaviour_features(&[], 0);
        assert_eq!(features, Behaviour::default());
        assert!(is_risky(BehaviourCategory::CashOut));
        assert!(!is_risky(BehaviourCategory::Groceries));
    }
}
