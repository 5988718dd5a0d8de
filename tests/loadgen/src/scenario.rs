//! What a worker does in its loop. A scenario is prepared once (fixtures, tokens) and
//! then hands each worker its own state bound to one of the shared HTTP/2 connections.
//!
//! Adding a scenario (`borrow`, `repay`, ...): implement [`Scenario`] and [`Worker`],
//! add a variant to [`ScenarioName`] and one arm to `main::run_scenario`.

use std::future::Future;

use anyhow::Context as _;
use clap::ValueEnum;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// The scenarios `--scenario` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ScenarioName {
    /// `grpc.health.v1.Health/Check`: no database, no auth; the gRPC ceiling.
    Health,
    /// Outbox → relay → Redis Stream → consumer group, in process (no gRPC): events/s
    /// and commit-to-handler latency.
    EventsRelay,
    /// Events on the stream → notifications → PUSH webhooks delivered to a local
    /// receiver, notification in process: webhooks/s and event-to-delivery latency.
    NotificationThroughput,
    /// Ledger `CreateTransfers` between platform sub-accounts, `--transfers-per-call`
    /// each: transfers/s and per-call latency.
    LedgerTransfers,
    /// Ledger `Disburse` across 1,000 customers with open credit lines.
    LedgerDisburse,
    /// Ledger `Repay` of 1 CNY at a time on loans booked first (1,000 customers x 3).
    LedgerRepay,
    /// Ledger `RunEndOfDay` wall time over `--eod-loans` active loans.
    LedgerEod,
    /// Scoring `Evaluate` for applicants with 50 contacts in a 100,000-party graph
    /// (loaded first through IngestSignals).
    ScoringEvaluate,
    /// Scoring `IngestSignals`, one batch of 1,000 contacts per call: signals/s.
    ScoringIngest,
    /// Account `GetCreditLine` on Redis cache hits, each customer with their own token
    /// (customers onboarded and approved first, through scoring and the ledger).
    AccountCreditLine,
    /// Account `Borrow` through scoring's Evaluate(DRAWDOWN) and the ledger's Disburse.
    AccountBorrow,
}

impl ScenarioName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Health => "health",
            Self::EventsRelay => "events-relay",
            Self::NotificationThroughput => "notification-throughput",
            Self::LedgerTransfers => "ledger-transfers",
            Self::LedgerDisburse => "ledger-disburse",
            Self::LedgerRepay => "ledger-repay",
            Self::LedgerEod => "ledger-eod",
            Self::ScoringEvaluate => "scoring-evaluate",
            Self::ScoringIngest => "scoring-ingest",
            Self::AccountCreditLine => "account-credit-line",
            Self::AccountBorrow => "account-borrow",
        }
    }
}

/// What every scenario can use while it prepares.
#[derive(Debug, Clone)]
pub struct Setup {
    /// A connection reserved for setup calls (fixtures), not used by workers.
    pub channel: Channel,
    /// Sent as `authorization: Bearer <token>` on every call when present.
    pub bearer: Bearer,
    /// `--health-service`: the service name the health scenario asks about.
    pub health_service: String,
}

/// One scenario: prepared once, then cloned into per-worker state.
pub trait Scenario: Sized + Send + Sync + 'static {
    type Worker: Worker;

    /// One-time setup before any worker starts (create customers, accounts, ...).
    fn prepare(setup: &Setup) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// The state of worker `index`, whose calls go over `channel`.
    fn worker(
        &self,
        index: usize,
        channel: Channel,
        bearer: Bearer,
    ) -> anyhow::Result<Self::Worker>;
}

/// One worker's state: `call` issues exactly one request and waits for its answer.
pub trait Worker: Send + 'static {
    /// `Ok` when the call succeeded and its answer is what the scenario expects;
    /// otherwise the status whose code is counted.
    fn call(&mut self) -> impl Future<Output = Result<(), Status>> + Send;
}

/// Adds `authorization: Bearer <token>` when a token is configured.
#[derive(Clone, Default)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl std::fmt::Debug for Bearer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token.
        f.debug_tuple("Bearer")
            .field(&self.0.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Bearer {
    pub fn new(token: Option<&str>) -> anyhow::Result<Self> {
        match token.map(str::trim).filter(|t| !t.is_empty()) {
            None => Ok(Self(None)),
            Some(token) => {
                let mut value: MetadataValue<Ascii> = format!("Bearer {token}")
                    .parse()
                    .context("the token is not a valid header value (printable ASCII only)")?;
                value.set_sensitive(true);
                Ok(Self(Some(value)))
            }
        }
    }
}

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// `grpc.health.v1.Health/Check`; a non-`SERVING` answer counts as `UNAVAILABLE`.
#[derive(Debug)]
pub struct Health {
    service: String,
}

impl Scenario for Health {
    type Worker = HealthWorker;

    async fn prepare(setup: &Setup) -> anyhow::Result<Self> {
        // Fail fast, with a readable message, when the target does not serve health.
        let mut client =
            HealthClient::with_interceptor(setup.channel.clone(), setup.bearer.clone());
        let answer = client
            .check(HealthCheckRequest {
                service: setup.health_service.clone(),
            })
            .await
            .context("health check before the run failed")?;
        let status = answer.into_inner().status();
        anyhow::ensure!(
            status == ServingStatus::Serving,
            "the target answers health {status:?}, not SERVING"
        );
        Ok(Self {
            service: setup.health_service.clone(),
        })
    }

    fn worker(
        &self,
        _index: usize,
        channel: Channel,
        bearer: Bearer,
    ) -> anyhow::Result<HealthWorker> {
        Ok(HealthWorker {
            client: HealthClient::with_interceptor(channel, bearer),
            service: self.service.clone(),
        })
    }
}

#[derive(Debug)]
pub struct HealthWorker {
    client: HealthClient<InterceptedService<Channel, Bearer>>,
    service: String,
}

impl Worker for HealthWorker {
    async fn call(&mut self) -> Result<(), Status> {
        let answer = self
            .client
            .check(HealthCheckRequest {
                service: self.service.clone(),
            })
            .await?;
        match answer.into_inner().status() {
            ServingStatus::Serving => Ok(()),
            other => Err(Status::unavailable(format!("health answered {other:?}"))),
        }
    }
}
