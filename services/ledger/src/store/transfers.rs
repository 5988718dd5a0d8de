//! Transfers: applying a batch, expiring reservations, listing.
//!
//! A batch is one transaction of a fixed number of round trips whatever its size:
//! 1. share-lock the business date (end of day waits for in-flight batches, and later
//!    batches see `end_of_day_running`), claim the request_id;
//! 2. find the accounts of due reservations on the batch's accounts, then lock all of
//!    them `ORDER BY id FOR UPDATE` (one fixed order: no deadlocks);
//! 3. expire the due reservations between locked accounts (one statement);
//! 4. load the locked accounts and the stored transfers the items name (ids and
//!    pending ids); with no reservation due (the usual case) steps 2-4 lock and load
//!    the accounts in one statement;
//! 5. decide every item in memory (`gl::transfers`), in request order: the only step
//!    that is per item, because each item sees the balances the ones before it left;
//! 6. write the outcome: insert transfers, insert reservations, resolve reservations,
//!    update balances: one `unnest` statement each.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use microloan_platform::idempotency::RequestKey;
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use uuid::Uuid;

use super::{
    accounts::{load_accounts, lock_accounts_in_id_order, update_balances},
    business_date,
};
use crate::{
    error::LedgerError,
    gl::transfers::{
        BatchContext, Kind, PendingState, PendingStatus, Poster, Transfer, TransferCode,
        TransferFlags, TransferItem, TransfersPlan, plan_create_transfers,
    },
};

pub(crate) const TRANSFER_COLUMNS: &str = "t.seq, t.id, t.debit_account_id, t.credit_account_id, t.amount, \
     t.requested_amount, t.currency, t.code, t.kind, t.linked, t.pending_id, t.timeout_seconds, \
     t.customer_id, t.loan_id, t.description, t.business_date, t.create_time, \
     p.status AS pending_status, p.expires_at";

pub(crate) fn transfer_from_row(row: &PgRow) -> Result<Transfer, sqlx::Error> {
    let code: i32 = row.try_get("code")?;
    let kind: i16 = row.try_get("kind")?;
    let pending_status: Option<i16> = row.try_get("pending_status")?;
    let pending = pending_status
        .map(|status| {
            PendingStatus::from_i16(status)
                .map(|status| -> Result<PendingState, sqlx::Error> {
                    Ok(PendingState {
                        status,
                        expires_at: row.try_get("expires_at")?,
                    })
                })
                .ok_or_else(|| {
                    sqlx::Error::Decode(format!("unknown pending status {status}").into())
                })?
        })
        .transpose()?;
    Ok(Transfer {
        id: row.try_get("id")?,
        debit_account_id: row.try_get("debit_account_id")?,
        credit_account_id: row.try_get("credit_account_id")?,
        amount: row.try_get("amount")?,
        requested_amount: row.try_get("requested_amount")?,
        currency: row.try_get("currency")?,
        code: TransferCode::from_i32(code)
            .ok_or_else(|| sqlx::Error::Decode(format!("unknown transfer code {code}").into()))?,
        flags: TransferFlags {
            linked: row.try_get("linked")?,
            pending: kind == Kind::Pending as i16,
            post_pending: kind == Kind::PostPending as i16,
            void_pending: kind == Kind::VoidPending as i16,
        },
        pending_id: row.try_get("pending_id")?,
        timeout_seconds: row.try_get("timeout_seconds")?,
        customer_id: row.try_get("customer_id")?,
        loan_id: row.try_get("loan_id")?,
        description: row.try_get("description")?,
        business_date: row.try_get("business_date")?,
        create_time: row.try_get("create_time")?,
        pending,
    })
}

