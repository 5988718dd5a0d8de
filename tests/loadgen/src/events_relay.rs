//! `--scenario events-relay`: the events pipeline end to end, in this process, against
//! real Postgres and Redis. `--concurrency` producer tasks each commit one event per
//! transaction (`microloan_events::append`, closed loop) for customers drawn from a
//! fixed set; the relay (`Events::start`, as every service runs it) publishes them to
//! the stream; one consumer group with its default workers handles them (each in its
//! own transaction with the `processed_events` record, then `XACK`).
//!
//! Measured: events handled per second during the measured window, and for each event
//! committed in the window the time from its producer's `COMMIT` returning to its
//! handler starting (events handled just after the window, while the pipeline drains,
//! included). A pipeline that cannot keep up shows as growing latency, and as a
//! throughput below the producers' commit rate, printed beside it.

use std::{
    collections::{BTreeMap, HashMap},
    str::FromStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use hdrhistogram::Histogram;
use microloan_events::{Events, EventsConfig, GroupStart, Handler, HandlerError, NewEvent, append};
use microloan_platform::{cache::Cache, config::Env, db};
use microloan_proto::events::v1::{Event, InstallmentDueSoon, event::Payload};
use sqlx::{
    ConnectOptions, Connection, PgPool, Postgres, Transaction,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use tokio::time::Instant;
use uuid::Uuid;

use crate::report::{LatencyMs, RunReport};

/// Customers the producers spread their events over.
const CUSTOMERS: usize = 1_000;
/// How long the run waits after the window for the events committed in it to be
/// handled (their latencies are part of the result).
const DRAIN_MAX: Duration = Duration::from_secs(30);
/// Histogram range: 1 µs to 60 s.
const LATENCY_MAX_US: u64 = 60_000_000;

/// What the run needs besides the common load options.
#[derive(Debug, Clone)]
pub struct Options {
    pub database_url: String,
    pub redis_url: String,
    pub producers: usize,
    /// Events each producer transaction appends (for distinct customers, in customer
    /// order, as `append` asks of multi-customer transactions).
    pub events_per_transaction: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// When each committed event's `COMMIT` returned, until its handler takes it.
type CommitTimes = Arc<Mutex<HashMap<String, Instant>>>;

#[derive(Debug)]
struct Measure {
    commits: CommitTimes,
    /// Handling in [start, end) is measured.
    window: Mutex<Option<(Instant, Instant)>>,
    latencies_us: Mutex<Histogram<u64>>,
    handled_in_window: AtomicU64,
}

/// The benchmark's handler: records the commit-to-handle latency; no effects of its
/// own, so the figure is the pipeline's (the runner's dedupe insert and commit
/// included).
#[derive(Debug, Clone)]
struct Clock(Arc<Measure>);

impl Handler for Clock {
    async fn handle(
        &self,
        _tx: &mut Transaction<'_, Postgres>,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let now = Instant::now();
        let committed = self
            .0
            .commits
            .lock()
            .ok()
            .and_then(|mut commits| commits.remove(&event.event_id));
        let window = self.0.window.lock().ok().and_then(|window| *window);
        let Some((start, end)) = window else {
            return Ok(());
        };
        // Throughput: what was handled in the window, whenever it was committed.
        if now >= start && now < end {
            self.0.handled_in_window.fetch_add(1, Ordering::Relaxed);
        }
        // Latency: every event committed in the window, even if handled just after
        // it (the drain), so a pipeline falling behind shows in the tail.
        if let Some(committed) = committed
            && committed >= start
            && committed < end
        {
            let micros = now.saturating_duration_since(committed).as_micros() as u64;
            if let Ok(mut histogram) = self.0.latencies_us.lock() {
                histogram.saturating_record(micros.clamp(1, LATENCY_MAX_US));
            }
        }
        Ok(())
    }
}

pub async fn run(options: Options) -> anyhow::Result<RunReport> {
    let pool = fresh_database(&options.database_url, options.producers).await?;
    let prefix = format!("bench:events-relay:{}:", Uuid::new_v4().simple());
    let config = EventsConfig::from_env_for(&Env::process(), "loadgen", &prefix)
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    let stream = config.stream.clone();
    let cache = Cache::open(&options.redis_url, &prefix).context("REDIS url")?;
    cache.ping().await.context("Redis is not answering")?;

    let measure = Arc::new(Measure {
        commits: Arc::new(Mutex::new(HashMap::new())),
        window: Mutex::new(None),
        latencies_us: Mutex::new(Histogram::new_with_bounds(1, LATENCY_MAX_US, 3)?),
        handled_in_window: AtomicU64::new(0),
    });
    let registry = prometheus::Registry::new();
    let mut events = Events::start(config, pool.clone(), cache.clone(), &registry)?;
    events.consume(
        "loadgen",
        Clock(Arc::clone(&measure)),
        GroupStart::Beginning,
    );

    let customers: Arc<Vec<Uuid>> = Arc::new((0..CUSTOMERS).map(|_| Uuid::new_v4()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let committed_in_window = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let measure_from = started + options.warmup;
    let measure_until = measure_from + options.duration;
    if let Ok(mut window) = measure.window.lock() {
        *window = Some((measure_from, measure_until));
    }
    let mut producers = tokio::task::JoinSet::new();
    for index in 0..options.producers {
        producers.spawn(produce(
            index,
            pool.clone(),
            Arc::clone(&customers),
            Arc::clone(&measure.commits),
            Arc::clone(&stop),
            Arc::clone(&committed_in_window),
            (measure_from, measure_until),
            options.events_per_transaction,
        ));
    }
    tokio::time::sleep_until(measure_until).await;
    stop.store(true, Ordering::Relaxed);
    let mut errors = 0u64;
    let mut first_error = None;
    while let Some(joined) = producers.join_next().await {
        if let Err(err) = joined
            .map_err(anyhow::Error::from)
            .and_then(|result| result)
        {
            errors += 1;
            first_error.get_or_insert_with(|| format!("{err:#}"));
        }
    }
    // Events committed late in the window are handled just after it; they are not
    // counted in the throughput (it is what was handled in the window), but the
    // pipeline is given time to drain before the tables are dropped.
    let drain_until = Instant::now() + DRAIN_MAX;
    while Instant::now() < drain_until
        && measure
            .commits
            .lock()
            .map(|c| !c.is_empty())
            .unwrap_or(false)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    events.stop().await;
    cleanup(&cache, &stream).await;
    pool.close().await;

    let elapsed = options.duration.as_secs_f64();
    let handled = measure.handled_in_window.load(Ordering::Relaxed);
    let committed = committed_in_window.load(Ordering::Relaxed);
    let latency_ms = measure
        .latencies_us
        .lock()
        .map(|histogram| LatencyMs::from_micros(&histogram))
        .unwrap_or_default();
    eprintln!(
        "loadgen: events-relay: committed {committed} events ({:.0}/s), handled {handled} ({:.0}/s) in the {elapsed:.0} s window",
        committed as f64 / elapsed,
        handled as f64 / elapsed
    );
    let mut errors_by_code = BTreeMap::new();
    let mut first_error_by_code = BTreeMap::new();
    if errors > 0 {
        errors_by_code.insert("PRODUCER".to_owned(), errors);
        first_error_by_code.insert("PRODUCER".to_owned(), first_error.unwrap_or_default());
    }
    Ok(RunReport {
        scenario: if options.events_per_transaction == 1 {
            "events-relay".to_owned()
        } else {
            format!("events-relay ({}/tx)", options.events_per_transaction)
        },
        target: "postgres + redis (in-process relay and consumer)".to_owned(),
        concurrency: options.producers,
        connections: options.producers,
        warmup_seconds: options.warmup.as_secs(),
        elapsed_seconds: elapsed,
        requests: handled + errors,
        ok: handled,
        errors,
        errors_by_code,
        first_error_by_code,
        throughput_rps: handled as f64 / elapsed,
        latency_ms,
        stopped_by: "duration".to_owned(),
        loadgen_version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

/// One producer: commit a transaction of events, note when the commit returned,
/// repeat until `stop`.
#[allow(clippy::too_many_arguments)]
async fn produce(
    index: usize,
    pool: PgPool,
    customers: Arc<Vec<Uuid>>,
    commits: CommitTimes,
    stop: Arc<AtomicBool>,
    committed_in_window: Arc<AtomicU64>,
    (measure_from, measure_until): (Instant, Instant),
    events_per_transaction: usize,
) -> anyhow::Result<()> {
    let mut sequence: usize = index;
    let mut keys = Vec::with_capacity(events_per_transaction);
    while !stop.load(Ordering::Relaxed) {
        // A stride through the customers: producers rarely share a customer at once.
        let mut chosen: Vec<Uuid> = (0..events_per_transaction)
            .map(|_| {
                sequence = sequence.wrapping_add(7919);
                customers[sequence % customers.len()]
            })
            .collect();
        chosen.sort_unstable();
        chosen.dedup();
        let mut tx = pool.begin().await?;
        keys.clear();
        for customer in chosen {
            let appended = append(
                &mut tx,
                "loadgen",
                NewEvent {
                    customer_id: customer,
                    business_date: None,
                    payload: Payload::InstallmentDueSoon(InstallmentDueSoon {
                        loan_id: customer.to_string(),
                        installment_sequence: 1,
                        ..Default::default()
                    }),
                },
            )
            .await?;
            keys.push(appended.event.event_id);
        }
        // Registered before COMMIT so the handler can never miss one; stamped after.
        if let Ok(mut commits) = commits.lock() {
            let now = Instant::now();
            for key in &keys {
                commits.insert(key.clone(), now);
            }
        }
        tx.commit().await?;
        let now = Instant::now();
        if let Ok(mut commits) = commits.lock() {
            for key in &keys {
                if let Some(at) = commits.get_mut(key) {
                    *at = now;
                }
            }
        }
        if now >= measure_from && now < measure_until {
            committed_in_window.fetch_add(keys.len() as u64, Ordering::Relaxed);
        }
    }
    Ok(())
}

/// `microloan_bench_events` on the server of `database_url`, made afresh (a run
/// never measures the leftovers of another) and migrated.
async fn fresh_database(database_url: &str, producers: usize) -> anyhow::Result<PgPool> {
    let mut url = url::Url::parse(database_url).context("--database-url is not a URL")?;
    url.set_path("/postgres");
    let mut maintenance = PgConnectOptions::from_str(url.as_str())?.connect().await?;
    sqlx::query("DROP DATABASE IF EXISTS microloan_bench_events WITH (FORCE)")
        .execute(&mut maintenance)
        .await?;
    maintenance.close().await?;
    url.set_path("/microloan_bench_events");
    db::create_database_if_missing(url.as_str()).await?;
    let options = PgConnectOptions::from_str(url.as_str())
        .context("--database-url is not a postgres:// URL")?;
    // Producers, the relay (LISTEN + batch + housekeeping) and the consumer workers.
    let pool = PgPoolOptions::new()
        .max_connections((producers + 12) as u32)
        .acquire_timeout(Duration::from_secs(10))
        .connect_with(options)
        .await?;
    db::migrate_all(&pool, &[&microloan_events::MIGRATOR]).await?;
    Ok(pool)
}

/// Removes the run's stream and lease keys.
async fn cleanup(cache: &Cache, stream: &str) {
    if let Ok(mut redis) = cache.connection().await {
        let _ = redis::cmd("DEL")
            .arg(stream)
            .arg(format!("{stream}:dead"))
            .arg(format!("{stream}:lease:loadgen"))
            .query_async::<()>(&mut redis)
            .await;
    }
}
