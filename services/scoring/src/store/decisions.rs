//! Decisions: every Evaluate's result, stored whole (the Decision and its explanation as
//! protobuf bytes) beside the columns the anti-fraud rules and the PSI query by.

use chrono::{DateTime, Utc};
use microloan_platform::idempotency::RequestKey;
use sqlx::PgConnection;
use uuid::Uuid;

/// One decision row.
#[derive(Debug, Clone)]
pub struct NewDecision<'a> {
    pub decision_id: Uuid,
    pub customer_id: Uuid,
    pub purpose: i16,
    pub outcome: i16,
    pub score: i32,
    pub model_version: &'a str,
    pub offered_limit_fen: Option<i64>,
    pub drawdown_amount_fen: Option<i64>,
    pub decide_time: DateTime<Utc>,
    /// The encoded `Decision`.
    pub decision: &'a [u8],
    /// The encoded `ExplainDecisionResponse` without its decision.
    pub explanation: &'a [u8],
}

/// The decision row from the `key` CTE's one row: no row, no decision.
macro_rules! insert_decision_from_key {
    () => {
        "INSERT INTO decisions (decision_id, customer_id, purpose, outcome, score, \
             model_version, offered_limit_fen, drawdown_amount_fen, decide_time, decision, \
             explanation) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM key"
    };
}

/// What becomes of the request key beside the decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyWrite {
    /// Insert it with its response (no transaction needed); with `async_commit` the
    /// statement's commit does not wait for the WAL flush
    /// (`PolicyConfig::decision_async_commit`).
    Insert { async_commit: bool },
    /// Record the response of the key this transaction claimed (`idempotency::claim`).
    RecordClaimed,
}

/// Stores the decision and the request key's response in one statement: `false` if
/// the key was not written (`Insert`: a concurrent duplicate stored it first;
/// `RecordClaimed`: no such claim), and then no decision is stored either.
pub async fn store_decision(
    conn: &mut PgConnection,
    row: &NewDecision<'_>,
    key: RequestKey<'_>,
    response: &[u8],
    write: KeyWrite,
) -> Result<bool, sqlx::Error> {
    const INSERT: &str = concat!(
        "WITH key AS ( \
             INSERT INTO idempotency_keys (caller, rpc, request_id, request_hash, response) \
             VALUES ($12, $13, $14, sha256($15), $16) ON CONFLICT DO NOTHING RETURNING 1) ",
        insert_decision_from_key!()
    );
    // set_config(.., true) lasts to the end of the statement's own transaction, whose
    // commit reads it.
    const INSERT_UNFLUSHED: &str = concat!(
        "WITH unflushed AS (SELECT set_config('synchronous_commit', 'off', true)), \
         key AS ( \
             INSERT INTO idempotency_keys (caller, rpc, request_id, request_hash, response) \
             VALUES ($12, $13, $14, sha256($15), $16) ON CONFLICT DO NOTHING RETURNING 1) ",
        insert_decision_from_key!(),
        ", unflushed"
    );
    const RECORD: &str = concat!(
        "WITH key AS ( \
             UPDATE idempotency_keys SET response = $16 \
             WHERE caller = $12 AND rpc = $13 AND request_id = $14 \
               AND request_hash = sha256($15) RETURNING 1) ",
        insert_decision_from_key!()
    );
    let statement = match write {
        KeyWrite::Insert {
            async_commit: false,
        } => INSERT,
        KeyWrite::Insert { async_commit: true } => INSERT_UNFLUSHED,
        KeyWrite::RecordClaimed => RECORD,
    };
    let inserted = sqlx::query(statement)
        .bind(row.decision_id)
        .bind(row.customer_id)
        .bind(row.purpose)
        .bind(row.outcome)
        .bind(row.score)
        .bind(row.model_version)
        .bind(row.offered_limit_fen)
        .bind(row.drawdown_amount_fen)
        .bind(row.decide_time)
        .bind(row.decision)
        .bind(row.explanation)
        .bind(key.caller)
        .bind(key.rpc)
        .bind(key.request_id)
        .bind(key.body)
        .bind(response)
        .execute(conn)
        .await?
        .rows_affected();
    Ok(inserted == 1)
}

/// (encoded Decision, encoded explanation) of a stored decision.
pub async fn decision_bytes(
    conn: &mut PgConnection,
    decision_id: Uuid,
) -> Result<Option<(Vec<u8>, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as("SELECT decision, explanation FROM decisions WHERE decision_id = $1")
        .bind(decision_id)
        .fetch_optional(conn)
        .await
}

/// Live scores of `model_version` decided in [from, to] (DRAWDOWN rescorings of the
/// same customers left out): per band of `edges` (see `ScoreDistribution`), counts.
pub async fn live_score_counts(
    conn: &mut PgConnection,
    model_version: &str,
    edges: &[i32],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    drawdown: i16,
) -> Result<Vec<i64>, sqlx::Error> {
    // Band = the number of edges below the score (edges ascend), as band_of.
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "SELECT (SELECT count(*) FROM unnest($2::int4[]) AS e(edge) WHERE e.edge < d.score)::int4 \
             AS band, count(*) \
         FROM decisions d \
         WHERE d.model_version = $1 AND d.decide_time >= $3 AND d.decide_time <= $4 \
           AND d.purpose <> $5 \
         GROUP BY band",
    )
    .bind(model_version)
    .bind(edges)
    .bind(from)
    .bind(to)
    .bind(drawdown)
    .fetch_all(conn)
    .await?;
    let mut counts = vec![0_i64; edges.len() + 1];
    for (band, count) in rows {
        if let Some(slot) = usize::try_from(band).ok().and_then(|b| counts.get_mut(b)) {
            *slot += count;
        }
    }
    Ok(counts)
}
