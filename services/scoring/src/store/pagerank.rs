//! The personalised-PageRank refresh over the stored graph: load the adjacency and the
//! known defaulters, iterate ([`party_pagerank`]), replace the stored scores.
//! One replica at a time (a session advisory lock); the others skip the round.

use sqlx::PgPool;

use crate::features::graph::{PageRankOptions, party_pagerank};

use super::PAGERANK_LOCK;

/// Scores written per statement.
const WRITE_CHUNK_ROWS: usize = 10_000;

/// What one refresh did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageRankRun {
    pub parties: usize,
    pub arcs: usize,
    pub seeds: usize,
    pub iterations: u32,
    pub residual: f64,
}

/// Recomputes and stores the PageRank; `None` if another replica holds the lock.
pub async fn refresh_pagerank(
    pool: &PgPool,
    options: PageRankOptions,
) -> Result<Option<PageRankRun>, sqlx::Error> {
    let mut lock = pool.acquire().await?;
    let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(PAGERANK_LOCK)
        .fetch_one(&mut *lock)
        .await?;
    if !locked {
        return Ok(None);
    }
    let outcome = refresh_locked(pool, options).await;
    sqlx::query("SELECT pg_advisory_unlock($1)")
        .bind(PAGERANK_LOCK)
        .execute(&mut *lock)
        .await?;
    outcome.map(Some)
}

async fn refresh_locked(
    pool: &PgPool,
    options: PageRankOptions,
) -> Result<PageRankRun, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // One snapshot for the graph and the seeds.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    let rows: Vec<(String, String)> =
        sqlx::query_as("SELECT party_id, neighbour_id FROM social_adjacency")
            .fetch_all(&mut *tx)
            .await?;
    let defaulters: Vec<String> =
        sqlx::query_scalar("SELECT party_id FROM credit_parties WHERE defaulter_since IS NOT NULL")
            .fetch_all(&mut *tx)
            .await?;
    tx.commit().await?;

    let (names, rank) = party_pagerank(&rows, &defaulters, options);
    let arcs = rows.len();
    let seeds = defaulters.len();

    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM pagerank_scores")
        .execute(&mut *tx)
        .await?;
    let scored: Vec<(&str, f64)> = names
        .iter()
        .zip(&rank.scores)
        .filter(|(_, score)| **score > 0.0)
        .map(|(name, score)| (name.as_str(), *score))
        .collect();
    for chunk in scored.chunks(WRITE_CHUNK_ROWS) {
        let parties: Vec<&str> = chunk.iter().map(|(name, _)| *name).collect();
        let scores: Vec<f64> = chunk.iter().map(|(_, score)| *score).collect();
        sqlx::query(
            "INSERT INTO pagerank_scores (party_id, score) \
             SELECT * FROM unnest($1::text[], $2::float8[])",
        )
        .bind(&parties)
        .bind(&scores)
        .execute(&mut *tx)
        .await?;
    }
    let run = PageRankRun {
        parties: names.len(),
        arcs,
        seeds,
        iterations: rank.iterations,
        residual: rank.residual,
    };
    sqlx::query(
        "INSERT INTO pagerank_runs (parties, edges, seeds, iterations, residual) \
         VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(run.parties as i64)
    .bind(run.arcs as i64)
    .bind(run.seeds as i64)
    .bind(i32::try_from(run.iterations).unwrap_or(i32::MAX))
    .bind(run.residual)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(run)
}
