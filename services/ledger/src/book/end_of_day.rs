//! End of day's rules as values: the reminder schedule and what a run reports. The run
//! itself is `book::ops::run_end_of_day` (one transaction), its steps the set-based
//! statements of `store::end_of_day`.

use chrono::{DateTime, NaiveDate, Utc};

use crate::store::end_of_day::Posted;

/// Reminder offsets, date - due date (ledger.proto `ReminderCount`): InstallmentDueSoon
/// 3 days before and on the due date; InstallmentOverdue on overdue days 1, 7 and 30,
/// then every 30 days until the write-off at 180.
pub const REMINDER_OFFSETS: [i32; 9] = [-3, 0, 1, 7, 30, 60, 90, 120, 150];

/// Overdue notices carry the credit-bureau warning from this many days past due.
pub const CREDIT_BUREAU_WARNING_DAYS: i32 = 30;

/// End of day writes a loan off at this many days past due (DESIGN §4).
pub const WRITE_OFF_DAYS_PAST_DUE: i32 = 180;

/// WriteOffReason DAYS_PAST_DUE: reserved for end of day.
pub const WRITE_OFF_REASON_DAYS_PAST_DUE: i16 = 1;

/// The DelinquencyBucket numbers, in order (CURRENT .. DPD_OVER_90).
pub const BUCKETS: [i16; 5] = [1, 2, 3, 4, 5];

/// What one run did (ledger.proto `EndOfDaySummary`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndOfDay {
    pub business_date: NaiveDate,
    pub next_business_date: NaiveDate,
    /// Active loans processed (those the interest step considered).
    pub loans_processed: i64,
    pub interest: Posted,
    pub penalty: Posted,
    pub installments_due: i64,
    pub installments_newly_overdue: i64,
    /// (bucket number, active loans), every bucket, in [`BUCKETS`] order.
    pub buckets: Vec<(i16, i64)>,
    /// (offset, events), every offset, in [`REMINDER_OFFSETS`] order.
    pub reminders: Vec<(i32, i64)>,
    pub loans_written_off: i64,
    pub amount_written_off_minor: i64,
    pub events_emitted: i64,
    pub start_time: DateTime<Utc>,
    pub finish_time: DateTime<Utc>,
}

/// Every bucket with its count (0 where no row came back).
pub fn all_buckets(counted: &[(i16, i64)]) -> Vec<(i16, i64)> {
    BUCKETS
        .iter()
        .map(|bucket| {
            let count = counted
                .iter()
                .filter(|(found, _)| found == bucket)
                .map(|(_, count)| count)
                .sum();
            (*bucket, count)
        })
        .collect()
}

/// Reminders per offset of the schedule, from the offsets of the events emitted.
pub fn reminders_per_offset(offsets: impl Iterator<Item = i32> + Clone) -> Vec<(i32, i64)> {
    REMINDER_OFFSETS
        .iter()
        .map(|offset| {
            let count = offsets.clone().filter(|found| found == offset).count();
            (*offset, i64::try_from(count).unwrap_or(i64::MAX))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bucket_and_offset_is_reported_even_when_empty() {
        assert_eq!(
            all_buckets(&[(2, 3), (5, 1)]),
            [(1, 0), (2, 3), (3, 0), (4, 0), (5, 1)]
        );
        let counts = reminders_per_offset([0, 1, 0, 150].into_iter());
        assert_eq!(counts.len(), REMINDER_OFFSETS.len());
        assert_eq!(counts[1], (0, 2));
        assert_eq!(counts[2], (1, 1));
        assert_eq!(counts[8], (150, 1));
        assert_eq!(counts[0], (-3, 0));
    }
}
