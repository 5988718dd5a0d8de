#![forbid(unsafe_code)]
//! `loadgen`: closed-loop gRPC load against one microloan service.
//!
//! ```text
//! loadgen --scenario health --target http://127.0.0.1:50053 \
//!         --concurrency 16 --connections 4 --warmup-seconds 2 --duration-seconds 10
//! loadgen report --format markdown run-1.json run-16.json
//! ```
//!
//! Each of `--concurrency` workers issues its next call as soon as the previous one
//! completes, spread round-robin over `--connections` HTTP/2 connections. Calls that
//! start during the warm-up are not measured. Successful calls' latencies go into an
//! HDR histogram (µs, 3 significant digits); failures are counted by gRPC code. The
//! result is printed as a table (or JSON with `--format json`) and optionally written
//! as JSON to `--json PATH`. The exit code is 1 when no measured call succeeded.

mod account_bench;
mod events_relay;
mod ledger_bench;
mod notification_throughput;
mod report;
mod runner;
mod scenario;
mod scoring_bench;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use tonic::transport::{Channel, Endpoint};

use report::{RunReport, TableStyle};
use runner::{Limits, Plan};
use scenario::{Bearer, Health, Scenario, ScenarioName, Setup};

const DURATION_MAX_SECONDS: u64 = 600;
const WARMUP_MAX_SECONDS: u64 = 300;
const REQUESTS_MAX: u64 = 10_000_000;
const CONCURRENCY_MAX: u64 = 1024;
const CONNECTIONS_MAX: u64 = 256;
const THREADS_MAX: u64 = 256;
const TIMEOUT_MAX_MS: u64 = 600_000;
const DEFAULT_DURATION_SECONDS: u64 = 10;

#[derive(Debug, Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Closed-loop gRPC load generator for the microloan services",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Render the table for JSON results written earlier with `--json`.
    Report(ReportArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// What each call does.
    #[arg(long, value_enum, default_value_t = ScenarioName::Health)]
    scenario: ScenarioName,

    /// The service's gRPC address (plaintext HTTP/2).
    #[arg(long, default_value = "http://127.0.0.1:50053")]
    target: String,

    /// Workers, each with one call in flight at a time.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u64).range(1..=CONCURRENCY_MAX))]
    concurrency: u64,

    /// HTTP/2 connections the workers are spread over (at most one per worker).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u64).range(1..=CONNECTIONS_MAX))]
    connections: u64,

    /// Measured seconds after the warm-up [default: 10 unless --requests is given].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=DURATION_MAX_SECONDS))]
    duration_seconds: Option<u64>,

    /// Measured calls after the warm-up; with --duration-seconds, whichever ends first.
    /// A run bounded only by requests still stops after 600 s.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=REQUESTS_MAX))]
    requests: Option<u64>,

    /// Seconds of load before measuring starts (excluded from all statistics).
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=WARMUP_MAX_SECONDS))]
    warmup_seconds: u64,

    /// Bearer token sent as `authorization: Bearer <token>` on every call (prefer the
    /// environment variable: arguments are visible in `ps`).
    #[arg(long, env = "LOADGEN_TOKEN", hide_env_values = true)]
    token: Option<String>,

    /// Per-call timeout in milliseconds (a timed-out call counts as an error).
    #[arg(long, default_value_t = 5_000, value_parser = clap::value_parser!(u64).range(1..=TIMEOUT_MAX_MS))]
    timeout_ms: u64,

    /// The service name the health scenario asks about ("" = the whole server).
    #[arg(long, default_value = "")]
    health_service: String,

    /// events-relay: the Postgres server (a database `microloan_bench_events` is made
    /// on it).
    #[arg(
        long,
        env = "LOADGEN_DATABASE_URL",
        hide_env_values = true,
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    database_url: String,

    /// events-relay: the Redis server (keys under `bench:events-relay:<run>:`).
    #[arg(
        long,
        env = "LOADGEN_REDIS_URL",
        hide_env_values = true,
        default_value = "redis://127.0.0.1:6379"
    )]
    redis_url: String,

    /// events-relay: events each producer transaction appends.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    events_per_transaction: u64,

    /// ledger-transfers: transfers in each CreateTransfers call.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=1000))]
    transfers_per_call: u64,

    /// account-credit-line, account-borrow: the scoring service the population's
    /// signals are ingested into (account itself is `--target`).
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    scoring_target: String,

    /// account-credit-line, account-borrow: scoring's admin address (host:port); when
    /// given, onboarding waits there for a PageRank refresh of the ingested graph before
    /// anyone applies (as the e2e suite and the demo do), so drawdowns are scored on the
    /// graph the applications saw. Needs a short SCORING_PAGERANK_REFRESH_SECONDS.
    #[arg(long)]
    scoring_admin: Option<String>,

    /// ledger-eod: active loans to book (if fewer are active) before the timed end of day.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    eod_loans: u64,

    /// Tokio worker threads for the load generator [default: one per CPU].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=THREADS_MAX))]
    threads: Option<u64>,

    /// What to print on stdout.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,

    /// Also write the result as one JSON object to this file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct ReportArgs {
    /// How to render the results.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    format: Format,

    /// JSON result files, one row each, in the order given.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// An aligned text table.
    Table,
    /// A Markdown table.
    Markdown,
    /// JSON (one object for a run, an array for `report`).
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Report(args)) => report_files(&args).map(|()| ExitCode::SUCCESS),
        None => run_load(cli.run),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("loadgen: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn report_files(args: &ReportArgs) -> anyhow::Result<()> {
    let mut reports = Vec::with_capacity(args.files.len());
    for path in &args.files {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let report: RunReport = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a loadgen result", path.display()))?;
        reports.push(report);
    }
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&reports)?),
        Format::Table => print!("{}", report::table(&reports, TableStyle::Text)),
        Format::Markdown => print!("{}", report::table(&reports, TableStyle::Markdown)),
    }
    Ok(())
}

