//! `VerifyIntegrity`'s queries: one per invariant, run in one REPEATABLE READ, READ ONLY
//! transaction so every check sees the same snapshot. To add an invariant (the loan book's
//! LOAN_BALANCE_MISMATCH and CREDIT_LINE_MISMATCH), add a `Check` variant, its query, and
//! list it in `Check::ALL`.

use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::business_date;
use crate::{
    error::LedgerError,
    gl::integrity::{self, Report, Totals, Violation, ViolationKind},
};

/// The invariants of the general ledger.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// Each account's stored balances = the sums of its transfers.
    AccountBalances,
    /// No account breaks its debits/credits-must-not-exceed flag.
    BalanceFlags,
    /// Each pending transfer's state agrees with its post/void and its timeout.
    PendingTransfers,
    /// Each transfer names existing accounts of its currency.
    TransferAccounts,
    /// Each credit line's limit = available + utilised principal.
    CreditLines,
    /// Each loan's receivable balances = what its instalments say is owed.
    LoanBalances,
}

impl Check {
    pub const ALL: [Check; 6] = [
        Self::AccountBalances,
        Self::BalanceFlags,
        Self::PendingTransfers,
        Self::TransferAccounts,
        Self::CreditLines,
        Self::LoanBalances,
    ];

    /// Up to `limit` violations in the scope (one customer, or the whole ledger).
    async fn run(
        self,
        conn: &mut PgConnection,
        customer: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<Violation>, LedgerError> {
        match self {
            Self::AccountBalances => {
                account_balances_differing_from_transfers(conn, customer, limit).await
            }
            Self::BalanceFlags => accounts_breaking_their_flags(conn, customer, limit).await,
            Self::PendingTransfers => inconsistent_pending_transfers(conn, customer, limit).await,
            Self::TransferAccounts => transfers_with_invalid_accounts(conn, customer, limit).await,
            Self::CreditLines => credit_lines_out_of_balance(conn, customer, limit).await,
            Self::LoanBalances => loans_differing_from_their_accounts(conn, customer, limit).await,
        }
    }
}

/// Checks every invariant over the scope; at most `max_violations` are returned.
pub async fn verify_integrity(
    pool: &PgPool,
    customer: Option<Uuid>,
    max_violations: i64,
) -> Result<Report, LedgerError> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let today = business_date::read_business_date_in(&mut tx).await?;
    let (accounts_checked, transfers_checked, totals) = count_and_sum(&mut tx, customer).await?;
    let loans_checked: i64 =
        sqlx::query_scalar("SELECT count(*) FROM loans WHERE $1::uuid IS NULL OR customer_id = $1")
            .bind(customer)
            .fetch_one(&mut *tx)
            .await?;
    let mut violations = if customer.is_none() {
        totals.mismatches()
    } else {
        Vec::new()
    };
    for check in Check::ALL {
        violations.extend(check.run(&mut tx, customer, max_violations + 1).await?);
    }
    tx.commit().await?;
    let max = usize::try_from(max_violations).unwrap_or(usize::MAX);
    let (violations, violations_truncated) = integrity::truncate(violations, max);
    Ok(Report {
        accounts_checked,
        transfers_checked,
        loans_checked,
        totals,
        violations,
        violations_truncated,
        business_date: today.business_date,
        check_time: today.now,
    })
}

async fn count_and_sum(
    conn: &mut PgConnection,
    customer: Option<Uuid>,
) -> Result<(i64, i64, Totals), LedgerError> {
    let (accounts, debits_posted, credits_posted, debits_pending, credits_pending): (i64, i64, i64, i64, i64) =
        sqlx::query_as(
            "SELECT count(*), coalesce(sum(debits_posted), 0)::int8, \
                    coalesce(sum(credits_posted), 0)::int8, coalesce(sum(debits_pending), 0)::int8, \
                    coalesce(sum(credits_pending), 0)::int8 \
             FROM accounts WHERE $1::uuid IS NULL OR customer_id = $1",
        )
        .bind(customer)
        .fetch_one(&mut *conn)
        .await?;
    let transfers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM transfers WHERE $1::uuid IS NULL OR customer_id = $1",
    )
    .bind(customer)
    .fetch_one(&mut *conn)
    .await?;
    Ok((
        accounts,
        transfers,
        Totals {
            debits_posted,
            credits_posted,
            debits_pending,
            credits_pending,
        },
    ))
}

