//! Decisions: every Evaluate's result, stored whole (the Decision and its explanation as
//! protobuf bytes) beside the columns the anti-fraud rules and the PSI query by.

use chrono::{DateTime, Utc};
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

pub async fn insert_decision(
    conn: &mut PgConnection,
    row: &NewDecision<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO decisions (decision_id, customer_id, purpose, outcome, score, \
             model_version, offered_limit_fen, drawdown_amount_fen, decide_time, decision, \
             explanation) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
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
    .execute(conn)
    .await?;
    Ok(())
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

/// Whether any instalment of the customer is still past due and unpaid (MISSED).
pub async fn has_overdue_installment(
    conn: &mut PgConnection,
    customer_id: Uuid,
    missed: i16,
) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM installment_states \
             WHERE customer_id = $1 AND outcome = $2 AND installment_sequence > 0)",
    )
    .bind(customer_id)
    .bind(missed)
    .fetch_one(conn)
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
