//! Credit lines, applications, quotes and drawdowns in Postgres (migration
//! `0020_credit_lines.sql`). Balances are never here: they are the ledger's.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::store::customers::CustomerRow;

/// A line's status as stored (CreditLineStatus numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineStatus {
    Active = 1,
    Frozen = 2,
    Closed = 3,
}

impl LineStatus {
    pub fn from_i16(value: i16) -> Option<Self> {
        match value {
            1 => Some(Self::Active),
            2 => Some(Self::Frozen),
            3 => Some(Self::Closed),
            _ => None,
        }
    }

    pub fn as_i16(self) -> i16 {
        self as i16
    }
}

/// A credit line's terms as account keeps them.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LineRow {
    pub credit_line_id: Uuid,
    pub customer_id: Uuid,
    pub status: i16,
    pub status_reason: String,
    pub daily_rate: Decimal,
    pub penalty_daily_rate: Decimal,
    pub risk_grade: i16,
    pub decision_id: Option<Uuid>,
    pub open_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
    pub limit_change_time: DateTime<Utc>,
    pub increase_declined_time: Option<DateTime<Utc>>,
    pub cache_version: i64,
}

impl LineRow {
    pub fn status(&self) -> LineStatus {
        LineStatus::from_i16(self.status).unwrap_or(LineStatus::Closed)
    }
}

const LINE_COLUMNS: &str = "credit_line_id, customer_id, status, status_reason, daily_rate, \
    penalty_daily_rate, risk_grade, decision_id, open_time, update_time, limit_change_time, \
    increase_declined_time, cache_version";

/// The customer's most recent line (even if CLOSED).
pub async fn latest_line(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<LineRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {LINE_COLUMNS} FROM credit_lines WHERE customer_id = $1 \
         ORDER BY open_time DESC, credit_line_id DESC LIMIT 1"
    ))
    .bind(customer_id)
    .fetch_optional(conn)
    .await
}

/// A customer, its most recent line and its keyed lookup hashes, as
/// [`find_customer_and_latest_line`] reads them.
#[derive(Debug, Clone)]
pub struct CustomerAndLine {
    pub customer: CustomerRow,
    pub line: Option<LineRow>,
    pub national_id_hash: Vec<u8>,
    pub phone_hash: Vec<u8>,
}

/// The customer (columns as `find_customer` names them), its keyed hashes and its most
/// recent line (columns prefixed `l_`, NULL without a line), in one statement: one round
/// trip where `find_customer`, `latest_line` and `customer_hashes` took three (issue 10:
/// Borrow's latency is a chain of round trips).
const CUSTOMER_AND_LATEST_LINE_COLUMNS: &str = "c.customer_id, c.status, c.status_reason, \
    c.name_masked, c.national_id_masked, c.phone_masked, c.annual_income_minor, c.locale, \
    c.create_time, c.update_time, c.national_id_hash, c.phone_hash, \
    l.credit_line_id AS l_credit_line_id, l.customer_id AS l_customer_id, \
    l.status AS l_status, l.status_reason AS l_status_reason, l.daily_rate AS l_daily_rate, \
    l.penalty_daily_rate AS l_penalty_daily_rate, l.risk_grade AS l_risk_grade, \
    l.decision_id AS l_decision_id, l.open_time AS l_open_time, \
    l.update_time AS l_update_time, l.limit_change_time AS l_limit_change_time, \
    l.increase_declined_time AS l_increase_declined_time, \
    l.cache_version AS l_cache_version";

/// The latest line of customer `c`, joined as `l`.
const LATEST_LINE_JOIN: &str = "LEFT JOIN LATERAL (SELECT * FROM credit_lines \
    WHERE credit_lines.customer_id = c.customer_id \
    ORDER BY open_time DESC, credit_line_id DESC LIMIT 1) l ON true";

static CUSTOMER_AND_LATEST_LINE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {CUSTOMER_AND_LATEST_LINE_COLUMNS} FROM customers c {LATEST_LINE_JOIN} \
         WHERE c.customer_id = $1"
    )
});

