//! The loan book's rows: credit lines, loans, instalments, and the accounts they own.
//! Each function is one statement; the operations in `book::ops` compose them inside
//! one transaction with the postings.

use chrono::{DateTime, NaiveDate, Utc};
use microloan_domain::loan::Schedule;
use rust_decimal::Decimal;
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

use crate::{error::LedgerError, gl::accounts::AccountCode};

/// A customer's credit line in the ledger.
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct LineRow {
    pub customer_id: Uuid,
    pub credit_line_id: Uuid,
    pub account_id: Uuid,
    pub limit_minor: i64,
    pub closed: bool,
    pub update_time: DateTime<Utc>,
}

/// The line's balances: available from its account, utilised from the customer's
/// principal receivables.
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct LineBalanceRow {
    pub customer_id: Uuid,
    pub credit_line_id: Uuid,
    pub account_id: Uuid,
    pub limit_minor: i64,
    pub closed: bool,
    pub available_minor: i64,
    pub utilised_minor: i64,
    pub update_time: DateTime<Utc>,
}

/// The customer's line, locked for the rest of the transaction: every operation on a
/// line or its loans takes this lock first, so one customer's operations serialise
/// while different customers run in parallel.
pub async fn lock_line(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<LineRow>, LedgerError> {
    Ok(sqlx::query_as(
        "SELECT customer_id, credit_line_id, account_id, limit_minor, closed, update_time \
         FROM credit_lines WHERE customer_id = $1 FOR UPDATE",
    )
    .bind(customer_id)
    .fetch_optional(conn)
    .await?)
}

pub async fn insert_line(
    conn: &mut PgConnection,
    customer_id: Uuid,
    credit_line_id: Uuid,
    account_id: Uuid,
    limit_minor: i64,
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO credit_lines (customer_id, credit_line_id, account_id, limit_minor) \
         VALUES ($1, $2, $3, $4)",
    )
    .bind(customer_id)
    .bind(credit_line_id)
    .bind(account_id)
    .bind(limit_minor)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn update_line(
    conn: &mut PgConnection,
    customer_id: Uuid,
    credit_line_id: Uuid,
    limit_minor: i64,
    closed: bool,
) -> Result<(), LedgerError> {
    sqlx::query(
        "UPDATE credit_lines SET credit_line_id = $2, limit_minor = $3, closed = $4, \
         update_time = now() WHERE customer_id = $1",
    )
    .bind(customer_id)
    .bind(credit_line_id)
    .bind(limit_minor)
    .bind(closed)
    .execute(conn)
    .await?;
    Ok(())
}

/// The line with its live balances.
pub async fn line_balance(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<LineBalanceRow>, LedgerError> {
    Ok(sqlx::query_as(
        "SELECT l.customer_id, l.credit_line_id, l.account_id, l.limit_minor, l.closed, \
                (a.credits_posted - a.debits_posted - a.debits_pending) AS available_minor, \
                COALESCE((SELECT sum(p.debits_posted - p.credits_posted) FROM loans lo \
                          JOIN accounts p ON p.id = lo.principal_account_id \
                          WHERE lo.customer_id = l.customer_id), 0)::bigint AS utilised_minor, \
                l.update_time \
         FROM credit_lines l JOIN accounts a ON a.id = l.account_id \
         WHERE l.customer_id = $1",
    )
    .bind(customer_id)
    .fetch_optional(conn)
    .await?)
}

/// The ids of platform accounts `codes` on sub-account `sub_account`, created on first
/// use. Read first, insert only what is missing: these rows are the hottest of the
/// book (every drawdown and repayment of a sub-account's customers posts to them), and
/// an `INSERT … ON CONFLICT DO NOTHING` on a row another transaction is updating waits
/// for that transaction to end before it can tell the conflict is real, so always
/// inserting queued every call behind the postings in flight on its sub-account (and
/// cost a second statement). Concurrent first uses still meet on the unique key.
pub async fn ensure_platform_accounts(
    conn: &mut PgConnection,
    codes: &[AccountCode],
    sub_account: i32,
) -> Result<Vec<Uuid>, LedgerError> {
    let code_numbers: Vec<i32> = codes.iter().map(|code| code.as_i32()).collect();
    let mut found = platform_account_ids(&mut *conn, &code_numbers, sub_account).await?;
    if found.len() < code_numbers.len() {
        let fresh_ids: Vec<Uuid> = codes.iter().map(|_| Uuid::now_v7()).collect();
        sqlx::query(
            "INSERT INTO accounts (id, code, currency, sub_account) \
             SELECT id, code, 'CNY', $3 FROM unnest($1::uuid[], $2::int4[]) AS u(id, code) \
             ON CONFLICT (code, currency, customer_id, loan_id, sub_account) DO NOTHING",
        )
        .bind(&fresh_ids)
        .bind(&code_numbers)
        .bind(sub_account)
        .execute(&mut *conn)
        .await?;
        found = platform_account_ids(conn, &code_numbers, sub_account).await?;
    }
    code_numbers
        .iter()
        .map(|code| {
            found
                .iter()
                .find(|(found_code, _)| found_code == code)
                .map(|(_, id)| *id)
                .ok_or_else(|| LedgerError::Internal(format!("platform account {code} missing")))
        })
        .collect()
}

/// The (code, id) of the platform accounts `codes` on `sub_account` that exist.
async fn platform_account_ids(
    conn: &mut PgConnection,
    codes: &[i32],
    sub_account: i32,
) -> Result<Vec<(i32, Uuid)>, LedgerError> {
    Ok(sqlx::query_as(
        "SELECT code, id FROM accounts WHERE code = ANY($1) AND currency = 'CNY' \
         AND customer_id IS NULL AND loan_id IS NULL AND sub_account = $2",
    )
    .bind(codes)
    .bind(sub_account)
    .fetch_all(conn)
    .await?)
}

/// The customer's credit_line_available account (debits must not exceed credits: the
/// headroom never goes below zero), created on first use.
pub async fn ensure_line_account(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Uuid, LedgerError> {
    let code = AccountCode::CreditLineAvailable.as_i32();
    sqlx::query(
        "INSERT INTO accounts (id, code, currency, customer_id, debits_must_not_exceed_credits) \
         VALUES ($1, $2, 'CNY', $3, true) \
         ON CONFLICT (code, currency, customer_id, loan_id, sub_account) DO NOTHING",
    )
    .bind(Uuid::now_v7())
    .bind(code)
    .bind(customer_id)
    .execute(&mut *conn)
    .await?;
    Ok(sqlx::query_scalar(
        "SELECT id FROM accounts WHERE code = $1 AND currency = 'CNY' AND customer_id = $2 \
         AND loan_id IS NULL AND sub_account = 0",
    )
    .bind(code)
    .bind(customer_id)
    .fetch_one(conn)
    .await?)
}

/// The three receivable accounts of a new loan (credits must not exceed debits: nothing
/// can be repaid beyond what is owed), in the order principal, interest, penalty.
pub async fn insert_loan_accounts(
    conn: &mut PgConnection,
    customer_id: Uuid,
    loan_id: Uuid,
) -> Result<[Uuid; 3], LedgerError> {
    let ids = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    let codes = [
        AccountCode::PrincipalReceivable.as_i32(),
        AccountCode::InterestReceivable.as_i32(),
        AccountCode::PenaltyReceivable.as_i32(),
    ];
    sqlx::query(
        "INSERT INTO accounts (id, code, currency, customer_id, loan_id, \
             credits_must_not_exceed_debits) \
         SELECT id, code, 'CNY', $3, $4, true FROM unnest($1::uuid[], $2::int4[]) AS u(id, code)",
    )
    .bind(&ids[..])
    .bind(&codes[..])
    .bind(customer_id)
    .bind(loan_id)
    .execute(conn)
    .await?;
    Ok(ids)
}

/// A loan as stored, with its receivable balances.
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct LoanRow {
    pub seq: i64,
    pub loan_id: Uuid,
    pub customer_id: Uuid,
    pub credit_line_id: Uuid,
    pub status: i16,
    pub principal_minor: i64,
    pub term_months: i32,
    pub repayment_method: i16,
    pub daily_rate: Decimal,
    pub penalty_daily_rate: Decimal,
    pub apr: Decimal,
    pub disbursement_date: NaiveDate,
    pub disburse_time: DateTime<Utc>,
    pub principal_account_id: Uuid,
    pub interest_account_id: Uuid,
    pub penalty_account_id: Uuid,
    pub paid_off_date: Option<NaiveDate>,
    pub written_off_date: Option<NaiveDate>,
    pub write_off_reason: i16,
    pub written_off_minor: Option<i64>,
    pub update_time: DateTime<Utc>,
    /// LoanPurpose number (1..=7; loans older than the column read OTHER, 6).
    pub purpose: i16,
    /// Receivable balances (debits - credits posted), fen.
    pub principal_outstanding_minor: i64,
    pub interest_outstanding_minor: i64,
    pub penalty_outstanding_minor: i64,
}

const LOAN_SELECT: &str = "SELECT l.seq, l.loan_id, l.customer_id, l.credit_line_id, l.status, \
     l.principal_minor, l.term_months, l.repayment_method, l.daily_rate, l.penalty_daily_rate, \
     l.apr, l.disbursement_date, l.disburse_time, l.principal_account_id, \
     l.interest_account_id, l.penalty_account_id, l.paid_off_date, l.written_off_date, \
     l.write_off_reason, l.written_off_minor, l.update_time, l.purpose, \
     (p.debits_posted - p.credits_posted) AS principal_outstanding_minor, \
     (i.debits_posted - i.credits_posted) AS interest_outstanding_minor, \
     (n.debits_posted - n.credits_posted) AS penalty_outstanding_minor \
     FROM loans l JOIN accounts p ON p.id = l.principal_account_id \
     JOIN accounts i ON i.id = l.interest_account_id \
     JOIN accounts n ON n.id = l.penalty_account_id";

pub async fn find_loan(
    conn: &mut PgConnection,
    loan_id: Uuid,
) -> Result<Option<LoanRow>, LedgerError> {
    Ok(
        sqlx::query_as(&format!("{LOAN_SELECT} WHERE l.loan_id = $1"))
            .bind(loan_id)
            .fetch_optional(conn)
            .await?,
    )
}

/// One page of loans, newest first: of one customer or the whole book, optionally by
/// status and by delinquency bucket (DelinquencyBucket numbers, from days past due on
/// `business_date`); `after_seq` is the last loan of the previous page.
pub async fn list_loans(
    conn: &mut PgConnection,
    customer_id: Option<Uuid>,
    statuses: &[i16],
    buckets: &[i16],
    business_date: NaiveDate,
    after_seq: Option<i64>,
    limit: i64,
) -> Result<Vec<LoanRow>, LedgerError> {
    Ok(sqlx::query_as(&format!(
        "{LOAN_SELECT} WHERE ($1::uuid IS NULL OR l.customer_id = $1) \
           AND (cardinality($2::int2[]) = 0 OR l.status = ANY($2)) \
           AND ($3::int8 IS NULL OR l.seq < $3) \
           AND (cardinality($4::int2[]) = 0 OR (SELECT CASE \
                 WHEN dpd IS NULL OR dpd <= 0 THEN 1 WHEN dpd <= 30 THEN 2 \
                 WHEN dpd <= 60 THEN 3 WHEN dpd <= 90 THEN 4 ELSE 5 END \
               FROM (SELECT $5::date - min(i.due_date) AS dpd FROM installments i \
                     WHERE i.loan_id = l.loan_id AND i.settled_date IS NULL \
                       AND i.due_date < $5::date) d)::int2 = ANY($4)) \
         ORDER BY l.seq DESC LIMIT $6"
    ))
    .bind(customer_id)
    .bind(statuses)
    .bind(after_seq)
    .bind(buckets)
    .bind(business_date)
    .bind(limit)
    .fetch_all(conn)
    .await?)
}

/// The new loan's row (status ACTIVE).
#[derive(Clone, Debug)]
pub struct NewLoan {
    pub loan_id: Uuid,
    pub customer_id: Uuid,
    pub credit_line_id: Uuid,
    pub principal_minor: i64,
    pub term_months: i32,
    pub repayment_method: i16,
    pub daily_rate: Decimal,
    pub penalty_daily_rate: Decimal,
    pub apr: Decimal,
    pub disbursement_date: NaiveDate,
    pub accounts: [Uuid; 3],
    /// LoanPurpose number (1..=7).
    pub purpose: i16,
}

/// Inserts the loan and returns it as stored, with the zero balances of its new
/// receivable accounts (nothing is posted to them yet).
pub async fn insert_loan(conn: &mut PgConnection, loan: &NewLoan) -> Result<LoanRow, LedgerError> {
    Ok(sqlx::query_as(
        "INSERT INTO loans (loan_id, customer_id, credit_line_id, status, principal_minor, \
             term_months, repayment_method, daily_rate, penalty_daily_rate, apr, \
             disbursement_date, principal_account_id, interest_account_id, penalty_account_id, \
             purpose) \
         VALUES ($1, $2, $3, 1, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         RETURNING seq, loan_id, customer_id, credit_line_id, status, principal_minor, \
             term_months, repayment_method, daily_rate, penalty_daily_rate, apr, \
             disbursement_date, disburse_time, principal_account_id, interest_account_id, \
             penalty_account_id, paid_off_date, written_off_date, write_off_reason, \
             written_off_minor, update_time, purpose, 0::int8 AS principal_outstanding_minor, \
             0::int8 AS interest_outstanding_minor, 0::int8 AS penalty_outstanding_minor",
    )
    .bind(loan.loan_id)
    .bind(loan.customer_id)
    .bind(loan.credit_line_id)
    .bind(loan.principal_minor)
    .bind(loan.term_months)
    .bind(loan.repayment_method)
    .bind(loan.daily_rate)
    .bind(loan.penalty_daily_rate)
    .bind(loan.apr)
    .bind(loan.disbursement_date)
    .bind(loan.accounts[0])
    .bind(loan.accounts[1])
    .bind(loan.accounts[2])
    .bind(loan.purpose)
    .fetch_one(conn)
    .await?)
}

/// The schedule's instalments, one statement; returns them as stored, in sequence order
/// (so the caller need not read them back).
pub async fn insert_installments(
    conn: &mut PgConnection,
    loan_id: Uuid,
    customer_id: Uuid,
    schedule: &Schedule,
) -> Result<Vec<InstallmentRow>, LedgerError> {
    let items = schedule.installments();
    let column = |f: fn(&microloan_domain::loan::PlannedInstallment) -> i64| {
        items.iter().map(f).collect::<Vec<i64>>()
    };
    let mut inserted: Vec<InstallmentRow> = sqlx::query_as(&format!(
        "INSERT INTO installments (loan_id, customer_id, sequence, due_date, period_days, \
             principal_minor, interest_minor) \
         SELECT $1, $2, * FROM unnest($3::int4[], $4::date[], $5::int4[], $6::int8[], $7::int8[]) \
         RETURNING {INSTALLMENT_COLUMNS}"
    ))
    .bind(loan_id)
    .bind(customer_id)
    .bind(
        items
            .iter()
            .map(|item| item.sequence as i32)
            .collect::<Vec<_>>(),
    )
    .bind(items.iter().map(|item| item.due_date).collect::<Vec<_>>())
    .bind(
        items
            .iter()
            .map(|item| item.period_days as i32)
            .collect::<Vec<_>>(),
    )
    .bind(column(|item| item.principal_minor))
    .bind(column(|item| item.interest_minor))
    .fetch_all(conn)
    .await?;
    inserted.sort_by_key(|item| item.sequence);
    Ok(inserted)
}

/// One instalment with its progress.
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct InstallmentRow {
    pub sequence: i32,
    pub due_date: NaiveDate,
    pub period_days: i32,
    pub principal_minor: i64,
    pub interest_minor: i64,
    pub principal_paid: i64,
    pub interest_accrued: i64,
    pub interest_paid: i64,
    pub penalty_charged: i64,
    pub penalty_paid: i64,
    pub settled_date: Option<NaiveDate>,
}

const INSTALLMENT_COLUMNS: &str = "sequence, due_date, period_days, principal_minor, \
     interest_minor, principal_paid, interest_accrued, interest_paid, penalty_charged, \
     penalty_paid, settled_date";

/// At most this many instalments are read per loan (the longest term has far fewer).
const INSTALLMENTS_PER_LOAN_MAX: i64 = 1_000;

/// A loan's instalments in sequence order.
///
/// `loan_id = $1` (the primary key's prefix), not `= ANY($1)`: sqlx prepares each
/// statement once per pooled connection, and the generic plan Postgres caches after
/// five calls is costed on the table as it is then. Made while `installments` was
/// nearly empty and never analyzed, `loan_id = ANY($1)` became a sequential scan kept
/// while the table grew: on a fresh ledger every Disburse and Repay read the whole
/// table (auto_explain: `Seq Scan on installments`, the most frequent statement in
/// flight during the ledger-disburse bench). An equality on the key prefix is an index
/// scan for any table size the planner can assume.
pub async fn load_installments(
    conn: &mut PgConnection,
    loan_id: Uuid,
) -> Result<Vec<InstallmentRow>, LedgerError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {INSTALLMENT_COLUMNS} FROM installments WHERE loan_id = $1 \
         ORDER BY sequence LIMIT $2"
    ))
    .bind(loan_id)
    .bind(INSTALLMENTS_PER_LOAN_MAX)
    .fetch_all(conn)
    .await?)
}