/// Account, customer, then the stored and the derived balances (debits posted, credits
/// posted, debits pending, credits pending).
type BalanceQueryRow = (Uuid, Option<Uuid>, i64, i64, i64, i64, i64, i64, i64, i64);
type BalanceRow = (Uuid, Option<Uuid>, [i64; 4], [i64; 4]);

/// ACCOUNT_BALANCE_MISMATCH: re-derives each account's four balances from its
/// transfers (posted: single-phase and post_pending; pending: pending transfers still
/// reserved) and reports each balance that differs.
async fn account_balances_differing_from_transfers(
    conn: &mut PgConnection,
    customer: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Violation>, LedgerError> {
    let rows: Vec<BalanceQueryRow> = sqlx::query_as(
        "WITH moves AS ( \
             SELECT t.debit_account_id AS account_id, \
                    CASE WHEN t.kind IN (0, 2) THEN t.amount ELSE 0 END AS dp, 0::int8 AS cp, \
                    CASE WHEN t.kind = 1 AND p.status = 1 THEN t.amount ELSE 0 END AS dpend, \
                    0::int8 AS cpend \
             FROM transfers t LEFT JOIN pending_transfers p ON p.transfer_id = t.id \
             WHERE $1::uuid IS NULL OR t.customer_id = $1 \
             UNION ALL \
             SELECT t.credit_account_id, 0, CASE WHEN t.kind IN (0, 2) THEN t.amount ELSE 0 END, \
                    0, CASE WHEN t.kind = 1 AND p.status = 1 THEN t.amount ELSE 0 END \
             FROM transfers t LEFT JOIN pending_transfers p ON p.transfer_id = t.id \
             WHERE $1::uuid IS NULL OR t.customer_id = $1), \
         derived AS ( \
             SELECT account_id, sum(dp) AS dp, sum(cp) AS cp, sum(dpend) AS dpend, \
                    sum(cpend) AS cpend FROM moves GROUP BY account_id) \
         SELECT a.id, a.customer_id, a.debits_posted, a.credits_posted, a.debits_pending, \
                a.credits_pending, coalesce(d.dp, 0)::int8, coalesce(d.cp, 0)::int8, \
                coalesce(d.dpend, 0)::int8, coalesce(d.cpend, 0)::int8 \
         FROM accounts a LEFT JOIN derived d ON d.account_id = a.id \
         WHERE ($1::uuid IS NULL OR a.customer_id = $1) \
           AND (a.debits_posted <> coalesce(d.dp, 0) OR a.credits_posted <> coalesce(d.cp, 0) \
             OR a.debits_pending <> coalesce(d.dpend, 0) OR a.credits_pending <> coalesce(d.cpend, 0)) \
         ORDER BY a.id LIMIT $2",
    )
    .bind(customer)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    let rows: Vec<BalanceRow> = rows
        .into_iter()
        .map(|(id, customer, a, b, c, d, e, f, g, h)| (id, customer, [a, b, c, d], [e, f, g, h]))
        .collect();
    const NAMES: [&str; 4] = [
        "debits_posted",
        "credits_posted",
        "debits_pending",
        "credits_pending",
    ];
    Ok(rows
        .into_iter()
        .flat_map(|(account, customer, stored, derived)| {
            (0..4)
                .filter(move |&i| stored[i] != derived[i])
                .map(move |i| Violation {
                    account_id: Some(account),
                    customer_id: customer,
                    ..Violation::new(
                        ViolationKind::AccountBalanceMismatch,
                        format!(
                            "{} differs from the sum of the account's transfers",
                            NAMES[i]
                        ),
                    )
                    .amounts(derived[i], stored[i])
                })
        })
        .collect())
}

/// BALANCE_CONSTRAINT_VIOLATED: debits (posted + pending) above credits posted on a
/// debits_must_not_exceed_credits account, or the reverse.
async fn accounts_breaking_their_flags(
    conn: &mut PgConnection,
    customer: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Violation>, LedgerError> {
    let rows: Vec<(Uuid, Option<Uuid>, bool, i64, i64)> = sqlx::query_as(
        "SELECT id, customer_id, debits_must_not_exceed_credits, \
                CASE WHEN debits_must_not_exceed_credits THEN credits_posted ELSE debits_posted END, \
                CASE WHEN debits_must_not_exceed_credits \
                     THEN least(debits_posted::numeric + debits_pending, 9223372036854775807)::int8 \
                     ELSE least(credits_posted::numeric + credits_pending, 9223372036854775807)::int8 END \
         FROM accounts \
         WHERE ($1::uuid IS NULL OR customer_id = $1) \
           AND ((debits_must_not_exceed_credits \
                 AND debits_posted::numeric + debits_pending > credits_posted) \
             OR (credits_must_not_exceed_debits \
                 AND credits_posted::numeric + credits_pending > debits_posted)) \
         ORDER BY id LIMIT $2",
    )
    .bind(customer)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(account, customer, debits_flag, limit, actual)| Violation {
                account_id: Some(account),
                customer_id: customer,
                ..Violation::new(
                    ViolationKind::BalanceConstraintViolated,
                    if debits_flag {
                        "debits (posted + pending) exceed credits posted"
                    } else {
                        "credits (posted + pending) exceed debits posted"
                    },
                )
                .amounts(limit, actual)
            },
        )
        .collect())
}