/// [`CUSTOMER_AND_LATEST_LINE`] beside the request key's stored row (`k_matches`: the
/// same body; `k_response`), either side NULL when absent: Borrow's and Repay's first
/// read, one round trip where the replay lookup and the customer took two.
static REPLAY_CUSTOMER_AND_LATEST_LINE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| {
        format!(
            "SELECT k.k_matches, k.k_response, {CUSTOMER_AND_LATEST_LINE_COLUMNS} \
             FROM (SELECT 1) one \
             LEFT JOIN LATERAL (SELECT request_hash = sha256($5) AS k_matches, \
                 response AS k_response FROM idempotency_keys \
                 WHERE caller = $2 AND rpc = $3 AND request_id = $4) k ON true \
             LEFT JOIN customers c ON c.customer_id = $1 \
             {LATEST_LINE_JOIN}"
        )
    });

/// The customer with its latest line (if any) and keyed hashes; `None` without the
/// customer.
pub async fn find_customer_and_latest_line(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<CustomerAndLine>, sqlx::Error> {
    let row = sqlx::query(&CUSTOMER_AND_LATEST_LINE)
        .bind(customer_id)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(customer_and_line_of).transpose()
}

/// A request key's stored row: whether the body matches, and the response if one was
/// stored.
pub type StoredKey = (bool, Option<Vec<u8>>);

/// The stored row of `key` (if taken) and the customer with its latest line and keyed
/// hashes (if the customer exists), in one statement.
pub async fn find_replay_customer_and_latest_line(
    conn: &mut PgConnection,
    key: microloan_platform::idempotency::RequestKey<'_>,
    customer_id: Uuid,
) -> Result<(Option<StoredKey>, Option<CustomerAndLine>), sqlx::Error> {
    use sqlx::Row;
    let row = sqlx::query(&REPLAY_CUSTOMER_AND_LATEST_LINE)
        .bind(customer_id)
        .bind(key.caller)
        .bind(key.rpc)
        .bind(key.request_id)
        .bind(key.body)
        .fetch_one(conn)
        .await?;
    let stored = row
        .try_get::<Option<bool>, _>("k_matches")?
        .map(|matches| Ok::<_, sqlx::Error>((matches, row.try_get("k_response")?)))
        .transpose()?;
    let customer = match row.try_get::<Option<Uuid>, _>("customer_id")? {
        None => None,
        Some(_) => Some(customer_and_line_of(&row)?),
    };
    Ok((stored, customer))
}

fn customer_and_line_of(row: &sqlx::postgres::PgRow) -> Result<CustomerAndLine, sqlx::Error> {
    use sqlx::{FromRow, Row};
    let line = match row.try_get::<Option<Uuid>, _>("l_credit_line_id")? {
        None => None,
        Some(credit_line_id) => Some(LineRow {
            credit_line_id,
            customer_id: row.try_get("l_customer_id")?,
            status: row.try_get("l_status")?,
            status_reason: row.try_get("l_status_reason")?,
            daily_rate: row.try_get("l_daily_rate")?,
            penalty_daily_rate: row.try_get("l_penalty_daily_rate")?,
            risk_grade: row.try_get("l_risk_grade")?,
            decision_id: row.try_get("l_decision_id")?,
            open_time: row.try_get("l_open_time")?,
            update_time: row.try_get("l_update_time")?,
            limit_change_time: row.try_get("l_limit_change_time")?,
            increase_declined_time: row.try_get("l_increase_declined_time")?,
            cache_version: row.try_get("l_cache_version")?,
        }),
    };
    Ok(CustomerAndLine {
        customer: CustomerRow::from_row(row)?,
        line,
        national_id_hash: row.try_get("national_id_hash")?,
        phone_hash: row.try_get("phone_hash")?,
    })
}

/// The customer's most recent line, locked for a change.
pub async fn lock_latest_line(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<LineRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {LINE_COLUMNS} FROM credit_lines WHERE customer_id = $1 \
         ORDER BY open_time DESC, credit_line_id DESC LIMIT 1 FOR UPDATE"
    ))
    .bind(customer_id)
    .fetch_optional(conn)
    .await
}

/// A new line's terms.
#[derive(Debug, Clone)]
pub struct NewLine {
    pub credit_line_id: Uuid,
    pub customer_id: Uuid,
    pub daily_rate: Decimal,
    pub penalty_daily_rate: Decimal,
    pub risk_grade: i16,
    pub decision_id: Option<Uuid>,
}

pub async fn insert_line(conn: &mut PgConnection, line: &NewLine) -> Result<LineRow, sqlx::Error> {
    sqlx::query_as(&format!(
        "INSERT INTO credit_lines (credit_line_id, customer_id, status, daily_rate, \
             penalty_daily_rate, risk_grade, decision_id) \
         VALUES ($1, $2, 1, $3, $4, $5, $6) RETURNING {LINE_COLUMNS}"
    ))
    .bind(line.credit_line_id)
    .bind(line.customer_id)
    .bind(line.daily_rate)
    .bind(line.penalty_daily_rate)
    .bind(line.risk_grade)
    .bind(line.decision_id)
    .fetch_one(conn)
    .await
}

