//! GetPortfolioReport's figures: the loan book summed by delinquency bucket and by
//! purpose, the lines, and the cumulative totals, each one statement over the whole book (read only).

use chrono::NaiveDate;
use sqlx::PgConnection;

use crate::{error::LedgerError, gl::accounts::AccountCode};

/// Active loans of one delinquency bucket (DelinquencyBucket number), fen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct BucketFigures {
    pub bucket: i16,
    pub loan_count: i64,
    pub principal_minor: i64,
    pub interest_minor: i64,
    pub penalty_minor: i64,
}

/// Active loans per bucket as of `business_date` (days past due of the oldest unpaid
/// instalment, DelinquencyBucket's ranges).
pub async fn active_loans_by_bucket(
    conn: &mut PgConnection,
    business_date: NaiveDate,
) -> Result<Vec<BucketFigures>, LedgerError> {
    Ok(sqlx::query_as(
        "WITH active AS ( \
             SELECT (p.debits_posted - p.credits_posted) AS principal, \
                    (i.debits_posted - i.credits_posted) AS interest, \
                    (n.debits_posted - n.credits_posted) AS penalty, \
                    COALESCE($1::date - (SELECT min(x.due_date) FROM installments x \
                        WHERE x.loan_id = l.loan_id AND x.settled_date IS NULL \
                          AND x.due_date < $1::date), 0) AS dpd \
             FROM loans l JOIN accounts p ON p.id = l.principal_account_id \
             JOIN accounts i ON i.id = l.interest_account_id \
             JOIN accounts n ON n.id = l.penalty_account_id WHERE l.status = 1) \
         SELECT (CASE WHEN dpd <= 0 THEN 1 WHEN dpd <= 30 THEN 2 WHEN dpd <= 60 THEN 3 \
                      WHEN dpd <= 90 THEN 4 ELSE 5 END)::int2 AS bucket, \
                count(*) AS loan_count, sum(principal)::int8 AS principal_minor, \
                sum(interest)::int8 AS interest_minor, sum(penalty)::int8 AS penalty_minor \
         FROM active GROUP BY 1 ORDER BY 1",
    )
    .bind(business_date)
    .fetch_all(conn)
    .await?)
}

/// The loans of one purpose (LoanPurpose number), fen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct PurposeFigures {
    pub purpose: i16,
    /// Loans ever disbursed, any status.
    pub loan_count: i64,
    pub disbursed_minor: i64,
    /// Outstanding principal of the ACTIVE loans only.
    pub outstanding_principal_minor: i64,
}

/// Every purpose with at least one loan, in LoanPurpose number order: what was lent for
/// it and what of that is still out.
pub async fn loans_by_purpose(conn: &mut PgConnection) -> Result<Vec<PurposeFigures>, LedgerError> {
    Ok(sqlx::query_as(
        "SELECT l.purpose, count(*) AS loan_count, \
                sum(l.principal_minor)::int8 AS disbursed_minor, \
                COALESCE(sum(p.debits_posted - p.credits_posted) FILTER (WHERE l.status = 1), \
                         0)::int8 AS outstanding_principal_minor \
         FROM loans l JOIN accounts p ON p.id = l.principal_account_id \
         GROUP BY l.purpose ORDER BY l.purpose",
    )
    .fetch_all(conn)
    .await?)
}

/// The credit lines and the book's lifetime totals, fen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct BookTotals {
    pub open_credit_lines: i64,
    pub total_limit_minor: i64,
    pub total_available_minor: i64,
    pub cumulative_disbursed_minor: i64,
    pub cumulative_written_off_minor: i64,
    pub cumulative_interest_income_minor: i64,
    pub loans_paid_off: i64,
    pub loans_written_off: i64,
}

pub async fn book_totals(conn: &mut PgConnection) -> Result<BookTotals, LedgerError> {
    Ok(sqlx::query_as(
        "SELECT \
           (SELECT count(*) FROM credit_lines WHERE NOT closed) AS open_credit_lines, \
           (SELECT COALESCE(sum(limit_minor), 0)::int8 FROM credit_lines) AS total_limit_minor, \
           (SELECT COALESCE(sum(a.credits_posted - a.debits_posted - a.debits_pending), 0)::int8 \
              FROM credit_lines l JOIN accounts a ON a.id = l.account_id) AS total_available_minor, \
           (SELECT COALESCE(sum(principal_minor), 0)::int8 FROM loans) AS cumulative_disbursed_minor, \
           (SELECT COALESCE(sum(written_off_minor), 0)::int8 FROM loans) AS cumulative_written_off_minor, \
           (SELECT COALESCE(sum(credits_posted - debits_posted), 0)::int8 FROM accounts \
              WHERE code = ANY($1)) AS cumulative_interest_income_minor, \
           (SELECT count(*) FROM loans WHERE status = 2) AS loans_paid_off, \
           (SELECT count(*) FROM loans WHERE status = 3) AS loans_written_off",
    )
    .bind([AccountCode::InterestIncome.as_i32(), AccountCode::PenaltyIncome.as_i32()])
    .fetch_one(conn)
    .await?)
}