fn run_load(args: RunArgs) -> anyhow::Result<ExitCode> {
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = args.threads {
        runtime.worker_threads(threads as usize);
    }
    let runtime = runtime.build().context("starting the tokio runtime")?;
    let report = runtime.block_on(run_scenario(&args))?;

    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &args.json {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    match args.format {
        Format::Json => println!("{json}"),
        Format::Table => print!(
            "{}",
            report::table(std::slice::from_ref(&report), TableStyle::Text)
        ),
        Format::Markdown => print!(
            "{}",
            report::table(std::slice::from_ref(&report), TableStyle::Markdown)
        ),
    }
    if report.ok == 0 {
        eprintln!(
            "loadgen: error: no measured call succeeded ({} failed)",
            report.errors
        );
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

async fn run_scenario(args: &RunArgs) -> anyhow::Result<RunReport> {
    match args.scenario {
        ScenarioName::Health => run_with::<Health>(args).await,
        // The ledger's own RPCs, with their fixtures (see the module).
        ScenarioName::LedgerTransfers
        | ScenarioName::LedgerDisburse
        | ScenarioName::LedgerRepay
        | ScenarioName::LedgerEod => ledger_bench::run(args).await,
        // Scoring's Evaluate over a loaded graph, and IngestSignals (see the module).
        ScenarioName::ScoringEvaluate | ScenarioName::ScoringIngest => {
            scoring_bench::run(args).await
        }
        // Account's GetCreditLine and Borrow over onboarded customers (see the module).
        ScenarioName::AccountCreditLine | ScenarioName::AccountBorrow => {
            account_bench::run(args).await
        }
        // Not a gRPC call: the events pipeline in this process (see its module).
        ScenarioName::EventsRelay => {
            anyhow::ensure!(
                args.requests.is_none(),
                "events-relay runs for --duration-seconds, not --requests"
            );
            events_relay::run(events_relay::Options {
                database_url: args.database_url.clone(),
                redis_url: args.redis_url.clone(),
                producers: args.concurrency as usize,
                events_per_transaction: args.events_per_transaction as usize,
                warmup: Duration::from_secs(args.warmup_seconds),
                duration: Duration::from_secs(
                    args.duration_seconds.unwrap_or(DEFAULT_DURATION_SECONDS),
                ),
            })
            .await
        }
        // Not a gRPC call: events to delivered webhooks, notification in this process.
        ScenarioName::NotificationThroughput => {
            anyhow::ensure!(
                args.requests.is_none(),
                "notification-throughput runs for --duration-seconds, not --requests"
            );
            notification_throughput::run(notification_throughput::Options {
                database_url: args.database_url.clone(),
                redis_url: args.redis_url.clone(),
                producers: args.concurrency as usize,
                warmup: Duration::from_secs(args.warmup_seconds),
                duration: Duration::from_secs(
                    args.duration_seconds.unwrap_or(DEFAULT_DURATION_SECONDS),
                ),
            })
            .await
        }
    }
}

async fn run_with<S: Scenario>(args: &RunArgs) -> anyhow::Result<RunReport> {
    let concurrency = args.concurrency as usize;
    let connections = (args.connections as usize).min(concurrency);
    let endpoint = endpoint(args)?;
    let bearer = Bearer::new(args.token.as_deref())?;

    let setup = Setup {
        channel: connect(&endpoint, &args.target).await?,
        bearer: bearer.clone(),
        health_service: args.health_service.clone(),
    };
    let scenario = S::prepare(&setup)
        .await
        .with_context(|| format!("preparing scenario {}", args.scenario.as_str()))?;
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(connect(&endpoint, &args.target).await?);
    }

    let duration = match (args.duration_seconds, args.requests) {
        (None, None) => Some(DEFAULT_DURATION_SECONDS),
        (duration, _) => duration,
    };
    let limits = Limits {
        warmup: Duration::from_secs(args.warmup_seconds),
        duration: duration.map(Duration::from_secs),
        requests: args.requests,
        time_limit: Duration::from_secs(DURATION_MAX_SECONDS),
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    let on_ctrl_c = interrupted.clone();
    let ctrl_c = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("loadgen: interrupted; finishing the calls in flight");
            on_ctrl_c.store(true, Ordering::Relaxed);
        }
    });

    let bound = match (duration, args.requests) {
        (Some(d), Some(r)) => format!("{d} s or {r} calls"),
        (Some(d), None) => format!("{d} s"),
        (None, Some(r)) => format!("{r} calls"),
        (None, None) => unreachable!("a default duration is set above"),
    };
    eprintln!(
        "loadgen: {} against {}: concurrency {concurrency} over {connections} connection(s), \
         warm-up {} s, measuring {bound}",
        args.scenario.as_str(),
        args.target,
        args.warmup_seconds,
    );
    let report = runner::run(
        scenario,
        Plan {
            scenario: args.scenario.as_str(),
            target: args.target.clone(),
            concurrency,
            channels,
            bearer,
            limits,
            interrupted,
        },
    )
    .await;
    ctrl_c.abort();
    report
}

