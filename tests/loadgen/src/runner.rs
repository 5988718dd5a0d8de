//! The closed loop: each worker issues its next call as soon as the previous one
//! completes. Every worker owns its histogram and error counts (no lock on the hot
//! path); they are merged once all workers have stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use tonic::Code;
use tonic::transport::Channel;

use crate::report::{LatencyMs, RunReport};
use crate::scenario::{Bearer, Scenario, Worker};

/// Latencies above this (in µs) are recorded as this; calls time out well before.
const LATENCY_MAX_US: u64 = 3_600_000_000;
const SIGNIFICANT_DIGITS: u8 = 3;
/// gRPC status codes are 0..=16.
const CODES: usize = 17;

/// When the measured window ends.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub warmup: Duration,
    /// Measured time; a run bounded by requests only still stops at `time_limit`.
    pub duration: Option<Duration>,
    /// Measured calls (warm-up calls are not counted).
    pub requests: Option<u64>,
    /// Hard ceiling on the measured window whatever else is set.
    pub time_limit: Duration,
}

/// What the run needs besides the scenario.
#[derive(Debug)]
pub struct Plan {
    pub scenario: &'static str,
    pub target: String,
    pub concurrency: usize,
    pub channels: Vec<Channel>,
    pub bearer: Bearer,
    pub limits: Limits,
    /// Set on Ctrl-C: workers stop after their current call.
    pub interrupted: Arc<AtomicBool>,
}

struct Shared {
    measure_from: Instant,
    measure_until: Instant,
    request_budget: Option<u64>,
    issued: AtomicU64,
    interrupted: Arc<AtomicBool>,
}

struct WorkerStats {
    latency_us: Histogram<u64>,
    errors: [u64; CODES],
    first_error: [Option<String>; CODES],
    last_completion: Option<Instant>,
}

impl WorkerStats {
    fn new() -> anyhow::Result<Self> {
        Ok(Self {
            latency_us: Histogram::new_with_bounds(1, LATENCY_MAX_US, SIGNIFICANT_DIGITS)?,
            errors: [0; CODES],
            first_error: Default::default(),
            last_completion: None,
        })
    }
}

async fn worker_loop<W: Worker>(mut worker: W, shared: Arc<Shared>) -> anyhow::Result<WorkerStats> {
    let mut stats = WorkerStats::new()?;
    loop {
        let started = Instant::now();
        if started >= shared.measure_until || shared.interrupted.load(Ordering::Relaxed) {
            break;
        }
        let measured = started >= shared.measure_from;
        if measured
            && let Some(budget) = shared.request_budget
            && shared.issued.fetch_add(1, Ordering::Relaxed) >= budget
        {
            break;
        }
        let outcome = worker.call().await;
        if !measured {
            continue;
        }
        let done = Instant::now();
        stats.last_completion = Some(done);
        match outcome {
            Ok(()) => {
                let micros = u64::try_from((done - started).as_micros()).unwrap_or(u64::MAX);
                stats.latency_us.saturating_record(micros);
            }
            Err(status) => {
                let index = (status.code() as usize).min(CODES - 1);
                stats.errors[index] += 1;
                if stats.first_error[index].is_none() {
                    stats.first_error[index] = Some(status.message().chars().take(200).collect());
                }
            }
        }
    }
    Ok(stats)
}

