//! GetPortfolioReport: the loan book at a glance, as of the business date.

use microloan_proto::{common::v1 as common, ledger::v1 as proto};
use rust_decimal::{Decimal, RoundingStrategy};

use super::{LedgerApi, convert, report_currency};
use crate::{
    error::LedgerError,
    store::{self, portfolio::BucketFigures},
};

/// Ratios are shown to 6 decimal places (half-even), trailing zeros dropped.
const RATIO_DECIMAL_PLACES: u32 = 6;

/// `part / whole` as a decimal fraction; "0" when the whole is 0.
pub(super) fn ratio(part: i64, whole: i64) -> String {
    if whole == 0 {
        return "0".to_owned();
    }
    (Decimal::from(part) / Decimal::from(whole))
        .round_dp_with_strategy(RATIO_DECIMAL_PLACES, RoundingStrategy::MidpointNearestEven)
        .normalize()
        .to_string()
}

const BUCKETS: [common::DelinquencyBucket; 5] = [
    common::DelinquencyBucket::Current,
    common::DelinquencyBucket::Dpd1To30,
    common::DelinquencyBucket::Dpd31To60,
    common::DelinquencyBucket::Dpd61To90,
    common::DelinquencyBucket::DpdOver90,
];

impl LedgerApi {
    pub(super) async fn get_portfolio_report(
        &self,
        request: proto::GetPortfolioReportRequest,
    ) -> Result<proto::GetPortfolioReportResponse, LedgerError> {
        let currency = report_currency(&request.currency_code)?;
        let money = |minor_units| convert::money(currency, minor_units);
        let mut tx = self.pool.begin().await?;
        // One snapshot for every figure.
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let today = store::business_date::read_business_date_in(&mut tx).await?;
        let buckets =
            store::portfolio::active_loans_by_bucket(&mut tx, today.business_date).await?;
        let totals = store::portfolio::book_totals(&mut tx).await?;
        let purposes = store::portfolio::loans_by_purpose(&mut tx).await?;
        tx.commit().await?;
        let sum = |f: fn(&BucketFigures) -> i64| buckets.iter().map(f).sum::<i64>();
        let principal = sum(|b| b.principal_minor);
        let interest = sum(|b| b.interest_minor);
        let penalty = sum(|b| b.penalty_minor);
        let npl = buckets
            .iter()
            .filter(|b| b.bucket == common::DelinquencyBucket::DpdOver90 as i16)
            .map(|b| b.principal_minor)
            .sum::<i64>();
        let bucket_summaries = BUCKETS
            .iter()
            .map(|bucket| {
                let figures = buckets.iter().find(|b| b.bucket == *bucket as i16);
                let bucket_principal = figures.map_or(0, |b| b.principal_minor);
                proto::BucketSummary {
                    bucket: *bucket as i32,
                    loan_count: figures.map_or(0, |b| b.loan_count),
                    outstanding_principal: money(bucket_principal),
                    principal_share: ratio(bucket_principal, principal),
                }
            })
            .collect();
        let purpose_summaries = purposes
            .iter()
            .map(|figures| proto::PurposeSummary {
                purpose: i32::from(figures.purpose),
                loan_count: figures.loan_count,
                disbursed_principal: money(figures.disbursed_minor),
                outstanding_principal: money(figures.outstanding_principal_minor),
                disbursed_share: ratio(figures.disbursed_minor, totals.cumulative_disbursed_minor),
            })
            .collect();
        Ok(proto::GetPortfolioReportResponse {
            report: Some(proto::PortfolioReport {
                as_of_date: convert::date(today.business_date),
                currency_code: currency.to_owned(),
                active_loans: sum(|b| b.loan_count),
                outstanding_principal: money(principal),
                outstanding_interest: money(interest),
                outstanding_penalty: money(penalty),
                total_outstanding: money(principal + interest + penalty),
                buckets: bucket_summaries,
                npl_principal: money(npl),
                npl_ratio: ratio(npl, principal),
                open_credit_lines: totals.open_credit_lines,
                total_limit: money(totals.total_limit_minor),
                total_available: money(totals.total_available_minor),
                utilisation_ratio: ratio(
                    totals.total_limit_minor - totals.total_available_minor,
                    totals.total_limit_minor,
                ),
                cumulative_disbursed: money(totals.cumulative_disbursed_minor),
                cumulative_written_off: money(totals.cumulative_written_off_minor),
                cumulative_interest_income: money(totals.cumulative_interest_income_minor),
                loans_paid_off: totals.loans_paid_off,
                loans_written_off: totals.loans_written_off,
                purposes: purpose_summaries,
                generate_time: convert::timestamp(today.now),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn ratios_are_fractions_with_zero_for_an_empty_whole() {
        assert_eq!(super::ratio(0, 0), "0");
        assert_eq!(super::ratio(1, 4), "0.25");
        assert_eq!(super::ratio(1, 3), "0.333333");
        assert_eq!(super::ratio(5, 5), "1");
    }
}
