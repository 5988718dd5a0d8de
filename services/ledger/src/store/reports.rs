//! The trial balance: balances summed per chart-of-accounts code (sub-accounts
//! included). Sums are computed as numeric and cast back to bigint, so a sum past int64
//! is an error, never a wrapped number.

use chrono::NaiveDate;
use sqlx::PgPool;

use crate::{error::LedgerError, gl::accounts::AccountCode};

/// One code's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrialBalanceLine {
    pub code: AccountCode,
    pub account_count: i64,
    pub debits_posted: i64,
    pub credits_posted: i64,
    pub debits_pending: i64,
    pub credits_pending: i64,
}

type Row = (i32, i64, i64, i64, i64, i64);

fn lines(rows: Vec<Row>) -> Result<Vec<TrialBalanceLine>, LedgerError> {
    rows.into_iter()
        .map(
            |(
                code,
                account_count,
                debits_posted,
                credits_posted,
                debits_pending,
                credits_pending,
            )| {
                Ok(TrialBalanceLine {
                    code: AccountCode::from_i32(code).ok_or_else(|| {
                        LedgerError::Internal(format!("unknown account code {code}"))
                    })?,
                    account_count,
                    debits_posted,
                    credits_posted,
                    debits_pending,
                    credits_pending,
                })
            },
        )
        .collect()
}

/// Live balances per code, pending included.
pub async fn sum_balances_per_code(
    pool: &PgPool,
    currency: &str,
) -> Result<Vec<TrialBalanceLine>, LedgerError> {
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT code, count(*), sum(debits_posted)::int8, sum(credits_posted)::int8, \
                sum(debits_pending)::int8, sum(credits_pending)::int8 \
         FROM accounts WHERE currency = $1 GROUP BY code ORDER BY code",
    )
    .bind(currency)
    .fetch_all(pool)
    .await?;
    lines(rows)
}

/// Posted balances per code at the close of `as_of`, re-derived from the transfers
/// booked on or before it (single-phase and post_pending transfers post; pending and
/// void_pending do not). Pending columns are zero.
pub async fn sum_posted_per_code_as_of(
    pool: &PgPool,
    currency: &str,
    as_of: NaiveDate,
) -> Result<Vec<TrialBalanceLine>, LedgerError> {
    let rows: Vec<Row> = sqlx::query_as(
        "WITH moves AS ( \
             SELECT debit_account_id AS account_id, amount AS debits, 0::int8 AS credits \
             FROM transfers WHERE kind IN (0, 2) AND business_date <= $2 \
             UNION ALL \
             SELECT credit_account_id, 0, amount \
             FROM transfers WHERE kind IN (0, 2) AND business_date <= $2), \
         per_account AS ( \
             SELECT account_id, sum(debits) AS debits, sum(credits) AS credits \
             FROM moves GROUP BY account_id) \
         SELECT a.code, count(*), coalesce(sum(m.debits), 0)::int8, \
                coalesce(sum(m.credits), 0)::int8, 0::int8, 0::int8 \
         FROM accounts a LEFT JOIN per_account m ON m.account_id = a.id \
         WHERE a.currency = $1 GROUP BY a.code ORDER BY a.code",
    )
    .bind(currency)
    .bind(as_of)
    .fetch_all(pool)
    .await?;
    lines(rows)
}