/// Applies a `CreateTransfers` batch in one transaction (see the module comment) and
/// returns the encoded response (`respond` encodes it), or the stored one of an earlier
/// identical request.
pub async fn create_transfers(
    pool: &PgPool,
    key: RequestKey<'_>,
    items: &[TransferItem],
    poster: Poster,
    respond: impl Fn(&TransfersPlan) -> Vec<u8>,
) -> Result<Vec<u8>, LedgerError> {
    let respond = &respond;
    super::in_transaction_with_retry(pool, |mut tx| async move {
        let today = business_date::share_lock_business_date(&mut tx).await?;
        if today.end_of_day_running {
            return Err(LedgerError::EndOfDayRunning);
        }
        if let Some(stored) = super::claim_request_id(&mut tx, key).await? {
            return Ok((stored, tx));
        }
        let context = BatchContext {
            now: today.now,
            business_date: today.business_date,
            poster,
        };
        let plan = apply_transfers(&mut tx, items, context).await?;
        let response = respond(&plan);
        super::record_response(&mut tx, key, &response).await?;
        Ok((response, tx))
    })
    .await
}

/// Steps 3-7 of a batch inside the caller's transaction (which holds the business date
/// share-locked, see the module comment): locks the accounts the items name in id order,
/// expires their due reservations, decides every item and writes the outcome. The loan
/// book posts its transfers through this, in the transaction of its own rows.
pub async fn apply_transfers(
    conn: &mut PgConnection,
    items: &[TransferItem],
    context: BatchContext,
) -> Result<TransfersPlan, LedgerError> {
    apply(conn, items, context, true).await
}

/// [`apply_transfers`] for items whose ids were just generated here (UUIDv7) and that
/// resolve no pending transfer (the loan book's postings): they cannot name a stored
/// transfer, so the look-up of ids and pending ids is skipped, one round trip less
/// while the accounts are locked. Were an id ever to collide, the insert would fail on
/// the primary key and the transaction roll back.
pub async fn apply_fresh_transfers(
    conn: &mut PgConnection,
    items: &[TransferItem],
    context: BatchContext,
) -> Result<TransfersPlan, LedgerError> {
    debug_assert!(
        items
            .iter()
            .all(|item| item.pending_id.valid().is_none() && item.id.valid().is_some())
    );
    apply(conn, items, context, false).await
}

async fn apply(
    conn: &mut PgConnection,
    items: &[TransferItem],
    context: BatchContext,
    look_up_stored: bool,
) -> Result<TransfersPlan, LedgerError> {
    let named: BTreeSet<Uuid> = items
        .iter()
        .flat_map(|item| {
            [
                item.debit_account_id.valid(),
                item.credit_account_id.valid(),
            ]
        })
        .flatten()
        .collect();
    let named: Vec<Uuid> = named.into_iter().collect();
    let due = accounts_of_due_reservations(conn, &named).await?;
    let accounts = if due.is_empty() {
        // The usual case: nothing to expire, so the locks and the balances come in one
        // statement (the accounts are locked until commit, and shared platform
        // sub-accounts wait on each round trip made under them). A reservation that
        // falls due on these accounts between the check and the lock stays PENDING,
        // the conservative side, until the next batch or the sweep releases it.
        load_accounts(conn, &named, true).await?
    } else {
        let mut to_lock = due;
        to_lock.extend(named.iter().copied());
        let to_lock: Vec<Uuid> = to_lock.into_iter().collect();
        lock_accounts_in_id_order(conn, &to_lock).await?;
        release_expired_reservations(conn, &to_lock).await?;
        load_accounts(conn, &named, false).await?
    };
    let transfers = if look_up_stored {
        let referenced: BTreeSet<Uuid> = items
            .iter()
            .flat_map(|item| [item.id.valid(), item.pending_id.valid()])
            .flatten()
            .collect();
        let referenced: Vec<Uuid> = referenced.into_iter().collect();
        load_transfers(conn, &referenced).await?
    } else {
        Vec::new()
    };
    let plan = plan_create_transfers(items, accounts, transfers, context);
    insert_transfers(conn, &plan.created).await?;
    insert_reservations(conn, &plan.created).await?;
    resolve_reservations(conn, &plan.resolutions).await?;
    update_balances(conn, &plan.changed_accounts).await?;
    Ok(plan)
}