/// The instalments of several loans in one round trip (a page of ListLoans), each
/// loan's in sequence order: one key probe per loan (`LATERAL … LIMIT`, which the
/// planner cannot turn into a join that scans the table; see [`load_installments`]).
pub async fn load_installments_of(
    conn: &mut PgConnection,
    loan_ids: &[Uuid],
) -> Result<std::collections::HashMap<Uuid, Vec<InstallmentRow>>, LedgerError> {
    #[derive(FromRow)]
    struct Row {
        loan_id: Uuid,
        #[sqlx(flatten)]
        installment: InstallmentRow,
    }
    let rows: Vec<Row> = sqlx::query_as(&format!(
        "SELECT k.loan_id, i.* FROM unnest($1::uuid[]) AS k(loan_id) \
         CROSS JOIN LATERAL (SELECT {INSTALLMENT_COLUMNS} FROM installments i \
             WHERE i.loan_id = k.loan_id ORDER BY i.sequence LIMIT $2) i"
    ))
    .bind(loan_ids)
    .bind(INSTALLMENTS_PER_LOAN_MAX)
    .fetch_all(conn)
    .await?;
    let mut by_loan: std::collections::HashMap<Uuid, Vec<InstallmentRow>> =
        std::collections::HashMap::with_capacity(loan_ids.len());
    for row in rows {
        by_loan
            .entry(row.loan_id)
            .or_default()
            .push(row.installment);
    }
    Ok(by_loan)
}

