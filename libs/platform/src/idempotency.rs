//! `request_id` idempotency of mutating RPCs (proto/README.md), the same in every
//! service: a caller-chosen key (1-64 of `[A-Za-z0-9_-]`) scoped to the caller and the
//! RPC. The first request with a key claims it in the transaction that applies the
//! request and stores its response there; a retry with the same body gets that response
//! (even if the state moved on since), another body IDEMPOTENCY_KEY_REUSED. A
//! concurrent duplicate waits on the key's row lock until the first commits (then it
//! replays) or rolls back (then it claims the key itself).
//!
//! The table is defined once, in `libs/platform/migrations`, and applied in every
//! service's database through [`MIGRATOR`] (see `App::MIGRATORS_SHARED`).

use sqlx::PgConnection;

/// The shared migration set of the idempotency table (versions 9_100_000_000 and up).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Longest request_id accepted.
pub const REQUEST_ID_CHARS_MAX: usize = 64;
/// How long keys are kept at least; [`sweep_expired`] deletes older ones.
pub const RETENTION_DAYS: i32 = 7;
/// Rows one sweep statement deletes, so a sweep never holds long locks.
const SWEEP_BATCH_ROWS: i64 = 10_000;

/// One request's key and body.
#[derive(Clone, Copy, Debug)]
pub struct RequestKey<'a> {
    /// Who called: the token's subject and role (`operator:alice`), so two callers never
    /// collide on a key.
    pub caller: &'a str,
    /// The RPC's method name.
    pub rpc: &'static str,
    pub request_id: &'a str,
    /// The encoded request with `request_id` cleared.
    pub body: &'a [u8],
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error("request_id {request_id} was already used with a different request")]
    KeyReused { request_id: String },
    #[error("the request_id's first use stored no response")]
    NoStoredResponse,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Why a request_id is malformed (for a field violation on `request_id`), or `None`.
pub fn request_id_problem(request_id: &str) -> Option<&'static str> {
    if request_id.is_empty() {
        return Some("is required");
    }
    if request_id.len() > REQUEST_ID_CHARS_MAX {
        return Some("must be at most 64 characters");
    }
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-';
    if !request_id.bytes().all(allowed) {
        return Some("must be letters, digits, '_' or '-'");
    }
    None
}

/// The stored response of an earlier request with the same key and body, if any; else
/// claims the key for the caller's transaction (`Ok(None)`: go ahead, then call
/// [`record_response`] in the same transaction).
pub async fn claim(
    conn: &mut PgConnection,
    key: RequestKey<'_>,
) -> Result<Option<Vec<u8>>, IdempotencyError> {
    let claimed = sqlx::query(
        "INSERT INTO idempotency_keys (caller, rpc, request_id, request_hash) \
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
    replay(conn, key).await.map(Some)
}

/// The stored response of a request key that is already taken (a concurrent duplicate
/// stored it first): `KeyReused` when the body differs, `NoStoredResponse` when the first
/// use stored none (or the key is gone).
pub async fn replay(
    conn: &mut PgConnection,
    key: RequestKey<'_>,
) -> Result<Vec<u8>, IdempotencyError> {
    let stored: Option<(bool, Option<Vec<u8>>)> = sqlx::query_as(
        "SELECT request_hash = sha256($4), response FROM idempotency_keys \
         WHERE caller = $1 AND rpc = $2 AND request_id = $3",
    )
    .bind(key.caller)
    .bind(key.rpc)
    .bind(key.request_id)
    .bind(key.body)
    .fetch_optional(&mut *conn)
    .await?;
    match stored {
        Some((true, Some(response))) => Ok(response),
        Some((false, _)) => Err(IdempotencyError::KeyReused {
            request_id: key.request_id.to_owned(),
        }),
        Some((true, None)) | None => Err(IdempotencyError::NoStoredResponse),
    }
}

/// Stores the response of the request that claimed `key`.
pub async fn record_response(
    conn: &mut PgConnection,
    key: RequestKey<'_>,
    response: &[u8],
) -> Result<(), IdempotencyError> {
    sqlx::query(
        "UPDATE idempotency_keys SET response = $4 \
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

/// Deletes keys older than the retention, in bounded batches; returns how many.
pub async fn sweep_expired(pool: &sqlx::PgPool, batches_max: u32) -> Result<u64, sqlx::Error> {
    let mut deleted = 0;
    for _ in 0..batches_max {
        let batch = sqlx::query(
            "DELETE FROM idempotency_keys WHERE ctid IN (SELECT ctid FROM idempotency_keys \
             WHERE create_time < now() - make_interval(days => $1) LIMIT $2)",
        )
        .bind(RETENTION_DAYS)
        .bind(SWEEP_BATCH_ROWS)
        .execute(pool)
        .await?
        .rows_affected();
        deleted += batch;
        if batch < SWEEP_BATCH_ROWS as u64 {
            break;
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    fn key<'a>(request_id: &'a str, body: &'a [u8]) -> RequestKey<'a> {
        RequestKey {
            caller: "service:account",
            rpc: "Borrow",
            request_id,
            body,
        }
    }

    #[test]
    fn request_ids_are_1_to_64_safe_characters() {
        assert_eq!(
            request_id_problem("0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f"),
            None
        );
        assert_eq!(request_id_problem("retry_1"), None);
        assert_eq!(request_id_problem(&"a".repeat(64)), None);
        for bad in ["", " ", "a b", "a/b", "ключ", &"a".repeat(65)] {
            assert!(request_id_problem(bad).is_some(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn the_first_use_claims_a_retry_replays_another_body_is_refused() {
        let url = testing::fresh_database_url("idempotency");
        crate::db::create_database_if_missing(&url)
            .await
            .expect("create");
        let pool = sqlx::PgPool::connect(&url).await.expect("connect");
        crate::db::migrate_all(&pool, &[&MIGRATOR])
            .await
            .expect("migrate");
        let mut tx = pool.begin().await.expect("begin");
        assert_eq!(
            claim(&mut tx, key("r1", b"body")).await.expect("claim"),
            None
        );
        record_response(&mut tx, key("r1", b"body"), b"response")
            .await
            .expect("record");
        tx.commit().await.expect("commit");

        let mut tx = pool.begin().await.expect("begin");
        assert_eq!(
            claim(&mut tx, key("r1", b"body")).await.expect("replay"),
            Some(b"response".to_vec())
        );
        assert!(matches!(
            claim(&mut tx, key("r1", b"other body")).await,
            Err(IdempotencyError::KeyReused { request_id }) if request_id == "r1"
        ));
        // Another RPC or caller with the same request_id is another key.
        let other_rpc = RequestKey {
            rpc: "Repay",
            ..key("r1", b"other body")
        };
        assert_eq!(claim(&mut tx, other_rpc).await.expect("claim"), None);
        tx.rollback().await.expect("rollback");

        // A rolled-back claim leaves the key free.
        let mut tx = pool.begin().await.expect("begin");
        let other_rpc = RequestKey {
            rpc: "Repay",
            ..key("r1", b"other body")
        };
        assert_eq!(claim(&mut tx, other_rpc).await.expect("claim again"), None);
        tx.rollback().await.expect("rollback");
        pool.close().await;
        testing::drop_database(&url).await.expect("drop");
    }
}