/// What a change sets on a line (`None` = unchanged).
#[derive(Debug, Clone, Default)]
pub struct LineUpdate {
    pub status: Option<(LineStatus, String)>,
    pub daily_rate: Option<(Decimal, Decimal)>,
    pub limit_changed: bool,
    pub increase_declined: bool,
    pub decision_id: Option<Uuid>,
}

/// Applies `update` and bumps the cache version; returns the line after.
pub async fn update_line(
    conn: &mut PgConnection,
    credit_line_id: Uuid,
    update: &LineUpdate,
) -> Result<LineRow, sqlx::Error> {
    let (status, reason) = update
        .status
        .as_ref()
        .map_or((None, None), |(status, reason)| {
            (Some(status.as_i16()), Some(reason.as_str()))
        });
    let (rate, penalty) = update
        .daily_rate
        .map_or((None, None), |(rate, penalty)| (Some(rate), Some(penalty)));
    let changed = status.is_some() || rate.is_some() || update.limit_changed;
    sqlx::query_as(&format!(
        "UPDATE credit_lines SET \
             status = COALESCE($2, status), \
             status_reason = COALESCE($3, status_reason), \
             daily_rate = COALESCE($4, daily_rate), \
             penalty_daily_rate = COALESCE($5, penalty_daily_rate), \
             limit_change_time = CASE WHEN $6 THEN now() ELSE limit_change_time END, \
             increase_declined_time = CASE WHEN $7 THEN now() ELSE increase_declined_time END, \
             decision_id = COALESCE($8, decision_id), \
             update_time = CASE WHEN $9 THEN now() ELSE update_time END, \
             cache_version = cache_version + 1 \
         WHERE credit_line_id = $1 RETURNING {LINE_COLUMNS}"
    ))
    .bind(credit_line_id)
    .bind(status)
    .bind(reason)
    .bind(rate)
    .bind(penalty)
    .bind(update.limit_changed)
    .bind(update.increase_declined)
    .bind(update.decision_id)
    .bind(changed)
    .fetch_one(conn)
    .await
}

/// Bumps the `cache_version` of customer `$1`'s latest line.
const BUMP_LATEST_VERSION: &str = "UPDATE credit_lines SET cache_version = cache_version + 1 \
    WHERE credit_line_id = (SELECT credit_line_id FROM credit_lines WHERE customer_id = $1 \
    ORDER BY open_time DESC, credit_line_id DESC LIMIT 1)";

/// Bumps the cache version of the customer's latest line (a balance moved in the
/// ledger); returns the line after, if there is one.
pub async fn bump_version(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<LineRow>, sqlx::Error> {
    sqlx::query_as(&format!("{BUMP_LATEST_VERSION} RETURNING {LINE_COLUMNS}"))
        .bind(customer_id)
        .fetch_optional(conn)
        .await
}

/// Bumps the cache version of each customer's latest line by its count (one statement
/// for a batch of ledger events); returns the customers whose line was bumped, with the
/// version after.
pub async fn bump_versions(
    conn: &mut PgConnection,
    counts: &[(Uuid, i64)],
) -> Result<Vec<(Uuid, i64)>, sqlx::Error> {
    let customers: Vec<Uuid> = counts.iter().map(|(id, _)| *id).collect();
    let increments: Vec<i64> = counts.iter().map(|(_, count)| *count).collect();
    sqlx::query_as(
        "UPDATE credit_lines l SET cache_version = l.cache_version + latest.n \
         FROM (SELECT DISTINCT ON (c.customer_id) c.credit_line_id, u.n \
               FROM unnest($1::uuid[], $2::bigint[]) AS u (customer_id, n) \
               JOIN credit_lines c ON c.customer_id = u.customer_id \
               ORDER BY c.customer_id, c.open_time DESC, c.credit_line_id DESC) latest \
         WHERE l.credit_line_id = latest.credit_line_id \
         RETURNING l.customer_id, l.cache_version",
    )
    .bind(customers)
    .bind(increments)
    .fetch_all(conn)
    .await
}

/// An application that did not open a line.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ApplicationRow {
    pub decision_id: Uuid,
    pub customer_id: Uuid,
    pub outcome: i16,
    pub reasons: serde_json::Value,
    pub offered_limit_minor: Option<i64>,
    pub requested_limit_minor: Option<i64>,
    pub daily_rate: Option<Decimal>,
    pub risk_grade: i16,
    pub reapply_after_date: Option<NaiveDate>,
    pub expire_time: Option<DateTime<Utc>>,
    pub resolved: bool,
}