/// PENDING_TRANSFER_INCONSISTENT: a pending transfer without its reservation row or
/// whose row differs from it; POSTED without its post_pending, VOIDED without its
/// void_pending, PENDING or EXPIRED with one; EXPIRED before its timeout; a post or
/// void of a transfer that is not pending. (A reservation past its timeout that is still
/// PENDING is not a violation: expiry is applied lazily, see docs/ledger.md.)
async fn inconsistent_pending_transfers(
    conn: &mut PgConnection,
    customer: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Violation>, LedgerError> {
    let rows: Vec<(Uuid, Option<Uuid>, String)> = sqlx::query_as(
        "SELECT t.id, t.customer_id, CASE \
             WHEN p.transfer_id IS NULL THEN 'pending transfer without its reservation' \
             WHEN p.amount <> t.amount OR p.debit_account_id <> t.debit_account_id \
               OR p.credit_account_id <> t.credit_account_id \
               THEN 'reservation differs from its transfer' \
             WHEN p.status = 2 AND r.kind IS DISTINCT FROM 2 THEN 'POSTED without a post_pending transfer' \
             WHEN p.status = 3 AND r.kind IS DISTINCT FROM 3 THEN 'VOIDED without a void_pending transfer' \
             WHEN p.status IN (1, 4) AND r.id IS NOT NULL THEN 'PENDING or EXPIRED but resolved by a transfer' \
             ELSE 'EXPIRED before its timeout' END \
         FROM transfers t \
         LEFT JOIN pending_transfers p ON p.transfer_id = t.id \
         LEFT JOIN transfers r ON r.pending_id = t.id \
         WHERE t.kind = 1 AND ($1::uuid IS NULL OR t.customer_id = $1) \
           AND (p.transfer_id IS NULL \
             OR p.amount <> t.amount OR p.debit_account_id <> t.debit_account_id \
             OR p.credit_account_id <> t.credit_account_id \
             OR (p.status = 2 AND r.kind IS DISTINCT FROM 2) \
             OR (p.status = 3 AND r.kind IS DISTINCT FROM 3) \
             OR (p.status IN (1, 4) AND r.id IS NOT NULL) \
             OR (p.status = 4 AND (p.expires_at IS NULL OR p.expires_at > p.resolve_time))) \
         UNION ALL \
         SELECT r.id, r.customer_id, 'post or void of a transfer that is not pending' \
         FROM transfers r JOIN transfers t ON t.id = r.pending_id \
         WHERE t.kind <> 1 AND ($1::uuid IS NULL OR r.customer_id = $1) \
         LIMIT $2",
    )
    .bind(customer)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(transfer, customer, detail)| Violation {
            transfer_id: Some(transfer),
            customer_id: customer,
            ..Violation::new(ViolationKind::PendingTransferInconsistent, detail)
        })
        .collect())
}

/// TRANSFER_ACCOUNT_INVALID: a transfer whose account is missing, or whose accounts
/// (or amount) are of different currencies.
async fn transfers_with_invalid_accounts(
    conn: &mut PgConnection,
    customer: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Violation>, LedgerError> {
    let rows: Vec<(Uuid, Option<Uuid>)> = sqlx::query_as(
        "SELECT t.id, t.customer_id FROM transfers t \
         LEFT JOIN accounts d ON d.id = t.debit_account_id \
         LEFT JOIN accounts c ON c.id = t.credit_account_id \
         WHERE ($1::uuid IS NULL OR t.customer_id = $1) \
           AND (d.id IS NULL OR c.id IS NULL OR d.currency <> c.currency OR d.currency <> t.currency) \
         ORDER BY t.seq LIMIT $2",
    )
    .bind(customer)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(transfer, customer)| Violation {
            transfer_id: Some(transfer),
            customer_id: customer,
            ..Violation::new(
                ViolationKind::TransferAccountInvalid,
                "transfer names a missing account or mixes currencies",
            )
        })
        .collect())
}

