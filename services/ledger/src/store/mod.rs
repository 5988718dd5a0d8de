//! The ledger's SQL, by aggregate: each function is one statement or one transaction,
//! named for what it does. Runtime-checked queries (`sqlx::query`), so the crate builds
//! without a database or offline data.

pub mod accounts;
pub mod book;
pub mod business_date;
pub mod end_of_day;
pub mod integrity;
pub mod portfolio;
pub mod reports;
pub mod transfers;

use std::future::Future;

use microloan_platform::idempotency::{self, RequestKey};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use crate::error::LedgerError;

/// Attempts of a batch transaction that lost a race ([`LedgerError::lost_a_race`]: a
/// concurrent insert of the same id or key, whose retry then answers EXISTS or
/// KEY_EXISTS) before the error is returned.
const BATCH_ATTEMPTS_MAX: u32 = 5;

/// The stored response of an earlier request with the same request_id and body, or
/// `None` once the key is claimed for this transaction.
pub(crate) async fn claim_request_id(
    conn: &mut PgConnection,
    key: RequestKey<'_>,
) -> Result<Option<Vec<u8>>, LedgerError> {
    Ok(idempotency::claim(conn, key).await?)
}

/// Stores the response of the request that claimed `key`, in its transaction.
pub(crate) async fn record_response(
    conn: &mut PgConnection,
    key: RequestKey<'_>,
    response: &[u8],
) -> Result<(), LedgerError> {
    Ok(idempotency::record_response(conn, key, response).await?)
}

/// Runs `body` in a transaction, committing on success and retrying the whole
/// transaction when it lost a race.
pub async fn in_transaction_with_retry<T, F, Fut>(
    pool: &PgPool,
    mut body: F,
) -> Result<T, LedgerError>
where
    F: FnMut(Transaction<'static, Postgres>) -> Fut,
    Fut: Future<Output = Result<(T, Transaction<'static, Postgres>), LedgerError>>,
{
    let mut attempt = 1;
    loop {
        let tx = pool.begin().await?;
        let result = match body(tx).await {
            Ok((value, tx)) => tx.commit().await.map(|()| value).map_err(LedgerError::from),
            Err(error) => Err(error),
        };
        match result {
            Err(error) if attempt < BATCH_ATTEMPTS_MAX && error.lost_a_race() => {
                tracing::debug!(%error, attempt, "batch lost a race; retrying");
                attempt += 1;
            }
            other => return other,
        }
    }
}