/// The transfers posted for a loan, in commit order.
pub async fn transfers_of_loan(
    conn: &mut PgConnection,
    loan_id: Uuid,
) -> Result<Vec<crate::gl::transfers::Transfer>, LedgerError> {
    use super::transfers::{TRANSFER_COLUMNS, transfer_from_row};
    let rows = sqlx::query(&format!(
        "SELECT {TRANSFER_COLUMNS} FROM transfers t \
         LEFT JOIN pending_transfers p ON p.transfer_id = t.id \
         WHERE t.loan_id = $1 ORDER BY t.seq"
    ))
    .bind(loan_id)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .iter()
        .map(transfer_from_row)
        .collect::<Result<_, _>>()?)
}

/// Adds a repayment's allocation to its instalments and settles the ones it clears:
/// one statement. `allocations` are (sequence, penalty, interest, principal). Returns
/// the updated instalments as stored (the caller merges them into what it read, instead
/// of reading the loan's instalments again).
pub async fn apply_allocations(
    conn: &mut PgConnection,
    loan_id: Uuid,
    allocations: &[(i32, i64, i64, i64)],
    business_date: NaiveDate,
) -> Result<Vec<InstallmentRow>, LedgerError> {
    Ok(sqlx::query_as(
        "UPDATE installments i SET penalty_paid = i.penalty_paid + a.penalty, \
             interest_paid = i.interest_paid + a.interest, \
             principal_paid = i.principal_paid + a.principal, \
             settled_date = CASE WHEN i.principal_paid + a.principal = i.principal_minor \
                 AND i.interest_paid + a.interest = i.interest_accrued \
                 AND i.penalty_paid + a.penalty = i.penalty_charged THEN $6 END \
         FROM unnest($2::int4[], $3::int8[], $4::int8[], $5::int8[]) \
              AS a(sequence, penalty, interest, principal) \
         WHERE i.loan_id = $1 AND i.sequence = a.sequence \
         RETURNING i.sequence, i.due_date, i.period_days, i.principal_minor, i.interest_minor, \
             i.principal_paid, i.interest_accrued, i.interest_paid, i.penalty_charged, \
             i.penalty_paid, i.settled_date",
    )
    .bind(loan_id)
    .bind(allocations.iter().map(|a| a.0).collect::<Vec<_>>())
    .bind(allocations.iter().map(|a| a.1).collect::<Vec<_>>())
    .bind(allocations.iter().map(|a| a.2).collect::<Vec<_>>())
    .bind(allocations.iter().map(|a| a.3).collect::<Vec<_>>())
    .bind(business_date)
    .fetch_all(conn)
    .await?)
}