/// CREDIT_LINE_MISMATCH: a line whose stored limit is not available + utilised (the
/// balance of its credit_line_available account plus its customer's principal
/// receivables), open or closed.
async fn credit_lines_out_of_balance(
    conn: &mut PgConnection,
    customer: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Violation>, LedgerError> {
    let rows: Vec<(Uuid, Uuid, i64, i64)> = sqlx::query_as(
        "SELECT l.customer_id, l.account_id, l.limit_minor, \
                (a.credits_posted - a.debits_posted - a.debits_pending \
                 + COALESCE((SELECT sum(p.debits_posted - p.credits_posted) FROM loans lo \
                             JOIN accounts p ON p.id = lo.principal_account_id \
                             WHERE lo.customer_id = l.customer_id), 0))::int8 \
         FROM credit_lines l JOIN accounts a ON a.id = l.account_id \
         WHERE ($1::uuid IS NULL OR l.customer_id = $1) \
           AND l.limit_minor <> a.credits_posted - a.debits_posted - a.debits_pending \
                 + COALESCE((SELECT sum(p.debits_posted - p.credits_posted) FROM loans lo \
                             JOIN accounts p ON p.id = lo.principal_account_id \
                             WHERE lo.customer_id = l.customer_id), 0) \
         ORDER BY l.customer_id LIMIT $2",
    )
    .bind(customer)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(customer_id, account_id, stored, derived)| Violation {
            account_id: Some(account_id),
            customer_id: Some(customer_id),
            ..Violation::new(
                ViolationKind::CreditLineMismatch,
                "the line's limit is not available + utilised",
            )
            .amounts(derived, stored)
        })
        .collect())
}

/// LOAN_BALANCE_MISMATCH: an active or paid-off loan whose principal, interest or penalty
/// receivable balance differs from what its instalments still owe.
async fn loans_differing_from_their_accounts(
    conn: &mut PgConnection,
    customer: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Violation>, LedgerError> {
    let rows: Vec<(Uuid, Uuid, String, Uuid, i64, i64)> = sqlx::query_as(
        "WITH owed AS ( \
             SELECT loan_id, sum(principal_minor - principal_paid) AS principal, \
                    sum(interest_accrued - interest_paid) AS interest, \
                    sum(penalty_charged - penalty_paid) AS penalty \
             FROM installments GROUP BY loan_id), \
         sides AS ( \
             SELECT l.loan_id, l.customer_id, 'principal' AS part, l.principal_account_id AS account, \
                    o.principal AS expected FROM loans l JOIN owed o USING (loan_id) \
                    WHERE l.status IN (1, 2) \
             UNION ALL SELECT l.loan_id, l.customer_id, 'interest', l.interest_account_id, o.interest \
                    FROM loans l JOIN owed o USING (loan_id) WHERE l.status IN (1, 2) \
             UNION ALL SELECT l.loan_id, l.customer_id, 'penalty', l.penalty_account_id, o.penalty \
                    FROM loans l JOIN owed o USING (loan_id) WHERE l.status IN (1, 2)) \
         SELECT s.loan_id, s.customer_id, s.part, s.account, s.expected::int8, \
                (a.debits_posted - a.credits_posted)::int8 \
         FROM sides s JOIN accounts a ON a.id = s.account \
         WHERE ($1::uuid IS NULL OR s.customer_id = $1) \
           AND a.debits_posted - a.credits_posted <> s.expected \
         ORDER BY s.loan_id, s.part LIMIT $2",
    )
    .bind(customer)
    .bind(limit)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(loan_id, customer_id, part, account_id, expected, actual)| Violation {
                account_id: Some(account_id),
                loan_id: Some(loan_id),
                customer_id: Some(customer_id),
                ..Violation::new(
                    ViolationKind::LoanBalanceMismatch,
                    format!("the loan's {part} receivable differs from its instalments"),
                )
                .amounts(expected, actual)
            },
        )
        .collect())
}