/// The accounts on both sides of reservations past their timeout that touch `accounts`.
async fn accounts_of_due_reservations(
    conn: &mut PgConnection,
    accounts: &[Uuid],
) -> Result<BTreeSet<Uuid>, LedgerError> {
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT debit_account_id, credit_account_id FROM pending_transfers \
         WHERE status = 1 AND expires_at <= now() \
           AND (debit_account_id = ANY($1) OR credit_account_id = ANY($1))",
    )
    .bind(accounts)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .flat_map(|(debit, credit)| [debit, credit])
        .collect())
}

/// Expires the reservations past their timeout whose two accounts are among `locked`
/// (locked by the caller) and releases their amounts: one statement.
async fn release_expired_reservations(
    conn: &mut PgConnection,
    locked: &[Uuid],
) -> Result<u64, LedgerError> {
    let released = sqlx::query(
        "WITH expired AS ( \
             UPDATE pending_transfers SET status = 4, resolve_time = now() \
             WHERE status = 1 AND expires_at <= now() \
               AND debit_account_id = ANY($1) AND credit_account_id = ANY($1) \
             RETURNING debit_account_id, credit_account_id, amount), \
         released AS ( \
             SELECT account_id, sum(debits) AS debits, sum(credits) AS credits FROM ( \
                 SELECT debit_account_id AS account_id, amount AS debits, 0 AS credits FROM expired \
                 UNION ALL \
                 SELECT credit_account_id, 0, amount FROM expired) moves \
             GROUP BY account_id) \
         UPDATE accounts a SET debits_pending = a.debits_pending - r.debits, \
                               credits_pending = a.credits_pending - r.credits \
         FROM released r WHERE a.id = r.account_id",
    )
    .bind(locked)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(released)
}

/// The sweep: expires reservations past their timeout (at most `limit`; only those
/// touching `account` if given) in one transaction, locking their accounts in id order
/// first. Returns how many accounts it released balance on. Called lazily by GetAccount
/// and for the whole book by the background sweep ([`crate::expiry`]).
///
/// Like every writer it share-locks the business date before any account (the lock
/// order of docs/ledger.md): end of day updates accounts in no particular order while it
/// holds the date, so a sweep locking accounts meanwhile could deadlock with it. While
/// end of day runs the sweep does nothing (0) and the next one catches up.
pub async fn expire_due_reservations(
    pool: &PgPool,
    account: Option<Uuid>,
    limit: i64,
) -> Result<u64, LedgerError> {
    let mut tx = pool.begin().await?;
    match business_date::share_lock_business_date(&mut tx).await {
        Ok(_) => {}
        Err(LedgerError::EndOfDayRunning) => return Ok(0),
        Err(err) => return Err(err),
    }
    let rows: Vec<(Uuid, Uuid)> = sqlx::query_as(
        "SELECT debit_account_id, credit_account_id FROM pending_transfers \
         WHERE status = 1 AND expires_at <= now() \
           AND ($1::uuid IS NULL OR debit_account_id = $1 OR credit_account_id = $1) \
         ORDER BY expires_at LIMIT $2",
    )
    .bind(account)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    let accounts: BTreeSet<Uuid> = rows.into_iter().flat_map(|(d, c)| [d, c]).collect();
    let accounts: Vec<Uuid> = accounts.into_iter().collect();
    lock_accounts_in_id_order(&mut tx, &accounts).await?;
    let released = release_expired_reservations(&mut tx, &accounts).await?;
    tx.commit().await?;
    Ok(released)
}

