//! Due dates (loan.proto header): instalment k is due on the due day of the k-th
//! calendar month after the disbursement month; the due day is the disbursement day of
//! month with 29, 30 and 31 mapped to 28. No first-period roll, so every period is
//! 28 to 31 days long.

use chrono::{Datelike, Months, NaiveDate};

/// The monthly due day of a loan disbursed on `disbursement_date`: its day of month,
/// 29-31 mapped to 28 so every month has it.
pub fn due_day(disbursement_date: NaiveDate) -> u32 {
    disbursement_date.day().min(28)
}

/// Due date of instalment `sequence` (1-based). `None` past the calendar's end.
pub fn due_date(disbursement_date: NaiveDate, sequence: u32) -> Option<NaiveDate> {
    let first_of_month = disbursement_date.with_day(1)?;
    first_of_month
        .checked_add_months(Months::new(sequence))?
        .with_day(due_day(disbursement_date))
}

/// Days from `start` (exclusive) to `end` (inclusive): the interest days of a period.
pub fn period_days(start: NaiveDate, end: NaiveDate) -> u32 {
    u32::try_from((end - start).num_days()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).expect("date")
    }

    #[test]
    fn days_29_to_31_map_to_the_28th() {
        assert_eq!(due_day(date(2026, 1, 15)), 15);
        assert_eq!(due_day(date(2026, 1, 28)), 28);
        assert_eq!(due_day(date(2026, 1, 29)), 28);
        assert_eq!(due_day(date(2026, 1, 31)), 28);
    }

    #[test]
    fn instalments_fall_due_monthly_from_the_month_after_disbursement() {
        let disbursed = date(2026, 11, 30);
        assert_eq!(due_date(disbursed, 1), Some(date(2026, 12, 28)));
        assert_eq!(due_date(disbursed, 2), Some(date(2027, 1, 28)));
        assert_eq!(due_date(disbursed, 3), Some(date(2027, 2, 28)));
        assert_eq!(period_days(disbursed, date(2026, 12, 28)), 28);
        let mid_month = date(2028, 1, 15);
        assert_eq!(due_date(mid_month, 1), Some(date(2028, 2, 15)));
        assert_eq!(due_date(mid_month, 20), Some(date(2029, 9, 15)));
    }

    #[test]
    fn every_period_is_28_to_31_days() {
        let mut disbursed = date(2027, 1, 1);
        for _ in 0..(4 * 366) {
            let mut start = disbursed;
            for sequence in 1..=20 {
                let due = due_date(disbursed, sequence).expect("in calendar");
                let days = period_days(start, due);
                assert!((28..=31).contains(&days), "{disbursed} #{sequence}: {days}");
                start = due;
            }
            disbursed = disbursed.succ_opt().expect("next day");
        }
    }
}
