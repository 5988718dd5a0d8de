//! End of day's SQL: each step is one statement over the whole book (STYLE "Set-based
//! work in SQL"), named for what it does, returning its row counts. The daily accruals
//! post through the general ledger's tables in the same statement: per-loan transfers
//! (one `INSERT … SELECT`), the balances of every account they touch (one `UPDATE …
//! FROM (SELECT account, sum(…))`), and the instalment they are attributed to.
//!
//! Every function runs inside the caller's transaction, after
//! [`super::business_date::lock_business_date`] (no posting is in flight meanwhile).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::{
    error::LedgerError,
    gl::{SUB_ACCOUNTS, accounts::AccountCode, transfers::TransferCode},
};

/// The advisory lock a run holds for its transaction: a second run finds it taken and
/// answers END_OF_DAY_RUNNING instead of queueing.
const RUN_LOCK_KEY: i64 = 0x6c65_6467_6572_454f; // "ledgerEO"

/// Takes the end-of-day run lock for the transaction; false if another run holds it.
pub async fn try_lock_run(conn: &mut PgConnection) -> Result<bool, LedgerError> {
    Ok(sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
        .bind(RUN_LOCK_KEY)
        .fetch_one(conn)
        .await?)
}

/// No JIT compilation for the rest of the run's transaction. The accrual statements'
/// estimated cost passes `jit_above_cost` (100,000) from about 40,000 active loans and
/// `jit_optimize_above_cost` / `jit_inline_above_cost` (500,000) from about 200,000:
/// measured on a 10,000-loan book with the thresholds lowered to match, compiling the
/// interest statement took 77 ms and 665 ms of CPU for a statement that runs once a
/// day and is dominated by row writes JIT does not speed up (docs/ledger.md
/// "Performance").
pub async fn plan_without_jit(conn: &mut PgConnection) -> Result<(), LedgerError> {
    sqlx::query("SET LOCAL jit = off").execute(conn).await?;
    Ok(())
}

/// True while a run holds its lock (in any session): what GetBusinessDate reports as
/// `end_of_day_running`, since the run's own transaction is invisible to others.
pub async fn run_in_progress(pool: &sqlx::PgPool) -> Result<bool, LedgerError> {
    Ok(sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted \
             AND objsubid = 1 AND database = (SELECT oid FROM pg_database \
                 WHERE datname = current_database()) \
             AND ((classid::int8 << 32) | objid::int8) = $1)",
    )
    .bind(RUN_LOCK_KEY)
    .fetch_one(pool)
    .await?)
}

/// The stored summary (encoded EndOfDaySummary) of a closed date.
pub async fn stored_summary(
    conn: &mut PgConnection,
    business_date: NaiveDate,
) -> Result<Option<Vec<u8>>, LedgerError> {
    Ok(
        sqlx::query_scalar("SELECT summary FROM end_of_day_runs WHERE business_date = $1")
            .bind(business_date)
            .fetch_optional(conn)
            .await?,
    )
}

/// The wall clock now (not the transaction's start).
pub async fn clock(conn: &mut PgConnection) -> Result<DateTime<Utc>, LedgerError> {
    Ok(sqlx::query_scalar("SELECT clock_timestamp()")
        .fetch_one(conn)
        .await?)
}

/// Creates the interest_income and penalty_income sub-accounts 0..63 that do not exist
/// yet (one statement); returns how many were created.
pub async fn ensure_income_sub_accounts(conn: &mut PgConnection) -> Result<u64, LedgerError> {
    let codes = [AccountCode::InterestIncome, AccountCode::PenaltyIncome];
    let mut ids = Vec::new();
    let mut code_numbers = Vec::new();
    let mut subs = Vec::new();
    for code in codes {
        for sub in 0..SUB_ACCOUNTS {
            ids.push(Uuid::now_v7());
            code_numbers.push(code.as_i32());
            subs.push(sub);
        }
    }
    let done = sqlx::query(
        "INSERT INTO accounts (id, code, currency, sub_account) \
         SELECT id, code, 'CNY', sub FROM unnest($1::uuid[], $2::int4[], $3::int4[]) \
             AS u(id, code, sub) \
         ON CONFLICT (code, currency, customer_id, loan_id, sub_account) DO NOTHING",
    )
    .bind(&ids)
    .bind(&code_numbers)
    .bind(&subs)
    .execute(conn)
    .await?;
    Ok(done.rows_affected())
}