const APPLICATION_COLUMNS: &str = "decision_id, customer_id, outcome, reasons, \
    offered_limit_minor, requested_limit_minor, daily_rate, risk_grade, reapply_after_date, \
    expire_time, resolved";

pub async fn insert_application(
    conn: &mut PgConnection,
    row: &ApplicationRow,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO credit_applications (decision_id, customer_id, outcome, reasons, \
             offered_limit_minor, requested_limit_minor, daily_rate, risk_grade, \
             reapply_after_date, expire_time, resolved) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
         ON CONFLICT (decision_id) DO NOTHING",
    )
    .bind(row.decision_id)
    .bind(row.customer_id)
    .bind(row.outcome)
    .bind(&row.reasons)
    .bind(row.offered_limit_minor)
    .bind(row.requested_limit_minor)
    .bind(row.daily_rate)
    .bind(row.risk_grade)
    .bind(row.reapply_after_date)
    .bind(row.expire_time)
    .bind(row.resolved)
    .execute(conn)
    .await?;
    Ok(())
}

/// The latest cooling-off date of the customer's declined applications.
pub async fn reapply_after(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<NaiveDate>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT max(reapply_after_date) FROM credit_applications WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_one(conn)
    .await
}

pub async fn lock_application(
    conn: &mut PgConnection,
    decision_id: Uuid,
) -> Result<Option<ApplicationRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "SELECT {APPLICATION_COLUMNS} FROM credit_applications WHERE decision_id = $1 FOR UPDATE"
    ))
    .bind(decision_id)
    .fetch_optional(conn)
    .await
}

pub async fn resolve_application(
    conn: &mut PgConnection,
    decision_id: Uuid,
    reapply_after_date: Option<NaiveDate>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE credit_applications SET resolved = true, \
             reapply_after_date = COALESCE($2, reapply_after_date) WHERE decision_id = $1",
    )
    .bind(decision_id)
    .bind(reapply_after_date)
    .execute(conn)
    .await?;
    Ok(())
}

/// A stored quote.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct QuoteRow {
    pub quote_id: Uuid,
    pub customer_id: Uuid,
    pub principal_minor: i64,
    pub term_months: i32,
    pub repayment_method: i16,
    pub daily_rate: Decimal,
    pub penalty_daily_rate: Decimal,
    pub business_date: NaiveDate,
    pub expire_time: DateTime<Utc>,
}

pub async fn insert_quote(conn: &mut PgConnection, quote: &QuoteRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO loan_quotes (quote_id, customer_id, principal_minor, term_months, \
             repayment_method, daily_rate, penalty_daily_rate, business_date, expire_time) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(quote.quote_id)
    .bind(quote.customer_id)
    .bind(quote.principal_minor)
    .bind(quote.term_months)
    .bind(quote.repayment_method)
    .bind(quote.daily_rate)
    .bind(quote.penalty_daily_rate)
    .bind(quote.business_date)
    .bind(quote.expire_time)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn find_quote(
    conn: &mut PgConnection,
    quote_id: Uuid,
) -> Result<Option<QuoteRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT quote_id, customer_id, principal_minor, term_months, repayment_method, \
             daily_rate, penalty_daily_rate, business_date, expire_time \
         FROM loan_quotes WHERE quote_id = $1",
    )
    .bind(quote_id)
    .fetch_optional(conn)
    .await
}

/// Records a drawdown (once per loan) and bumps the customer's line version, in one
/// statement (one round trip of Borrow's closing transaction); returns the line after.
pub async fn record_drawdown(
    conn: &mut PgConnection,
    loan_id: Uuid,
    customer_id: Uuid,
    purpose: i16,
    decision_id: Option<Uuid>,
) -> Result<Option<LineRow>, sqlx::Error> {
    // A data-modifying WITH runs whether or not the outer statement reads it.
    sqlx::query_as(&format!(
        "WITH drawdown AS (\
             INSERT INTO drawdowns (loan_id, customer_id, purpose, decision_id) \
             VALUES ($2, $1, $3, $4) ON CONFLICT (loan_id) DO NOTHING) \
         {BUMP_LATEST_VERSION} RETURNING {LINE_COLUMNS}"
    ))
    .bind(customer_id)
    .bind(loan_id)
    .bind(purpose)
    .bind(decision_id)
    .fetch_optional(conn)
    .await
}

