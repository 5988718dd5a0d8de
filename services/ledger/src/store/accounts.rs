//! Accounts: creating a batch, reading one, locking and updating balances.

use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use uuid::Uuid;

use crate::{
    error::LedgerError,
    gl::accounts::{
        Account, AccountCode, AccountFlags, AccountItem, AccountKey, AccountsPlan, Balances,
        KnownAccounts, plan_create_accounts,
    },
};
use microloan_platform::idempotency::RequestKey;

/// The columns `account_from_row` reads.
/// (of `accounts a`).
pub(crate) const ACCOUNT_COLUMNS: &str = "a.id, a.code, a.currency, a.customer_id, a.loan_id, \
     a.sub_account, a.linked, a.debits_must_not_exceed_credits, a.credits_must_not_exceed_debits, \
     a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending, a.create_time";

pub(crate) fn account_from_row(row: &PgRow) -> Result<Account, sqlx::Error> {
    let code: i32 = row.try_get("code")?;
    Ok(Account {
        id: row.try_get("id")?,
        code: AccountCode::from_i32(code)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown account code {code}").into()))?,
        currency: row.try_get("currency")?,
        customer_id: row.try_get("customer_id")?,
        loan_id: row.try_get("loan_id")?,
        sub_account: row.try_get("sub_account")?,
        flags: AccountFlags {
            linked: row.try_get("linked")?,
            debits_must_not_exceed_credits: row.try_get("debits_must_not_exceed_credits")?,
            credits_must_not_exceed_debits: row.try_get("credits_must_not_exceed_debits")?,
        },
        balances: Balances {
            debits_posted: row.try_get("debits_posted")?,
            credits_posted: row.try_get("credits_posted")?,
            debits_pending: row.try_get("debits_pending")?,
            credits_pending: row.try_get("credits_pending")?,
        },
        create_time: row.try_get("create_time")?,
    })
}

/// Applies a `CreateAccounts` batch in one transaction and returns the encoded
/// response (`respond` encodes it), or the stored one of an earlier identical request.
pub async fn create_accounts(
    pool: &PgPool,
    key: RequestKey<'_>,
    items: &[AccountItem],
    respond: impl Fn(&AccountsPlan) -> Vec<u8>,
) -> Result<Vec<u8>, LedgerError> {
    let respond = &respond;
    super::in_transaction_with_retry(pool, |mut tx| async move {
        if let Some(stored) = super::claim_request_id(&mut tx, key).await? {
            return Ok((stored, tx));
        }
        let plan = apply_accounts(&mut tx, items).await?;
        let response = respond(&plan);
        super::record_response(&mut tx, key, &response).await?;
        Ok((response, tx))
    })
    .await
}

/// Decides and inserts a batch of accounts inside the caller's transaction (the loan book
/// opens its accounts through this, in the transaction of its own rows). A concurrent
/// insert of the same id or key fails the transaction with a unique violation, which
/// [`super::in_transaction_with_retry`] retries.
pub async fn apply_accounts(
    conn: &mut PgConnection,
    items: &[AccountItem],
) -> Result<AccountsPlan, LedgerError> {
    let now: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("SELECT now()")
        .fetch_one(&mut *conn)
        .await?;
    let known = load_accounts_colliding_with(conn, items).await?;
    let plan = plan_create_accounts(items, known, now);
    insert_accounts(conn, &plan.created).await?;
    Ok(plan)
}

/// The stored accounts that have an item's id or key.
async fn load_accounts_colliding_with(
    conn: &mut PgConnection,
    items: &[AccountItem],
) -> Result<KnownAccounts, LedgerError> {
    let ids: Vec<Uuid> = items.iter().filter_map(|item| item.id.valid()).collect();
    let keys: Vec<AccountKey> = items.iter().filter_map(AccountItem::key).collect();
    let rows = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = ANY($1) \
         UNION \
         SELECT {ACCOUNT_COLUMNS} FROM accounts a \
         JOIN unnest($2::int4[], $3::text[], $4::uuid[], $5::uuid[], $6::int4[]) \
              AS k(code, currency, customer_id, loan_id, sub_account) \
           ON a.code = k.code AND a.currency = k.currency \
          AND a.customer_id IS NOT DISTINCT FROM k.customer_id \
          AND a.loan_id IS NOT DISTINCT FROM k.loan_id AND a.sub_account = k.sub_account"
    ))
    .bind(&ids)
    .bind(keys.iter().map(|key| key.code.as_i32()).collect::<Vec<_>>())
    .bind(
        keys.iter()
            .map(|key| key.currency.clone())
            .collect::<Vec<_>>(),
    )
    .bind(keys.iter().map(|key| key.customer_id).collect::<Vec<_>>())
    .bind(keys.iter().map(|key| key.loan_id).collect::<Vec<_>>())
    .bind(keys.iter().map(|key| key.sub_account).collect::<Vec<_>>())
    .fetch_all(conn)
    .await?;
    let accounts = rows
        .iter()
        .map(account_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(KnownAccounts::new(accounts))
}