/// Stored transfers by id, with their reservation state.
///
/// One primary-key probe per id (`LATERAL … LIMIT 1`, which the planner cannot turn
/// into a join): the statement is prepared once per pooled connection, and a generic
/// plan for `t.id = ANY($1)` made while `transfers` was nearly empty and never
/// analyzed is a sequential scan, kept for the connection's life while the table grows
/// (every batch then read the whole table: 4,047 transfers/s at 100 per call, falling
/// as the table grew; docs/ledger.md "Performance"). A probe per key is the cheaper
/// plan for any table size the planner can assume, so no plan can scan the table.
async fn load_transfers(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<Vec<Transfer>, LedgerError> {
    let rows = sqlx::query(&format!(
        "SELECT {TRANSFER_COLUMNS} FROM unnest($1::uuid[]) AS k(id) \
         CROSS JOIN LATERAL (SELECT * FROM transfers t WHERE t.id = k.id LIMIT 1) t \
         LEFT JOIN pending_transfers p ON p.transfer_id = t.id"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .iter()
        .map(transfer_from_row)
        .collect::<Result<_, _>>()?)
}

/// Inserts a batch's transfers in request order (so `seq` follows it): one statement.
async fn insert_transfers(
    conn: &mut PgConnection,
    transfers: &[Transfer],
) -> Result<(), LedgerError> {
    if transfers.is_empty() {
        return Ok(());
    }
    let ids = |f: fn(&Transfer) -> Uuid| transfers.iter().map(f).collect::<Vec<_>>();
    let optional_ids =
        |f: fn(&Transfer) -> Option<Uuid>| transfers.iter().map(f).collect::<Vec<_>>();
    let amounts = |f: fn(&Transfer) -> i64| transfers.iter().map(f).collect::<Vec<_>>();
    sqlx::query(
        "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, requested_amount, \
             currency, code, kind, linked, pending_id, timeout_seconds, customer_id, loan_id, \
             description, business_date, create_time) \
         SELECT id, debit_account_id, credit_account_id, amount, requested_amount, currency, code, \
             kind, linked, pending_id, timeout_seconds, customer_id, loan_id, description, \
             business_date, create_time \
         FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], $5::int8[], $6::text[], \
             $7::int4[], $8::int2[], $9::bool[], $10::uuid[], $11::int4[], $12::uuid[], \
             $13::uuid[], $14::text[], $15::date[], $16::timestamptz[]) WITH ORDINALITY \
             AS u(id, debit_account_id, credit_account_id, amount, requested_amount, currency, \
                  code, kind, linked, pending_id, timeout_seconds, customer_id, loan_id, \
                  description, business_date, create_time, ordinal) \
         ORDER BY ordinal",
    )
    .bind(ids(|t| t.id))
    .bind(ids(|t| t.debit_account_id))
    .bind(ids(|t| t.credit_account_id))
    .bind(amounts(|t| t.amount))
    .bind(amounts(|t| t.requested_amount))
    .bind(
        transfers
            .iter()
            .map(|t| t.currency.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        transfers
            .iter()
            .map(|t| t.code.as_i32())
            .collect::<Vec<_>>(),
    )
    .bind(
        transfers
            .iter()
            .map(|t| t.kind() as i16)
            .collect::<Vec<_>>(),
    )
    .bind(transfers.iter().map(|t| t.flags.linked).collect::<Vec<_>>())
    .bind(optional_ids(|t| t.pending_id))
    .bind(
        transfers
            .iter()
            .map(|t| t.timeout_seconds)
            .collect::<Vec<_>>(),
    )
    .bind(optional_ids(|t| t.customer_id))
    .bind(optional_ids(|t| t.loan_id))
    .bind(
        transfers
            .iter()
            .map(|t| t.description.clone())
            .collect::<Vec<_>>(),
    )
    .bind(
        transfers
            .iter()
            .map(|t| t.business_date)
            .collect::<Vec<NaiveDate>>(),
    )
    .bind(
        transfers
            .iter()
            .map(|t| t.create_time)
            .collect::<Vec<DateTime<Utc>>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Records the reservations of a batch's pending transfers (in their state at the end
/// of the batch): one statement.
async fn insert_reservations(
    conn: &mut PgConnection,
    created: &[Transfer],
) -> Result<(), LedgerError> {
    let pending: Vec<(&Transfer, PendingState)> = created
        .iter()
        .filter_map(|t| t.pending.map(|state| (t, state)))
        .collect();
    if pending.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO pending_transfers (transfer_id, debit_account_id, credit_account_id, amount, \
             customer_id, status, expires_at) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int8[], $5::uuid[], \
             $6::int2[], $7::timestamptz[])",
    )
    .bind(pending.iter().map(|(t, _)| t.id).collect::<Vec<_>>())
    .bind(
        pending
            .iter()
            .map(|(t, _)| t.debit_account_id)
            .collect::<Vec<_>>(),
    )
    .bind(
        pending
            .iter()
            .map(|(t, _)| t.credit_account_id)
            .collect::<Vec<_>>(),
    )
    .bind(pending.iter().map(|(t, _)| t.amount).collect::<Vec<_>>())
    .bind(
        pending
            .iter()
            .map(|(t, _)| t.customer_id)
            .collect::<Vec<_>>(),
    )
    .bind(
        pending
            .iter()
            .map(|(_, s)| s.status as i16)
            .collect::<Vec<_>>(),
    )
    .bind(
        pending
            .iter()
            .map(|(_, s)| s.expires_at)
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks reservations posted or voided: one statement.
async fn resolve_reservations(
    conn: &mut PgConnection,
    resolutions: &[(Uuid, PendingStatus)],
) -> Result<(), LedgerError> {
    if resolutions.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE pending_transfers p SET status = u.status, resolve_time = now() \
         FROM unnest($1::uuid[], $2::int2[]) AS u(id, status) WHERE p.transfer_id = u.id",
    )
    .bind(resolutions.iter().map(|(id, _)| *id).collect::<Vec<_>>())
    .bind(
        resolutions
            .iter()
            .map(|(_, status)| *status as i16)
            .collect::<Vec<_>>(),
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// Filters of ListTransfers (set ones combine with AND).
#[derive(Clone, Debug, Default)]
pub struct TransferFilter {
    pub account_id: Option<Uuid>,
    pub loan_id: Option<Uuid>,
    pub customer_id: Option<Uuid>,
    pub codes: Vec<i32>,
    pub start_date: Option<NaiveDate>,
    pub end_date: Option<NaiveDate>,
}

/// One page of transfers matching `filter` after `after_seq`, oldest first, with the
/// seq of each; fetches `limit` rows.
pub async fn list_transfers(
    pool: &PgPool,
    filter: &TransferFilter,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<(i64, Transfer)>, LedgerError> {
    let rows = sqlx::query(&format!(
        "SELECT {TRANSFER_COLUMNS} FROM transfers t \
         LEFT JOIN pending_transfers p ON p.transfer_id = t.id \
         WHERE ($1::uuid IS NULL OR t.debit_account_id = $1 OR t.credit_account_id = $1) \
           AND ($2::uuid IS NULL OR t.loan_id = $2) \
           AND ($3::uuid IS NULL OR t.customer_id = $3) \
           AND (cardinality($4::int4[]) = 0 OR t.code = ANY($4)) \
           AND ($5::date IS NULL OR t.business_date >= $5) \
           AND ($6::date IS NULL OR t.business_date <= $6) \
           AND t.seq > $7 \
         ORDER BY t.seq LIMIT $8"
    ))
    .bind(filter.account_id)
    .bind(filter.loan_id)
    .bind(filter.customer_id)
    .bind(&filter.codes)
    .bind(filter.start_date)
    .bind(filter.end_date)
    .bind(after_seq)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| Ok((row.try_get("seq")?, transfer_from_row(row)?)))
        .collect::<Result<_, sqlx::Error>>()
        .map_err(LedgerError::from)
}