/// What one accrual step posted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, FromRow)]
pub struct Posted {
    /// Loans the step considered (active loans; for penalty, those with overdue
    /// instalments).
    pub loans: i64,
    /// Transfers inserted (loans with a non-zero amount).
    pub transfers: i64,
    /// Σ of their amounts (fen).
    pub amount_minor: i64,
    /// Σ debits and Σ credits added to account balances: both equal `amount_minor`.
    pub debits_minor: i64,
    pub credits_minor: i64,
    /// Accounts whose balances moved.
    pub accounts: i64,
    /// Instalments the amounts were attributed to (one per transfer).
    pub installments: i64,
}

impl Posted {
    /// Σ debits = Σ credits = Σ transfers, and every transfer attributed.
    pub fn is_balanced(&self) -> bool {
        self.debits_minor == self.amount_minor
            && self.credits_minor == self.amount_minor
            && self.installments == self.transfers
    }
}

/// The deterministic id of a loan's end-of-day transfer of `code` on date `$1` (SQL,
/// over a `loan_id` column): the date's day number since 2000-01-01 as the first 4
/// bytes (8 hex digits), then 12 bytes of `md5('end-of-day/<loan>/<date>/<code>')`.
/// Deterministic, so a second posting of one loan, date and code is a primary-key
/// violation, never a double charge; and one day's ids sort after every earlier
/// day's, so a run inserts its 10,000s of ids at the right edge of `transfers_pkey`
/// (pages in cache) instead of at random leaves of an index that grows by a day's
/// loans every day (a bare md5 id). UUIDv7 ids (every other transfer) begin with a
/// Unix time in milliseconds, 0x01… since 2005, so the two ranges never meet.
pub const ACCRUAL_TRANSFER_ID: &str = "(lpad(to_hex($1::date - DATE '2000-01-01'), 8, '0') \
     || substr(md5(format('end-of-day/%s/%s/%s', loan_id, $1::date, {code})), 9))::uuid";