/// What Borrow records of a drawdown beside the version bump.
#[derive(Debug, Clone, Copy)]
pub struct DrawdownRecord {
    pub loan_id: Uuid,
    pub purpose: i16,
    pub decision_id: Option<Uuid>,
}

/// SQLSTATE of `account_close_refused()` (migration `0030_close_refused.sql`).
const CLOSE_REFUSED: &str = "MLA01";

/// Borrow's and Repay's closing statement when the line is still as the journey first
/// read it (`cache_version` unchanged; every change to a line bumps it, so the row, and
/// the response built from it, are exactly the committed ones): claims the request key
/// with `response` stored (the shared `idempotency_keys` table, as
/// `microloan_platform::idempotency::claim` and `record_response` write it), bumps the
/// line's version and, for Borrow, records the drawdown. One statement on its own, no
/// BEGIN or COMMIT (issue 10: Repay's close was five round trips, Borrow's three): a
/// statement is atomic. The key is claimed first, as in the general path, so both take
/// their locks in one order; a key claimed on a line that moved calls
/// `account_close_refused()`, whose error rolls the whole statement back. Returns
/// whether it all happened; `false` leaves nothing changed (the key was taken, or the
/// line moved) and the caller takes the general path (a taken key replays there, a
/// changed line is read again). Must run outside a transaction: the refusal is an
/// error, which would abort one.
pub async fn close_unchanged(
    conn: &mut PgConnection,
    key: microloan_platform::idempotency::RequestKey<'_>,
    response: &[u8],
    line: &LineRow,
    drawdown: Option<&DrawdownRecord>,
) -> Result<bool, sqlx::Error> {
    let closed = sqlx::query_scalar(
        "WITH claim AS (\
             INSERT INTO idempotency_keys (caller, rpc, request_id, request_hash, response) \
             VALUES ($1, $2, $3, sha256($4), $5) ON CONFLICT DO NOTHING RETURNING 1), \
         line AS (\
             UPDATE credit_lines SET cache_version = cache_version + 1 \
             WHERE credit_line_id = $6 AND cache_version = $7 AND EXISTS (SELECT 1 FROM claim) \
               AND credit_line_id = (SELECT credit_line_id FROM credit_lines \
                   WHERE customer_id = $8 ORDER BY open_time DESC, credit_line_id DESC LIMIT 1) \
             RETURNING 1), \
         drawdown AS (\
             INSERT INTO drawdowns (loan_id, customer_id, purpose, decision_id) \
             SELECT $9, $8, $10, $11 WHERE $9 IS NOT NULL AND EXISTS (SELECT 1 FROM line) \
             ON CONFLICT (loan_id) DO NOTHING) \
         SELECT CASE WHEN NOT EXISTS (SELECT 1 FROM claim) THEN false \
             WHEN EXISTS (SELECT 1 FROM line) THEN true \
             ELSE account_close_refused() END",
    )
    .bind(key.caller)
    .bind(key.rpc)
    .bind(key.request_id)
    .bind(key.body)
    .bind(response)
    .bind(line.credit_line_id)
    .bind(line.cache_version)
    .bind(line.customer_id)
    .bind(drawdown.map(|record| record.loan_id))
    .bind(drawdown.map(|record| record.purpose))
    .bind(drawdown.and_then(|record| record.decision_id))
    .fetch_one(conn)
    .await;
    match closed {
        Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some(CLOSE_REFUSED) => {
            Ok(false)
        }
        other => other,
    }
}

/// The customer's keyed lookup hashes (national id, phone), as scoring receives them.
pub async fn customer_hashes(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<(Vec<u8>, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as("SELECT national_id_hash, phone_hash FROM customers WHERE customer_id = $1")
        .bind(customer_id)
        .fetch_optional(conn)
        .await
}

/// Records a new declared annual income.
pub async fn update_income(
    conn: &mut PgConnection,
    customer_id: Uuid,
    annual_income_minor: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE customers SET annual_income_minor = $2, update_time = now() \
         WHERE customer_id = $1",
    )
    .bind(customer_id)
    .bind(annual_income_minor)
    .execute(conn)
    .await?;
    Ok(())
}
