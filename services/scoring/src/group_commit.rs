//! Group commit of Evaluate's decisions (issue 9): a commit per decision bounded
//! Evaluate's throughput, so the decisions of concurrent requests are stored together,
//! with their request keys, in one statement and one commit
//! (`store::decisions::store_decisions`). Each request waits for its batch's commit
//! before it answers: still durable before the reply (unless
//! `SCORING_DECISION_ASYNC_COMMIT`), and ExplainDecision finds what was answered.
//!
//! Bounded: at most [`QUEUE_MAX`] decisions wait (senders wait beyond it), a batch holds
//! at most [`BATCH_MAX`], and [`WRITERS`] batches are written at once (one forms while
//! the other commits). Nothing waits for a batch to fill: a writer takes whatever is
//! queued when it is free, so a lone request is written alone at once.
//!
//! Idempotency is kept: a key already stored (or stored by an earlier request of the
//! same batch) stores nothing and its caller is told so, to replay the stored answer as
//! before. A batch that fails stores nothing (one statement) and every caller in it gets
//! the error: UNAVAILABLE when the database is unreachable, else INTERNAL.

use std::collections::HashSet;
use std::sync::Arc;

use sqlx::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{
    error::ScoringError,
    store::decisions::{KeyedDecision, store_decisions},
};

/// Most decisions in one batch (one statement).
pub const BATCH_MAX: usize = 64;
/// Most decisions queued for the writers.
pub const QUEUE_MAX: usize = 1_024;
/// Batches written at once (each on its own pooled connection).
pub const WRITERS: usize = 2;

type Answer = Result<bool, ScoringError>;

struct Job {
    row: KeyedDecision,
    done: oneshot::Sender<Answer>,
}

/// Hands decisions to the writer tasks (cheap to clone). The tasks stop when the last
/// clone is dropped, after writing what was queued.
#[derive(Debug, Clone)]
pub struct DecisionWriter {
    queue: mpsc::Sender<Job>,
}

fn stopped() -> ScoringError {
    ScoringError::Internal("the decision writer stopped".into())
}

impl DecisionWriter {
    /// Starts the writer tasks on the current Tokio runtime.
    pub fn spawn(pool: PgPool, async_commit: bool) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE_MAX);
        let jobs = Arc::new(Mutex::new(jobs));
        for _ in 0..WRITERS {
            tokio::spawn(run(pool.clone(), jobs.clone(), async_commit));
        }
        Self { queue }
    }

    /// Stores `row` with its key in the next batch and waits for the batch's commit:
    /// `true` if stored, `false` if the key was already taken (nothing stored for it).
    pub async fn store(&self, row: KeyedDecision) -> Answer {
        let (done, answer) = oneshot::channel();
        self.queue
            .send(Job { row, done })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(pool: PgPool, jobs: Arc<Mutex<mpsc::Receiver<Job>>>, async_commit: bool) {
    loop {
        let mut batch = Vec::new();
        {
            // One writer collects at a time; the other may be writing meanwhile.
            let mut jobs = jobs.lock().await;
            match jobs.recv().await {
                Some(job) => batch.push(job),
                None => return,
            }
            while batch.len() < BATCH_MAX {
                match jobs.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
        }
        write(&pool, batch, async_commit).await;
    }
}

/// The error each caller of a failed batch gets.
fn batch_error(err: &sqlx::Error) -> ScoringError {
    if microloan_platform::status::is_connection_lost(err) {
        ScoringError::DependencyUnavailable {
            dependency: "postgres".into(),
            message: "the database is unavailable; retry with the same request_id".into(),
        }
    } else {
        ScoringError::Internal(format!("storing a batch of decisions: {err}"))
    }
}

async fn write(pool: &PgPool, batch: Vec<Job>, async_commit: bool) {
    // A key twice in one batch: only the first is written; the other finds it taken
    // and replays it (answered once, as for duplicates in different batches).
    let mut keys = HashSet::with_capacity(batch.len());
    let rows: Vec<&KeyedDecision> = batch
        .iter()
        .map(|job| &job.row)
        .filter(|row| keys.insert((&row.caller, &row.rpc, &row.request_id)))
        .collect();
    let stored = async {
        let mut conn = pool.acquire().await?;
        store_decisions(&mut conn, &rows, async_commit).await
    }
    .await;
    match stored {
        Ok(stored) => {
            for job in batch {
                let _ = job.done.send(Ok(stored.contains(&job.row.decision_id)));
            }
        }
        Err(err) => {
            tracing::warn!(%err, decisions = batch.len(), "storing a batch of decisions failed");
            for job in batch {
                let _ = job.done.send(Err(batch_error(&err)));
            }
        }
    }
}