/// One daily accrual: `accrual` is a query yielding (loan_id, customer_id, debit,
/// credit, amount, sequence) per loan; the amounts above zero become `code` transfers
/// dated `$1` with deterministic ids ([`ACCRUAL_TRANSFER_ID`]), move the balances in
/// aggregate, and are added to `column` of instalment `sequence`. One statement.
async fn post_daily_accrual(
    conn: &mut PgConnection,
    accrual: &str,
    code: TransferCode,
    column: &str,
    description: &str,
    business_date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Posted, LedgerError> {
    let code = code.as_i32();
    let id = ACCRUAL_TRANSFER_ID.replace("{code}", &code.to_string());
    let sql = format!(
        "WITH accrual AS ({accrual}), \
         posted AS (SELECT * FROM accrual WHERE amount > 0), \
         inserted AS ( \
             INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, \
                 requested_amount, currency, code, kind, linked, customer_id, loan_id, \
                 description, business_date, create_time) \
             SELECT {id}, \
                 debit, credit, amount, amount, 'CNY', {code}, 0, false, customer_id, \
                 loan_id, '{description}', $1::date, $2 \
             FROM posted ORDER BY customer_id, loan_id \
             RETURNING debit_account_id, credit_account_id, amount), \
         moved AS ( \
             UPDATE accounts a SET debits_posted = a.debits_posted + m.debits, \
                 credits_posted = a.credits_posted + m.credits \
             FROM (SELECT account, sum(debits)::int8 AS debits, sum(credits)::int8 AS credits \
                   FROM (SELECT debit_account_id AS account, amount AS debits, 0::int8 AS credits \
                         FROM inserted \
                         UNION ALL SELECT credit_account_id, 0::int8, amount FROM inserted) s \
                   GROUP BY account) m \
             WHERE a.id = m.account \
             RETURNING m.debits, m.credits), \
         attributed AS ( \
             UPDATE installments i SET {column} = i.{column} + p.amount \
             FROM posted p WHERE i.loan_id = p.loan_id AND i.sequence = p.sequence \
             RETURNING 1) \
         SELECT (SELECT count(*) FROM accrual) AS loans, \
                (SELECT count(*) FROM inserted) AS transfers, \
                (SELECT COALESCE(sum(amount), 0) FROM inserted)::int8 AS amount_minor, \
                (SELECT COALESCE(sum(debits), 0) FROM moved)::int8 AS debits_minor, \
                (SELECT COALESCE(sum(credits), 0) FROM moved)::int8 AS credits_minor, \
                (SELECT count(*) FROM moved) AS accounts, \
                (SELECT count(*) FROM attributed) AS installments"
    );
    Ok(sqlx::query_as(&sql)
        .bind(business_date)
        .bind(now)
        .fetch_one(conn)
        .await?)
}

/// The platform income account of `code` on the customer's sub-account (a LEFT JOIN:
/// a missing one makes the insert fail on NOT NULL instead of skipping the loan).
/// `loans.sub_account` is `ledger_sub_account(customer_id)`, stored (migration 0070).
fn income_join(code: AccountCode) -> String {
    format!(
        "LEFT JOIN accounts inc ON inc.code = {} AND inc.currency = 'CNY' \
             AND inc.customer_id IS NULL AND inc.loan_id IS NULL \
             AND inc.sub_account = l.sub_account",
        code.as_i32()
    )
}

/// Step 1: a day's interest on every active loan's outstanding principal (its
/// principal_receivable balance, due or not) at its daily rate, rounded half-even per
/// loan (loan.proto), as INTEREST_ACCRUAL transfers interest_receivable ←
/// interest_income (the customer's sub-account), attributed to the instalment whose
/// period contains the date: the earliest unsettled one due on or after it, else the
/// last unsettled one.
pub async fn accrue_interest(
    conn: &mut PgConnection,
    business_date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Posted, LedgerError> {
    let accrual = format!(
        "SELECT l.loan_id, l.customer_id, l.interest_account_id AS debit, inc.id AS credit, \
             ledger_round_half_even((p.debits_posted - p.credits_posted)::numeric \
                 * l.daily_rate) AS amount, \
             COALESCE(u.current_sequence, u.last_sequence) AS sequence \
         FROM loans l JOIN accounts p ON p.id = l.principal_account_id \
         LEFT JOIN (SELECT loan_id, \
                        min(sequence) FILTER (WHERE due_date >= $1::date) AS current_sequence, \
                        max(sequence) AS last_sequence \
                    FROM installments WHERE settled_date IS NULL GROUP BY loan_id) u \
           ON u.loan_id = l.loan_id {} \
         WHERE l.status = 1",
        income_join(AccountCode::InterestIncome)
    );
    post_daily_accrual(
        conn,
        &accrual,
        TransferCode::InterestAccrual,
        "interest_accrued",
        "daily interest",
        business_date,
        now,
    )
    .await
}

/// Step 2: penalty interest on every active loan's overdue principal (unpaid principal
/// of instalments due before the date) at its penalty daily rate, rounded half-even per
/// loan, as PENALTY_ACCRUAL transfers penalty_receivable ← penalty_income, attributed to
/// the oldest overdue instalment.
pub async fn charge_penalty(
    conn: &mut PgConnection,
    business_date: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Posted, LedgerError> {
    let accrual = format!(
        "SELECT l.loan_id, l.customer_id, l.penalty_account_id AS debit, inc.id AS credit, \
             ledger_round_half_even(o.principal::numeric * l.penalty_daily_rate) AS amount, \
             o.oldest AS sequence \
         FROM (SELECT loan_id, sum(principal_minor - principal_paid) AS principal, \
                      min(sequence) AS oldest \
               FROM installments WHERE settled_date IS NULL AND due_date < $1::date \
               GROUP BY loan_id) o \
         JOIN loans l ON l.loan_id = o.loan_id {} \
         WHERE l.status = 1",
        income_join(AccountCode::PenaltyIncome)
    );
    post_daily_accrual(
        conn,
        &accrual,
        TransferCode::PenaltyAccrual,
        "penalty_charged",
        "daily penalty interest",
        business_date,
        now,
    )
    .await
}

/// Step 3: unsettled instalments of active loans falling due on the date, and those
/// that became overdue on it (due the day before).
pub async fn count_due_and_newly_overdue(
    conn: &mut PgConnection,
    business_date: NaiveDate,
) -> Result<(i64, i64), LedgerError> {
    Ok(sqlx::query_as(
        "SELECT count(*) FILTER (WHERE i.due_date = $1), \
                count(*) FILTER (WHERE i.due_date = $1 - 1) \
         FROM installments i JOIN loans l ON l.loan_id = i.loan_id AND l.status = 1 \
         WHERE i.settled_date IS NULL AND i.due_date BETWEEN $1 - 1 AND $1",
    )
    .bind(business_date)
    .fetch_one(conn)
    .await?)
}

/// The DelinquencyBucket number of days past due (the same bounds as ListLoans).
const BUCKET_OF_DPD: &str = "CASE WHEN dpd IS NULL OR dpd <= 0 THEN 1 WHEN dpd <= 30 THEN 2 \
     WHEN dpd <= 60 THEN 3 WHEN dpd <= 90 THEN 4 ELSE 5 END";

/// Days past due per active loan on the date: the date minus the due date of its oldest
/// unsettled instalment due before it (NULL = current).
const DAYS_PAST_DUE: &str = "SELECT loan_id, $1::date - min(due_date) AS dpd FROM installments \
     WHERE settled_date IS NULL AND due_date < $1::date GROUP BY loan_id";

/// Step 4: active loans per DelinquencyBucket number after the accruals.
pub async fn delinquency_buckets(
    conn: &mut PgConnection,
    business_date: NaiveDate,
) -> Result<Vec<(i16, i64)>, LedgerError> {
    Ok(sqlx::query_as(&format!(
        "SELECT ({BUCKET_OF_DPD})::int2 AS bucket, count(*) \
         FROM loans l LEFT JOIN ({DAYS_PAST_DUE}) d USING (loan_id) \
         WHERE l.status = 1 GROUP BY 1 ORDER BY 1"
    ))
    .bind(business_date)
    .fetch_all(conn)
    .await?)
}

/// One reminder to emit: an unsettled instalment of an active loan whose offset from its
/// due date (date - due date) is in the schedule.
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct ReminderRow {
    pub customer_id: Uuid,
    pub loan_id: Uuid,
    pub sequence: i32,
    pub due_date: NaiveDate,
    /// Date - due date: negative before it (-3 = due in 3 days), days overdue after.
    pub offset_days: i32,
    /// Still unpaid on the instalment (principal + interest + penalty; interest as
    /// shown: the projection until it falls due, the accrued amount after).
    pub amount_minor: i64,
    /// Past-due total of the loan (instalments due before the date).
    pub loan_overdue_minor: i64,
    /// The loan's days past due and bucket number on the date.
    pub loan_days_past_due: i32,
    pub bucket: i16,
    pub penalty_daily_rate: rust_decimal::Decimal,
}

/// Step 5: the instalments with a reminder due on the date, at `offsets` (date - due
/// date), in customer, loan, sequence order; amounts after the day's accruals.
///
/// Only the instalments that matter are read (through the `installments_due` index):
/// those due before the date (the loan's overdue total) and those due on one of the
/// offsets' dates. Reading every unsettled instalment of the book took 1.1 s of a
/// 100,000-loan run for none of them (docs/ledger.md "Performance").
pub async fn reminders_due(
    conn: &mut PgConnection,
    business_date: NaiveDate,
    offsets: &[i32],
) -> Result<Vec<ReminderRow>, LedgerError> {
    let due_dates: Vec<NaiveDate> = offsets
        .iter()
        .filter_map(|offset| {
            business_date.checked_sub_signed(chrono::Duration::days(i64::from(*offset)))
        })
        .collect();
    Ok(sqlx::query_as(&format!(
        "WITH unpaid AS ( \
             SELECT i.loan_id, l.customer_id, i.sequence, i.due_date, l.penalty_daily_rate, \
                 (i.principal_minor - i.principal_paid) \
                 + (CASE WHEN i.due_date <= $1 THEN i.interest_accrued \
                         ELSE greatest(i.interest_minor, i.interest_accrued) END \
                    - i.interest_paid) \
                 + (i.penalty_charged - i.penalty_paid) AS amount_minor \
             FROM installments i JOIN loans l ON l.loan_id = i.loan_id AND l.status = 1 \
             WHERE i.settled_date IS NULL \
               AND (i.due_date < $1 OR i.due_date = ANY($3::date[]))), \
         overdue AS ( \
             SELECT loan_id, sum(amount_minor)::int8 AS loan_overdue_minor, \
                    $1::date - min(due_date) AS dpd \
             FROM unpaid WHERE due_date < $1 GROUP BY loan_id) \
         SELECT u.customer_id, u.loan_id, u.sequence, u.due_date, \
                ($1::date - u.due_date) AS offset_days, u.amount_minor, \
                COALESCE(o.loan_overdue_minor, 0) AS loan_overdue_minor, \
                COALESCE(o.dpd, 0) AS loan_days_past_due, \
                (SELECT ({BUCKET_OF_DPD})::int2 FROM (SELECT o.dpd AS dpd) b) AS bucket, \
                u.penalty_daily_rate \
         FROM unpaid u LEFT JOIN overdue o USING (loan_id) \
         WHERE ($1::date - u.due_date) = ANY($2::int4[]) \
         ORDER BY u.customer_id, u.loan_id, u.sequence"
    ))
    .bind(business_date)
    .bind(offsets)
    .bind(&due_dates)
    .fetch_all(conn)
    .await?)
}

/// Step 7a: stores the date's summary (encoded EndOfDaySummary).
pub async fn store_summary(
    conn: &mut PgConnection,
    business_date: NaiveDate,
    summary: &[u8],
    start_time: DateTime<Utc>,
    finish_time: DateTime<Utc>,
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO end_of_day_runs (business_date, summary, start_time, finish_time) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(business_date)
    .bind(summary)
    .bind(start_time)
    .bind(finish_time)
    .execute(conn)
    .await?;
    Ok(())
}

/// Step 7b: advances the business date from `closed` to `next`; false if it was not
/// `closed` any more (impossible under the row lock).
pub async fn advance_business_date(
    conn: &mut PgConnection,
    closed: NaiveDate,
    next: NaiveDate,
    finish_time: DateTime<Utc>,
) -> Result<bool, LedgerError> {
    let done = sqlx::query(
        "UPDATE business_date SET business_date = $2, last_end_of_day_time = $3, \
             end_of_day_running = false \
         WHERE business_date = $1",
    )
    .bind(closed)
    .bind(next)
    .bind(finish_time)
    .execute(conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Step 6: the active loans at or past `days_past_due` on the date (customer, loan
/// order), to be written off.
pub async fn loans_to_write_off(
    conn: &mut PgConnection,
    business_date: NaiveDate,
    days_past_due: i32,
) -> Result<Vec<(Uuid, Uuid)>, LedgerError> {
    Ok(sqlx::query_as(&format!(
        "SELECT l.customer_id, l.loan_id FROM loans l JOIN ({DAYS_PAST_DUE}) d USING (loan_id) \
         WHERE l.status = 1 AND d.dpd >= $2 ORDER BY l.customer_id, l.loan_id"
    ))
    .bind(business_date)
    .bind(days_past_due)
    .fetch_all(conn)
    .await?)
}

/// The book's tables whose planner statistics [`refresh_statistics`] renews.
const BOOK_TABLES: [&str; 7] = [
    "accounts",
    "transfers",
    "pending_transfers",
    "credit_lines",
    "loans",
    "installments",
    "repayments",
];

/// The book's tables whose statistics are stale by autovacuum's default rule: never
/// analyzed, or more rows inserted, updated or deleted since the last ANALYZE than
/// `autovacuum_analyze_threshold` (50) + `autovacuum_analyze_scale_factor` (0.1) × the
/// rows the last one counted. In name order.
pub async fn stale_book_tables(pool: &sqlx::PgPool) -> Result<Vec<String>, LedgerError> {
    Ok(sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c \
         JOIN pg_stat_user_tables s ON s.relid = c.oid \
         WHERE c.oid = ANY($1::text[]::regclass[]) \
           AND (c.reltuples < 0 OR s.n_mod_since_analyze > 50 + 0.1 * c.reltuples) \
         ORDER BY 1",
    )
    .bind(BOOK_TABLES)
    .fetch_all(pool)
    .await?)
}

/// `ANALYZE` of the book's stale tables ([`stale_book_tables`]) after a run committed;
/// returns the tables analyzed. End of day touches every active loan, and a book that
/// grew from nothing since the last statistics is planned as if it were empty:
/// prepared statements then keep generic plans made for tiny tables (sequential scans
/// of `installments` on every drawdown). autovacuum refreshes statistics on its own
/// when it is on; this keeps the ledger's plans sane where it is off or lags (measured
/// in docs/ledger.md "Performance"). ANALYZE samples (30,000 rows per table by
/// default), takes no lock that blocks reads or writes, and runs outside the run's
/// transaction. Only stale tables, as autovacuum would: analyzing all seven every day
/// took 2.9 s on a 10,000-loan book (3x the run itself), including tables that had
/// changed by less than that.
pub async fn refresh_statistics(pool: &sqlx::PgPool) -> Result<Vec<String>, LedgerError> {
    let stale = stale_book_tables(pool).await?;
    if !stale.is_empty() {
        sqlx::query(&format!("ANALYZE {}", stale.join(", ")))
            .execute(pool)
            .await?;
    }
    Ok(stale)
}