fn endpoint(args: &RunArgs) -> anyhow::Result<Endpoint> {
    let target = args.target.trim();
    anyhow::ensure!(
        target.starts_with("http://"),
        "--target must be an http:// URL (plaintext HTTP/2; TLS is not supported), got {target:?}"
    );
    let endpoint = Endpoint::from_shared(target.to_owned())
        .with_context(|| format!("--target {target:?} is not a valid URL"))?;
    Ok(endpoint
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_millis(args.timeout_ms))
        .tcp_nodelay(true))
}

/// One HTTP/2 connection (a `Channel` made by `connect` is one connection).
async fn connect(endpoint: &Endpoint, target: &str) -> anyhow::Result<Channel> {
    endpoint
        .connect()
        .await
        .with_context(|| format!("connecting to {target}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn bounds_are_enforced() {
        for bad in [
            &["loadgen", "--concurrency", "0"][..],
            &["loadgen", "--concurrency", "1025"],
            &["loadgen", "--duration-seconds", "601"],
            &["loadgen", "--requests", "10000001"],
            &["loadgen", "--connections", "0"],
            &["loadgen", "--scenario", "nope"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?} was accepted");
        }
        let ok = Cli::try_parse_from(["loadgen", "--requests", "5", "--format", "json"]).unwrap();
        assert_eq!(ok.run.requests, Some(5));
        assert!(ok.command.is_none());
    }

    #[test]
    fn report_subcommand_parses() {
        let cli =
            Cli::try_parse_from(["loadgen", "report", "--format", "markdown", "a.json"]).unwrap();
        assert!(matches!(cli.command, Some(Command::Report(ref r)) if r.files.len() == 1));
    }

    /// A tonic health server on a free port; `serving` decides its answer.
    async fn health_server(serving: bool) -> String {
        use tonic_health::pb::health_server::HealthServer;
        let (reporter, service) = tonic_health::server::health_reporter();
        let status = if serving {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        };
        reporter.set_service_status("", status).await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        tokio::spawn(async move {
            let _keep = reporter;
            tonic::transport::Server::builder()
                .add_service::<HealthServer<_>>(service)
                .serve_with_incoming(incoming)
                .await
        });
        format!("http://{addr}")
    }

    fn run_args(target: &str, extra: &[&str]) -> RunArgs {
        let mut argv = vec!["loadgen", "--target", target];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().run
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn health_scenario_against_a_real_server() {
        let target = health_server(true).await;
        let args = run_args(
            &target,
            &[
                "--requests",
                "500",
                "--warmup-seconds",
                "0",
                "--concurrency",
                "8",
                "--connections",
                "3",
            ],
        );
        let report = run_scenario(&args).await.unwrap();
        assert_eq!(report.scenario, "health");
        assert_eq!((report.requests, report.ok, report.errors), (500, 500, 0));
        assert_eq!(report.connections, 3);
        assert!(report.throughput_rps > 0.0);
        assert!(report.latency_ms.p50 > 0.0 && report.latency_ms.p50 <= report.latency_ms.max);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_target_that_is_not_serving_is_refused_before_the_run() {
        let target = health_server(false).await;
        let err = run_scenario(&run_args(&target, &["--requests", "1"]))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("not SERVING"), "{err:#}");
    }

    #[tokio::test]
    async fn an_unreachable_target_is_an_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = format!("http://{}", listener.local_addr().unwrap());
        drop(listener);
        let err = run_scenario(&run_args(&target, &["--requests", "1"]))
            .await
            .unwrap_err();
        assert!(format!("{err:#}").contains("connecting to"), "{err:#}");
    }

    #[test]
    fn tls_targets_are_refused() {
        let cli = Cli::try_parse_from(["loadgen", "--target", "https://example.com"]).unwrap();
        assert!(endpoint(&cli.run).is_err());
    }
}