/// What marking a loan paid off or touching it changed on its row.
#[derive(Clone, Debug, PartialEq, Eq, FromRow)]
pub struct LoanChange {
    pub status: i16,
    pub paid_off_date: Option<NaiveDate>,
    pub update_time: DateTime<Utc>,
}

/// Marks a loan PAID_OFF on `business_date`.
pub async fn mark_paid_off(
    conn: &mut PgConnection,
    loan_id: Uuid,
    business_date: NaiveDate,
) -> Result<LoanChange, LedgerError> {
    Ok(sqlx::query_as(
        "UPDATE loans SET status = 2, paid_off_date = $2, update_time = now() WHERE loan_id = $1 \
         RETURNING status, paid_off_date, update_time",
    )
    .bind(loan_id)
    .bind(business_date)
    .fetch_one(conn)
    .await?)
}

/// Touches a loan's update_time (after a repayment that did not settle it).
pub async fn touch_loan(conn: &mut PgConnection, loan_id: Uuid) -> Result<LoanChange, LedgerError> {
    Ok(sqlx::query_as(
        "UPDATE loans SET update_time = now() WHERE loan_id = $1 \
         RETURNING status, paid_off_date, update_time",
    )
    .bind(loan_id)
    .fetch_one(conn)
    .await?)
}

