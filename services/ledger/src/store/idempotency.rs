//! request_id idempotency of whole batches (proto/README.md): the first request with a
//! key stores the SHA-256 of its body and its response, in the transaction that applies
//! it; a retry with the same body gets the stored response, another body
//! IDEMPOTENCY_KEY_REUSED. A concurrent duplicate waits on the key's row lock until the
//! first commits (or rolls back).

use sqlx::PgConnection;

use crate::error::LedgerError;

/// The key of one request: scoped to the caller and the RPC.
#[derive(Clone, Copy, Debug)]
pub struct RequestKey<'a> {
    pub caller: &'a str,
    pub rpc: &'static str,
    pub request_id: &'a str,
    /// The encoded request with request_id cleared.
    pub body: &'a [u8],
}

/// The stored response of an earlier request with the same key and body, if any; else
/// claims the key for this transaction.
pub async fn claim_request_id(
    conn: &mut PgConnection,
    key: RequestKey<'_>,
) -> Result<Option<Vec<u8>>, LedgerError> {
    let claimed = sqlx::query(
        "INSERT INTO request_idempotency (caller, rpc, request_id, request_hash) \
         VALUES ($1, $2, $3, sha256($4)) ON CONFLICT DO NOTHING",
    )
    .bind(key.caller)
    .bind(key.rpc)
    .bind(key.request_id)
    .bind(key.body)
    .execute(&mut *conn)
    .await?
    .rows_affected()
        == 1;
    if claimed {
        return Ok(None);
    }
    let (same_body, response): (bool, Option<Vec<u8>>) = sqlx::query_as(
        "SELECT request_hash = sha256($4), response FROM request_idempotency \
         WHERE caller = $1 AND rpc = $2 AND request_id = $3",
    )
    .bind(key.caller)
    .bind(key.rpc)
    .bind(key.request_id)
    .bind(key.body)
    .fetch_one(&mut *conn)
    .await?;
    match (same_body, response) {
        (true, Some(response)) => Ok(Some(response)),
        (true, None) => Err(LedgerError::Internal(
            "idempotency row without a response".into(),
        )),
        (false, _) => Err(LedgerError::IdempotencyKeyReused {
            request_id: key.request_id.to_owned(),
        }),
    }
}

/// Stores the response of the request that claimed `key`.
pub async fn record_response(
    conn: &mut PgConnection,
    key: RequestKey<'_>,
    response: &[u8],
) -> Result<(), LedgerError> {
    sqlx::query(
        "UPDATE request_idempotency SET response = $4 \
         WHERE caller = $1 AND rpc = $2 AND request_id = $3",
    )
    .bind(key.caller)
    .bind(key.rpc)
    .bind(key.request_id)
    .bind(response)
    .execute(conn)
    .await?;
    Ok(())
}