/// Inserts new accounts, one statement for the batch.
async fn insert_accounts(conn: &mut PgConnection, accounts: &[Account]) -> Result<(), LedgerError> {
    if accounts.is_empty() {
        return Ok(());
    }
    let column = |f: fn(&Account) -> bool| accounts.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO accounts (id, code, currency, customer_id, loan_id, sub_account, linked, \
             debits_must_not_exceed_credits, credits_must_not_exceed_debits, create_time) \
         SELECT * FROM unnest($1::uuid[], $2::int4[], $3::text[], $4::uuid[], $5::uuid[], \
             $6::int4[], $7::bool[], $8::bool[], $9::bool[], $10::timestamptz[])",
    )
    .bind(accounts.iter().map(|a| a.id).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| a.code.as_i32()).collect::<Vec<_>>())
    .bind(
        accounts
            .iter()
            .map(|a| a.currency.clone())
            .collect::<Vec<_>>(),
    )
    .bind(accounts.iter().map(|a| a.customer_id).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| a.loan_id).collect::<Vec<_>>())
    .bind(accounts.iter().map(|a| a.sub_account).collect::<Vec<_>>())
    .bind(column(|a| a.flags.linked))
    .bind(column(|a| a.flags.debits_must_not_exceed_credits))
    .bind(column(|a| a.flags.credits_must_not_exceed_debits))
    .bind(accounts.iter().map(|a| a.create_time).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

/// One account by id.
pub async fn find_account_by_id(pool: &PgPool, id: Uuid) -> Result<Option<Account>, LedgerError> {
    let row = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(account_from_row).transpose()?)
}

/// One account by its chart-of-accounts key.
pub async fn find_account_by_key(
    pool: &PgPool,
    key: &AccountKey,
) -> Result<Option<Account>, LedgerError> {
    let row = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.code = $1 AND a.currency = $2 \
         AND a.customer_id IS NOT DISTINCT FROM $3 AND a.loan_id IS NOT DISTINCT FROM $4 \
         AND a.sub_account = $5"
    ))
    .bind(key.code.as_i32())
    .bind(&key.currency)
    .bind(key.customer_id)
    .bind(key.loan_id)
    .bind(key.sub_account)
    .fetch_optional(pool)
    .await?;
    Ok(row.as_ref().map(account_from_row).transpose()?)
}

/// Locks accounts FOR UPDATE in id order: every writer locks in this one order, so
/// two batches touching the same accounts in opposite orders queue instead of
/// deadlocking.
pub(crate) async fn lock_accounts_in_id_order(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<(), LedgerError> {
    sqlx::query("SELECT id FROM accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(ids)
        .fetch_all(conn)
        .await?;
    Ok(())
}

/// Reads accounts: locked by the caller, or (`lock`) locked FOR UPDATE here in id
/// order as [`lock_accounts_in_id_order`] does, returned as locked (one round trip where
/// locking and reading take two).
pub(crate) async fn load_accounts(
    conn: &mut PgConnection,
    ids: &[Uuid],
    lock: bool,
) -> Result<Vec<Account>, LedgerError> {
    let locking = if lock {
        " ORDER BY a.id FOR UPDATE"
    } else {
        ""
    };
    let rows = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts a WHERE a.id = ANY($1){locking}"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .iter()
        .map(account_from_row)
        .collect::<Result<_, _>>()?)
}

/// Writes new balances of locked accounts, one statement for the batch.
///
/// Each row is found by one primary-key probe (`LATERAL … LIMIT 1`) and updated by its
/// ctid (a TID scan), so no cached generic plan can scan `accounts`: `UPDATE … FROM
/// unnest(…) WHERE a.id = u.id` planned on a nearly empty, never-analyzed table is a
/// hash join over a sequential scan of every account (auto_explain on a fresh ledger
/// under the ledger-disburse bench), kept while the table grows by three accounts per
/// loan. The rows are locked by the caller, so the ctid read is the one updated.
pub(crate) async fn update_balances(
    conn: &mut PgConnection,
    accounts: &[Account],
) -> Result<(), LedgerError> {
    if accounts.is_empty() {
        return Ok(());
    }
    let column =
        |f: fn(&Balances) -> i64| accounts.iter().map(|a| f(&a.balances)).collect::<Vec<_>>();
    sqlx::query(
        "UPDATE accounts a SET debits_posted = u.debits_posted, credits_posted = u.credits_posted, \
             debits_pending = u.debits_pending, credits_pending = u.credits_pending \
         FROM unnest($1::uuid[], $2::int8[], $3::int8[], $4::int8[], $5::int8[]) \
              AS u(id, debits_posted, credits_posted, debits_pending, credits_pending) \
         CROSS JOIN LATERAL (SELECT x.ctid AS tid FROM accounts x WHERE x.id = u.id LIMIT 1) x \
         WHERE a.ctid = x.tid",
    )
    .bind(accounts.iter().map(|a| a.id).collect::<Vec<_>>())
    .bind(column(|b| b.debits_posted))
    .bind(column(|b| b.credits_posted))
    .bind(column(|b| b.debits_pending))
    .bind(column(|b| b.credits_pending))
    .execute(conn)
    .await?;
    Ok(())
}
