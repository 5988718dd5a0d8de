//! The gRPC face of the scoring service: proto ⇄ domain and errors → `Status`. RPCs not yet
//! implemented answer UNIMPLEMENTED (generated default methods).

use microloan_platform::auth::{Caller, PermissionTable, Role};
use microloan_platform::client::PeerChannel;
use microloan_proto::scoring::v1::{
    EvaluateRequest, EvaluateResponse, ExplainDecisionRequest, ExplainDecisionResponse,
    GetModelInfoRequest, GetModelInfoResponse, IngestSignalsRequest, IngestSignalsResponse,
    RunPortfolioReviewRequest, RunPortfolioReviewResponse, SignalRejection,
    scoring_service_server::{SERVICE_NAME, ScoringService},
};
use microloan_proto::{
    account::v1::account_service_client::AccountServiceClient,
    ledger::v1::ledger_service_client::LedgerServiceClient,
};
use sqlx::PgPool;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    decision::Decisions,
    error::ScoringError,
    features::cache::GraphCache,
    ingest::{BatchOutcome, apply_batch},
    metrics::Metrics,
    policy::PolicyConfig,
    refresh::PageRankTrigger,
    review::Reviewer,
};

/// Rejections detailed in an IngestSignals summary (the rest are only counted).
const REJECTIONS_LISTED_MAX: usize = 100;

const STAFF: &[Role] = &[Role::Operator, Role::Service];

/// Who may call what, exactly as each RPC's `Roles:` comment says (checked by test).
/// Customers never reach scoring: account asks on their behalf.
pub fn permissions() -> PermissionTable {
    PermissionTable::new(
        SERVICE_NAME,
        &[
            ("IngestSignals", STAFF),
            ("Evaluate", STAFF),
            ("ExplainDecision", STAFF),
            ("GetModelInfo", STAFF),
            ("RunPortfolioReview", STAFF),
        ],
    )
}

#[derive(Debug, Clone)]
pub struct ScoringApi {
    pool: PgPool,
    metrics: Metrics,
    pagerank: PageRankTrigger,
    graph: GraphCache,
    decisions: std::sync::Arc<Decisions>,
    reviewer: Reviewer,
    analyze: std::sync::Arc<AnalyzeAfterIngest>,
}

/// Signals ingested between two background `ANALYZE`s of the signal tables.
const ANALYZE_EVERY_SIGNALS: u64 = 100_000;
const ANALYZED_TABLES: &str = "ANALYZE social_adjacency, social_edges, identity_links, \
     identifier_customers, installment_states, repayment_outcomes, credit_parties, \
     behaviour_months";

/// Keeps the planner's statistics current after bulk ingests: this Postgres runs
/// without autovacuum, and plans made on never-analyzed tables scanned the whole
/// adjacency per Evaluate (docs/benchmarks.md). One ANALYZE at a time, in the
/// background, every `ANALYZE_EVERY_SIGNALS` signals.
#[derive(Debug, Default)]
struct AnalyzeAfterIngest {
    since_signals: std::sync::atomic::AtomicU64,
    running: std::sync::atomic::AtomicBool,
}

impl AnalyzeAfterIngest {
    fn signals(self: &std::sync::Arc<Self>, pool: &PgPool, count: u64) {
        use std::sync::atomic::Ordering;
        let before = self.since_signals.fetch_add(count, Ordering::Relaxed);
        if before + count < ANALYZE_EVERY_SIGNALS || self.running.swap(true, Ordering::AcqRel) {
            return;
        }
        self.since_signals.store(0, Ordering::Relaxed);
        let (pool, this) = (pool.clone(), self.clone());
        tokio::spawn(async move {
            if let Err(err) = sqlx::query(ANALYZED_TABLES).execute(&pool).await {
                tracing::warn!(%err, "ANALYZE after ingest failed");
            }
            this.running.store(false, Ordering::Release);
        });
    }
}

/// Clients for the services this one calls.
#[derive(Debug, Clone)]
pub struct Peers {
    pub account: AccountServiceClient<PeerChannel>,
    pub ledger: LedgerServiceClient<PeerChannel>,
}

impl ScoringApi {
    pub fn new(
        pool: PgPool,
        peers: Peers,
        metrics: Metrics,
        pagerank: PageRankTrigger,
        graph: GraphCache,
        decisions: Decisions,
        policy: PolicyConfig,
    ) -> Self {
        Self {
            reviewer: Reviewer {
                pool: pool.clone(),
                account: peers.account,
                ledger: peers.ledger,
                policy,
            },
            pool,
            metrics,
            pagerank,
            graph,
            decisions: std::sync::Arc::new(decisions),
            analyze: std::sync::Arc::default(),
        }
    }

