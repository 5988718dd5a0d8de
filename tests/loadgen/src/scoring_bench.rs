//! The scoring scenarios (issue 9), against a running scoring service with a service
//! token minted from `LOADGEN_JWT_SECRET` unless `--token` is given:
//!
//! - `scoring-evaluate`: first loads a 100,000-party social graph through
//!   IngestSignals (every party a customer; 1,000 of them, the applicants, with 50
//!   CONTACT edges each; every other party with one edge to a random party; 2% of the
//!   parties known defaulters through a WRITTEN_OFF outcome), then `Evaluate`
//!   (CREDIT_LINE_APPLICATION, a declared income) for a random applicant per call.
//! - `scoring-ingest`: IngestSignals calls of one batch of 1,000 CONTACT edges between
//!   random parties of a 100,000-party id space. Throughput and `requests` count
//!   **signals**; latencies are per call (one batch).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use microloan_proto::common::v1::{DecisionPurpose, Money};
use microloan_proto::google::r#type::Date;
use microloan_proto::scoring::v1::{
    EvaluateRequest, IngestSignalsRequest, RepaymentOutcome, RepaymentOutcomeKind, Signal,
    SocialEdge, SocialEdgeKind, scoring_service_client::ScoringServiceClient, signal::Kind,
};
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::ledger_bench::bearer;
use crate::report::RunReport;
use crate::runner::{self, Limits, Plan};
use crate::scenario::{Bearer, Scenario, ScenarioName, Setup, Worker};
use crate::{DEFAULT_DURATION_SECONDS, DURATION_MAX_SECONDS, RunArgs, connect, endpoint};

type Client = ScoringServiceClient<InterceptedService<Channel, Bearer>>;

/// Parties in the graph (issue 9: a 100,000-party graph).
const PARTIES: usize = 100_000;
/// Applicants evaluated, each with `CONTACTS_PER_APPLICANT` contacts.
const APPLICANTS: usize = 1_000;
const CONTACTS_PER_APPLICANT: usize = 50;
/// One in this many parties is a known defaulter.
const DEFAULTER_EVERY: usize = 50;
/// Signals per IngestSignals batch (the proto's maximum).
const BATCH: usize = 1_000;
/// Concurrent IngestSignals streams while loading the graph.
const LOAD_CONCURRENCY: usize = 4;

/// A deterministic party id (a UUID, so any party may also be a customer).
fn party(index: usize) -> String {
    Uuid::from_u128(0x5C0_0000_0000_0000_0000_0000_0000_0000 | index as u128).to_string()
}

/// A cheap deterministic mix of a counter (splitmix64).
fn mix(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Seconds since the epoch, for the signals' required times.
fn now_seconds() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_secs() as i64)
}

fn contact(from: usize, to: usize) -> Signal {
    let mut edge = SocialEdge {
        source_party_id: party(from),
        target_party_id: party(to),
        kind: SocialEdgeKind::Contact as i32,
        weight: "1".into(),
        occur_time: Some(Default::default()),
    };
    if let Some(time) = edge.occur_time.as_mut() {
        time.seconds = now_seconds();
    }
    Signal {
        kind: Some(Kind::SocialEdge(edge)),
    }
}

fn written_off(customer: usize) -> Signal {
    let mut outcome = RepaymentOutcome {
        customer_id: party(customer),
        loan_id: Uuid::from_u128(customer as u128 + 1).to_string(),
        installment_sequence: 1,
        due_date: Some(Date {
            year: 2026,
            month: 1,
            day: 15,
        }),
        outcome: RepaymentOutcomeKind::WrittenOff as i32,
        days_past_due: 180,
        amount_due: Some(Money {
            currency_code: "CNY".into(),
            minor_units: 100_000,
        }),
        amount_paid: Some(Money {
            currency_code: "CNY".into(),
            minor_units: 0,
        }),
        observe_time: Some(Default::default()),
    };
    if let Some(time) = outcome.observe_time.as_mut() {
        time.seconds = now_seconds();
    }
    Signal {
        kind: Some(Kind::RepaymentOutcome(outcome)),
    }
}

/// A batch of `BATCH` random contacts from counter `n` on.
fn random_contacts(n: u64) -> Vec<Signal> {
    (0..BATCH as u64)
        .map(|i| {
            let r = mix(n.wrapping_mul(BATCH as u64).wrapping_add(i));
            let from = (r % PARTIES as u64) as usize;
            let to = ((r >> 32) % PARTIES as u64) as usize;
            contact(from, if to == from { (to + 1) % PARTIES } else { to })
        })
        .collect()
}

async fn ingest(client: &mut Client, signals: Vec<Signal>) -> Result<(), Status> {
    let batch = IngestSignalsRequest {
        request_id: Uuid::now_v7().to_string(),
        signals,
    };
    let summary = client
        .ingest_signals(tokio_stream::once(batch))
        .await?
        .into_inner();
    if summary.signals_rejected > 0 {
        return Err(Status::invalid_argument(format!(
            "{} signals rejected: {:?}",
            summary.signals_rejected,
            summary.rejections.first()
        )));
    }
    Ok(())
}