/// Runs `scenario` under `plan` and merges the workers' results.
pub async fn run<S: Scenario>(scenario: S, plan: Plan) -> anyhow::Result<RunReport> {
    anyhow::ensure!(!plan.channels.is_empty(), "no connection to run on");
    let workers = (0..plan.concurrency)
        .map(|index| {
            let channel = plan.channels[index % plan.channels.len()].clone();
            scenario.worker(index, channel, plan.bearer.clone())
        })
        .collect::<anyhow::Result<Vec<_>>>()
        .context("preparing the workers")?;

    let start = Instant::now();
    let measure_from = start + plan.limits.warmup;
    let window = plan
        .limits
        .duration
        .map_or(plan.limits.time_limit, |d| d.min(plan.limits.time_limit));
    let shared = Arc::new(Shared {
        measure_from,
        measure_until: measure_from + window,
        request_budget: plan.limits.requests,
        issued: AtomicU64::new(0),
        interrupted: plan.interrupted.clone(),
    });

    let mut tasks = tokio::task::JoinSet::new();
    for worker in workers {
        tasks.spawn(worker_loop(worker, shared.clone()));
    }
    let mut latency_us = Histogram::<u64>::new_with_bounds(1, LATENCY_MAX_US, SIGNIFICANT_DIGITS)?;
    let mut errors = [0u64; CODES];
    let mut first_error: [Option<String>; CODES] = Default::default();
    let mut last_completion: Option<Instant> = None;
    while let Some(joined) = tasks.join_next().await {
        let stats = joined.context("a worker panicked")??;
        latency_us.add(&stats.latency_us)?;
        for (code, n) in stats.errors.iter().enumerate() {
            errors[code] += n;
            if first_error[code].is_none() {
                first_error[code].clone_from(&stats.first_error[code]);
            }
        }
        last_completion = last_completion.max(stats.last_completion);
    }
    let finished = Instant::now();

    let ok = latency_us.len();
    let error_total: u64 = errors.iter().sum();
    let elapsed = last_completion
        .unwrap_or(finished)
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    let mut errors_by_code = BTreeMap::new();
    let mut first_error_by_code = BTreeMap::new();
    for (index, n) in errors.iter().enumerate() {
        if *n > 0 {
            let name = code_name(Code::from(index as i32)).to_owned();
            if let Some(message) = first_error[index].take() {
                first_error_by_code.insert(name.clone(), message);
            }
            errors_by_code.insert(name, *n);
        }
    }
    let stopped_by = if plan.interrupted.load(Ordering::Relaxed) {
        "interrupted"
    } else if plan
        .limits
        .requests
        .is_some_and(|budget| shared.issued.load(Ordering::Relaxed) >= budget)
    {
        "requests"
    } else if plan
        .limits
        .duration
        .is_some_and(|d| d <= plan.limits.time_limit)
    {
        "duration"
    } else {
        "time_limit"
    };
    Ok(RunReport {
        scenario: plan.scenario.to_owned(),
        target: plan.target,
        concurrency: plan.concurrency,
        connections: plan.channels.len(),
        warmup_seconds: plan.limits.warmup.as_secs(),
        elapsed_seconds: elapsed,
        requests: ok + error_total,
        ok,
        errors: error_total,
        errors_by_code,
        first_error_by_code,
        throughput_rps: if elapsed > 0.0 {
            ok as f64 / elapsed
        } else {
            0.0
        },
        latency_ms: LatencyMs::from_micros(&latency_us),
        stopped_by: stopped_by.to_owned(),
        loadgen_version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// The canonical gRPC name of `code` (as in the spec and grpcurl's output).
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tonic::Status;

    /// Fails every third call; otherwise sleeps briefly.
    struct Fake {
        calls: Arc<AtomicUsize>,
    }

    impl Worker for Fake {
        async fn call(&mut self) -> Result<(), Status> {
            let n = self.calls.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_micros(200)).await;
            if n % 3 == 2 {
                Err(Status::unavailable("fake"))
            } else {
                Ok(())
            }
        }
    }

    struct FakeScenario(Arc<AtomicUsize>);

    impl Scenario for FakeScenario {
        type Worker = Fake;
        async fn prepare(_: &crate::scenario::Setup) -> anyhow::Result<Self> {
            Ok(Self(Arc::default()))
        }
        fn worker(&self, _: usize, _: Channel, _: Bearer) -> anyhow::Result<Fake> {
            Ok(Fake {
                calls: self.0.clone(),
            })
        }
    }

    fn plan(limits: Limits) -> Plan {
        let channel = Channel::from_static("http://127.0.0.1:1").connect_lazy();
        Plan {
            scenario: "fake",
            target: "http://127.0.0.1:1".into(),
            concurrency: 4,
            channels: vec![channel],
            bearer: Bearer::default(),
            limits,
            interrupted: Arc::default(),
        }
    }

    #[tokio::test]
    async fn request_budget_counts_measured_calls_only() {
        let calls = Arc::new(AtomicUsize::new(0));
        let limits = Limits {
            warmup: Duration::from_millis(50),
            duration: None,
            requests: Some(300),
            time_limit: Duration::from_secs(30),
        };
        let report = run(FakeScenario(calls.clone()), plan(limits))
            .await
            .unwrap();
        assert_eq!(report.requests, 300);
        assert_eq!(report.ok + report.errors, 300);
        assert!(report.errors >= 90 && report.errors <= 110, "{report:?}");
        assert_eq!(report.errors_by_code["UNAVAILABLE"], report.errors);
        assert_eq!(report.first_error_by_code["UNAVAILABLE"], "fake");
        assert_eq!(report.stopped_by, "requests");
        // Warm-up calls happened but are not in the report.
        assert!(calls.load(Ordering::Relaxed) > 300);
        assert!(report.latency_ms.p50 >= 0.2, "{:?}", report.latency_ms);
    }

    #[tokio::test]
    async fn duration_bounds_the_run() {
        let limits = Limits {
            warmup: Duration::ZERO,
            duration: Some(Duration::from_millis(300)),
            requests: None,
            time_limit: Duration::from_secs(30),
        };
        let started = Instant::now();
        let report = run(FakeScenario(Arc::default()), plan(limits))
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(report.elapsed_seconds >= 0.29 && report.elapsed_seconds < 1.0);
        assert!(report.requests > 0);
        assert_eq!(report.stopped_by, "duration");
    }

    #[test]
    fn code_names_are_canonical() {
        assert_eq!(code_name(Code::DeadlineExceeded), "DEADLINE_EXCEEDED");
        assert_eq!(code_name(Code::from(14)), "UNAVAILABLE");
    }
}