    /// Applies the stream batch by batch, each in its own transaction, and sums them up.
    /// A stream-aborting error leaves the batches before it applied.
    async fn ingest_signals(
        &self,
        caller: &Caller,
        mut stream: Streaming<IngestSignalsRequest>,
    ) -> Result<IngestSignalsResponse, ScoringError> {
        let caller = caller.idempotency_scope();
        let mut summary = IngestSignalsResponse::default();
        let mut batch_index: i32 = 0;
        while let Some(batch) = stream.message().await.map_err(ScoringError::Stream)? {
            summary.batches_received += 1;
            let outcome = apply_batch(&self.pool, &self.graph, &caller, &batch)
                .await
                .inspect_err(|_| self.metrics.batch("refused"))?;
            match outcome {
                BatchOutcome::Duplicate => {
                    self.metrics.batch("duplicate");
                    summary.duplicate_batches += 1;
                }
                BatchOutcome::Applied {
                    counts,
                    rejected,
                    effects,
                } => {
                    self.metrics.batch("applied");
                    if effects.new_defaulters > 0 {
                        self.pagerank.request();
                    }
                    self.metrics.signals(&counts, rejected.len());
                    self.analyze
                        .signals(&self.pool, u64::try_from(counts.total()).unwrap_or(0));
                    summary.signals_accepted += counts.total();
                    summary.social_edges += counts.social_edges;
                    summary.behaviour_events += counts.behaviour_events;
                    summary.identity_sightings += counts.identity_sightings;
                    summary.repayment_outcomes += counts.repayment_outcomes;
                    summary.signals_rejected += rejected.len() as i64;
                    let room = REJECTIONS_LISTED_MAX.saturating_sub(summary.rejections.len());
                    summary
                        .rejections
                        .extend(
                            rejected
                                .into_iter()
                                .take(room)
                                .map(|(signal_index, problem)| SignalRejection {
                                    batch_index,
                                    signal_index: i32::try_from(signal_index).unwrap_or(i32::MAX),
                                    field: problem.field,
                                    description: problem.description,
                                }),
                        );
                }
            }
            batch_index = batch_index.saturating_add(1);
        }
        Ok(summary)
    }
}

#[tonic::async_trait]
impl ScoringService for ScoringApi {
    async fn ingest_signals(
        &self,
        request: Request<Streaming<IngestSignalsRequest>>,
    ) -> Result<Response<IngestSignalsResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.ingest_signals(&caller, request.into_inner()).await?,
        ))
    }

    async fn evaluate(
        &self,
        request: Request<EvaluateRequest>,
    ) -> Result<Response<EvaluateResponse>, Status> {
        let scope = Caller::of(&request)?.idempotency_scope();
        let response = self
            .decisions
            .evaluate(&scope, request.get_ref())
            .await
            .inspect(|response| {
                if let Some(decision) = &response.decision {
                    self.metrics.decision(decision.outcome);
                }
            })?;
        Ok(Response::new(response))
    }

    async fn explain_decision(
        &self,
        request: Request<ExplainDecisionRequest>,
    ) -> Result<Response<ExplainDecisionResponse>, Status> {
        Caller::of(&request)?;
        Ok(Response::new(
            self.decisions.explain(request.get_ref()).await?,
        ))
    }

    async fn get_model_info(
        &self,
        request: Request<GetModelInfoRequest>,
    ) -> Result<Response<GetModelInfoResponse>, Status> {
        Caller::of(&request)?;
        Ok(Response::new(
            self.decisions.model_info(request.get_ref()).await?,
        ))
    }

    async fn run_portfolio_review(
        &self,
        request: Request<RunPortfolioReviewRequest>,
    ) -> Result<Response<RunPortfolioReviewResponse>, Status> {
        let scope = Caller::of(&request)?.idempotency_scope();
        Ok(Response::new(
            self.reviewer
                .run(&self.decisions, &scope, request.get_ref())
                .await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    /// Every RPC has exactly one entry, granting exactly its documented `Roles:`.
    #[test]
    fn the_permission_table_matches_the_proto() {
        microloan_platform::auth::assert_table_matches_proto(
            &super::permissions(),
            microloan_proto::FILE_DESCRIPTOR_SET,
            super::SERVICE_NAME,
        );
    }
}
