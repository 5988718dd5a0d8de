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

/// Stores the decision and records the response of the request key this transaction
/// claimed (`idempotency::claim`), in one statement: `false` if there is no such claim,
/// and then no decision is stored either.
pub async fn store_decision(
    conn: &mut PgConnection,
    row: &NewDecision<'_>,
    key: RequestKey<'_>,
    response: &[u8],
) -> Result<bool, sqlx::Error> {
    const RECORD: &str = concat!(
        "WITH key AS ( \
             UPDATE idempotency_keys SET response = $16 \
             WHERE caller = $12 AND rpc = $13 AND request_id = $14 \
               AND request_hash = sha256($15) RETURNING 1) ",
        insert_decision_from_key!()
    );
    let inserted = sqlx::query(RECORD)
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

/// A decision with its request key and encoded response, owned: what Evaluate hands to
/// the group commit (`decision::writer`).
#[derive(Debug, Clone, PartialEq)]
pub struct KeyedDecision {
    pub decision_id: Uuid,
    pub customer_id: Uuid,
    pub purpose: i16,
    pub outcome: i16,
    pub score: i32,
    pub model_version: String,
    pub offered_limit_fen: Option<i64>,
    pub drawdown_amount_fen: Option<i64>,
    pub decide_time: DateTime<Utc>,
    pub decision: Vec<u8>,
    pub explanation: Vec<u8>,
    pub caller: String,
    pub rpc: String,
    pub request_id: String,
    /// The request without its request_id, encoded (its SHA-256 is stored).
    pub body: Vec<u8>,
    pub response: Vec<u8>,
}

/// Stores `rows` and their request keys in one statement, so one commit: a row whose
/// key is already taken (a concurrent duplicate stored first) stores neither. Returns
/// the decision ids stored. The keys must be distinct within `rows`. With
/// `async_commit` the commit does not wait for the WAL flush
/// (`PolicyConfig::decision_async_commit`).
pub async fn store_decisions(
    conn: &mut PgConnection,
    rows: &[&KeyedDecision],
    async_commit: bool,
) -> Result<std::collections::HashSet<Uuid>, sqlx::Error> {
    macro_rules! batch_insert {
        ($unflushed:literal, $from:literal) => {
            concat!(
                "WITH ",
                $unflushed,
                "input AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int2[], \
                     $4::int2[], $5::int4[], $6::text[], $7::int8[], $8::int8[], \
                     $9::timestamptz[], $10::bytea[], $11::bytea[], $12::text[], $13::text[], \
                     $14::text[], $15::bytea[], $16::bytea[]) \
                     AS i(decision_id, customer_id, purpose, outcome, score, model_version, \
                          offered_limit_fen, drawdown_amount_fen, decide_time, decision, \
                          explanation, caller, rpc, request_id, body, response)), \
                 key AS ( \
                     INSERT INTO idempotency_keys (caller, rpc, request_id, request_hash, response) \
                     SELECT caller, rpc, request_id, sha256(body), response FROM input \
                     ON CONFLICT DO NOTHING RETURNING caller, rpc, request_id) \
                 INSERT INTO decisions (decision_id, customer_id, purpose, outcome, score, \
                     model_version, offered_limit_fen, drawdown_amount_fen, decide_time, decision, \
                     explanation) \
                 SELECT i.decision_id, i.customer_id, i.purpose, i.outcome, i.score, \
                     i.model_version, i.offered_limit_fen, i.drawdown_amount_fen, i.decide_time, \
                     i.decision, i.explanation \
                 FROM input i JOIN key k USING (caller, rpc, request_id)",
                $from,
                " RETURNING decision_id"
            )
        };
    }
    const DURABLE: &str = batch_insert!("", "");
    // set_config(.., true): the setting lasts to the end of the statement's own
    // transaction, whose commit reads it.
    const UNFLUSHED: &str = batch_insert!(
        "unflushed AS (SELECT set_config('synchronous_commit', 'off', true)), ",
        ", unflushed"
    );
    let stored: Vec<Uuid> = sqlx::query_scalar(if async_commit { UNFLUSHED } else { DURABLE })
        .bind(rows.iter().map(|r| r.decision_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.customer_id).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.purpose).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.outcome).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.score).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.model_version.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.offered_limit_fen).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.drawdown_amount_fen)
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.decide_time).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.decision.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(
            rows.iter()
                .map(|r| r.explanation.as_slice())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.caller.as_str()).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.rpc.as_str()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.request_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(rows.iter().map(|r| r.body.as_slice()).collect::<Vec<_>>())
        .bind(
            rows.iter()
                .map(|r| r.response.as_slice())
                .collect::<Vec<_>>(),
        )
        .fetch_all(conn)
        .await?;
    Ok(stored.into_iter().collect())
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