/// Records a repayment with its encoded `Repayment` message.
pub async fn insert_repayment(
    conn: &mut PgConnection,
    repayment_id: Uuid,
    loan_id: Uuid,
    customer_id: Uuid,
    amount_minor: i64,
    value_date: NaiveDate,
    encoded: &[u8],
) -> Result<(), LedgerError> {
    sqlx::query(
        "INSERT INTO repayments (repayment_id, loan_id, customer_id, amount_minor, value_date, \
             repayment) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(repayment_id)
    .bind(loan_id)
    .bind(customer_id)
    .bind(amount_minor)
    .bind(value_date)
    .bind(encoded)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks a loan WRITTEN_OFF on `business_date` for `reason` (WriteOffReason number),
/// with the total written off.
pub async fn mark_written_off(
    conn: &mut PgConnection,
    loan_id: Uuid,
    business_date: NaiveDate,
    reason: i16,
    written_off_minor: i64,
) -> Result<(), LedgerError> {
    sqlx::query(
        "UPDATE loans SET status = 3, written_off_date = $2, write_off_reason = $3, \
             written_off_minor = $4, update_time = now() WHERE loan_id = $1",
    )
    .bind(loan_id)
    .bind(business_date)
    .bind(reason)
    .bind(written_off_minor)
    .execute(conn)
    .await?;
    Ok(())
}