/// The graph `scoring-evaluate` runs on, loaded in batches of 1,000 with 4 streams.
async fn load_graph(client: &Client) -> anyhow::Result<()> {
    let mut signals: Vec<Signal> = Vec::with_capacity(PARTIES + APPLICANTS * 50);
    for applicant in 0..APPLICANTS {
        for k in 0..CONTACTS_PER_APPLICANT {
            let r = mix((applicant * CONTACTS_PER_APPLICANT + k) as u64);
            let to = APPLICANTS + (r % (PARTIES - APPLICANTS) as u64) as usize;
            signals.push(contact(applicant, to));
        }
    }
    for from in APPLICANTS..PARTIES {
        let to = (mix(from as u64 ^ 0xABCD) % PARTIES as u64) as usize;
        signals.push(contact(
            from,
            if to == from { (to + 1) % PARTIES } else { to },
        ));
    }
    signals.extend(
        (APPLICANTS..PARTIES)
            .step_by(DEFAULTER_EVERY)
            .map(written_off),
    );
    let batches: Vec<Vec<Signal>> = signals.chunks(BATCH).map(<[Signal]>::to_vec).collect();
    let total = signals.len();
    let started = std::time::Instant::now();
    let batches = Arc::new(std::sync::Mutex::new(batches));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..LOAD_CONCURRENCY {
        let mut client = client.clone();
        let batches = batches.clone();
        tasks.spawn(async move {
            loop {
                let next = batches.lock().expect("batches").pop();
                let Some(batch) = next else {
                    return anyhow::Ok(());
                };
                ingest(&mut client, batch).await.context("IngestSignals")?;
            }
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    eprintln!(
        "loadgen: loaded {total} signals ({PARTIES} parties) in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

pub async fn run(args: &RunArgs) -> anyhow::Result<RunReport> {
    let concurrency = args.concurrency as usize;
    let connections = (args.connections as usize).min(concurrency);
    let bearer = bearer(args)?;
    let endpoint = endpoint(args)?.timeout(Duration::from_secs(60));
    let setup = connect(&endpoint, &args.target).await?;
    let client = ScoringServiceClient::with_interceptor(setup, bearer.clone());
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(connect(&endpoint, &args.target).await?);
    }
    let duration = args.duration_seconds.or(Some(DEFAULT_DURATION_SECONDS));
    let limits = Limits {
        warmup: Duration::from_secs(args.warmup_seconds),
        duration: duration.map(Duration::from_secs),
        requests: args.requests,
        time_limit: Duration::from_secs(DURATION_MAX_SECONDS),
    };
    let plan = Plan {
        scenario: args.scenario.as_str(),
        target: args.target.clone(),
        concurrency,
        channels,
        bearer,
        limits,
        interrupted: Arc::default(),
    };
    match args.scenario {
        ScenarioName::ScoringEvaluate => {
            load_graph(&client).await?;
            let mut report = runner::run(Evaluate, plan).await?;
            report.scenario = format!(
                "scoring-evaluate ({APPLICANTS} applicants x {CONTACTS_PER_APPLICANT} contacts, {PARTIES} parties)"
            );
            Ok(report)
        }
        ScenarioName::ScoringIngest => {
            let mut report = runner::run(Ingest::default(), plan).await?;
            report.scenario = format!("scoring-ingest ({BATCH}/batch, signals/s)");
            report.requests *= BATCH as u64;
            report.ok *= BATCH as u64;
            report.throughput_rps *= BATCH as f64;
            Ok(report)
        }
        other => anyhow::bail!("{} is not a scoring scenario", other.as_str()),
    }
}

/// `scoring-evaluate`: one applicant per call, chosen from a per-worker counter.
#[derive(Debug)]
struct Evaluate;

impl Scenario for Evaluate {
    type Worker = EvaluateWorker;

    async fn prepare(_setup: &Setup) -> anyhow::Result<Self> {
        Ok(Self)
    }

    fn worker(
        &self,
        index: usize,
        channel: Channel,
        bearer: Bearer,
    ) -> anyhow::Result<Self::Worker> {
        Ok(EvaluateWorker {
            client: ScoringServiceClient::with_interceptor(channel, bearer),
            next: index as u64 * 7_919,
        })
    }
}

struct EvaluateWorker {
    client: Client,
    next: u64,
}

impl Worker for EvaluateWorker {
    async fn call(&mut self) -> Result<(), Status> {
        self.next += 1;
        let applicant = (mix(self.next) % APPLICANTS as u64) as usize;
        let answer = self
            .client
            .evaluate(EvaluateRequest {
                request_id: Uuid::now_v7().to_string(),
                customer_id: party(applicant),
                purpose: DecisionPurpose::CreditLineApplication as i32,
                annual_income: Some(Money {
                    currency_code: "CNY".into(),
                    minor_units: 12_000_000,
                }),
                ..EvaluateRequest::default()
            })
            .await?
            .into_inner();
        match answer.decision {
            Some(_) => Ok(()),
            None => Err(Status::internal("Evaluate answered no decision")),
        }
    }
}

/// `scoring-ingest`: batches of random contacts; a shared counter keeps them distinct.
#[derive(Debug, Default)]
struct Ingest {
    next: Arc<AtomicU64>,
}

impl Scenario for Ingest {
    type Worker = IngestWorker;

    async fn prepare(_setup: &Setup) -> anyhow::Result<Self> {
        Ok(Self::default())
    }

    fn worker(
        &self,
        _index: usize,
        channel: Channel,
        bearer: Bearer,
    ) -> anyhow::Result<Self::Worker> {
        Ok(IngestWorker {
            client: ScoringServiceClient::with_interceptor(channel, bearer),
            next: self.next.clone(),
        })
    }
}

struct IngestWorker {
    client: Client,
    next: Arc<AtomicU64>,
}

impl Worker for IngestWorker {
    async fn call(&mut self) -> Result<(), Status> {
        // Counters far from the graph load's, so the edges are new ones.
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1_000_000;
        ingest(&mut self.client, random_contacts(n)).await
    }
}
