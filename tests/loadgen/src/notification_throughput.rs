//! `--scenario notification-throughput`: events on the stream to delivered provider
//! webhooks (issue 11), in this process, against real Postgres and Redis. The
//! notification service runs here (`notification::run`, as its binary runs it, on a
//! fresh database `microloan_bench_notification`); a local HTTP receiver plays the
//! push provider. `--concurrency` producers each put one `InstallmentDueSoon` event on
//! the stream (`XADD`, as the relay publishes) and wait until the provider has received
//! its PUSH webhook (closed loop); the notice is also stored IN_APP on the way.
//!
//! Measured: webhooks delivered per second in the window, and for each event put on
//! the stream in the window the time from its `XADD` returning to the provider
//! receiving the webhook (consumer, templates, both notifications, the worker's claim,
//! the signed HTTP POST).

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
use axum::{Router, body::Bytes, extract::State, routing::post};
use hdrhistogram::Histogram;
use microloan_platform::config::Env;
use microloan_proto::{
    common::v1::Money,
    events::v1::{CustomerCreated, Event, EventType, InstallmentDueSoon, event::Payload},
    google::r#type::Date,
};
use prost::Message;
use redis::aio::MultiplexedConnection;
use sqlx::{ConnectOptions, Connection, postgres::PgConnectOptions};
use tokio::{sync::oneshot, time::Instant};
use uuid::Uuid;

use crate::report::{LatencyMs, RunReport};

/// Customers the events are spread over (each gets a CustomerCreated first).
const CUSTOMERS: usize = 1_000;
/// Longest a producer waits for its webhook before counting an error.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);
/// Histogram range: 1 µs to 60 s.
const LATENCY_MAX_US: u64 = 60_000_000;
const DATABASE: &str = "microloan_bench_notification";

#[derive(Debug, Clone)]
pub struct Options {
    pub database_url: String,
    pub redis_url: String,
    pub producers: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// Events waiting for their webhook: when they were put on the stream, and who waits.
type Waiting = Arc<Mutex<HashMap<String, (Instant, oneshot::Sender<Instant>)>>>;

/// The provider: answers 200 and wakes the event's producer.
async fn receive(State(waiting): State<Waiting>, body: Bytes) -> &'static str {
    let now = Instant::now();
    let event_id = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|json| json.get("event_id")?.as_str().map(str::to_owned));
    if let Some(event_id) = event_id
        && let Some((_, waiter)) = waiting.lock().ok().and_then(|mut w| w.remove(&event_id))
    {
        let _ = waiter.send(now);
    }
    "{}"
}

fn event(customer_id: Uuid, payload: Payload, event_type: EventType) -> Event {
    Event {
        event_id: Uuid::now_v7().to_string(),
        event_type: event_type as i32,
        customer_id: customer_id.to_string(),
        producer: "loadgen".into(),
        payload: Some(payload),
        ..Event::default()
    }
}

async fn xadd(
    redis: &mut MultiplexedConnection,
    stream: &str,
    event: &Event,
) -> redis::RedisResult<()> {
    redis::cmd("XADD")
        .arg(stream)
        .arg("*")
        .arg("event")
        .arg(event.encode_to_vec())
        .query_async(redis)
        .await
}

pub async fn run(options: Options) -> anyhow::Result<RunReport> {
    // A fresh database: a run never measures another's leftovers.
    let mut url = url::Url::parse(&options.database_url).context("--database-url is not a URL")?;
    url.set_path("/postgres");
    let mut maintenance = PgConnectOptions::from_str(url.as_str())?.connect().await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)"))
        .execute(&mut maintenance)
        .await?;
    maintenance.close().await?;
    url.set_path(&format!("/{DATABASE}"));

    let waiting: Waiting = Arc::new(Mutex::new(HashMap::new()));
    let provider = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let provider_addr = provider.local_addr()?;
    let router = Router::new()
        .route("/push", post(receive))
        .with_state(Arc::clone(&waiting));
    let provider_task = tokio::spawn(async move { axum::serve(provider, router).await });

    let prefix = format!("bench:notification:{}:", Uuid::new_v4().simple());
    let stream = format!("{prefix}{{events}}");
    let vars: HashMap<&str, String> = [
        ("DATABASE_URL", url.to_string()),
        ("REDIS_URL", options.redis_url.clone()),
        ("REDIS_KEY_PREFIX", prefix.clone()),
        (
            "AUTH_JWT_SECRET",
            "loadgen-only-jwt-secret-0123456789abcdef".to_owned(),
        ),
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("ADMIN_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        // Never called: every customer's locale arrives with CustomerCreated.
        ("ACCOUNT_URL", "http://127.0.0.1:9".to_owned()),
        (
            "NOTIFICATION_PUSH_WEBHOOK_URL",
            format!("http://{provider_addr}/push"),
        ),
        (
            "NOTIFICATION_WEBHOOK_SECRET",
            "loadgen-only-webhook-secret".to_owned(),
        ),
        ("NOTIFICATION_CHANNEL_CONCURRENCY", "64".to_owned()),
        ("NOTIFICATION_POLL_INTERVAL_MS", "20".to_owned()),
        ("EVENTS_CONSUMER_WORKERS", "8".to_owned()),
    ]
    .into_iter()
    .collect();
    let config = notification::Config::from_env(&Env::from_fn(|name| vars.get(name).cloned()))
        .map_err(|err| anyhow::anyhow!("{err}"))?;

    let client = redis::Client::open(options.redis_url.as_str()).context("REDIS url")?;
    let mut redis = client.get_multiplexed_async_connection().await?;
    // The group reads from the start, so no event put on the stream is skipped.
    let _: Result<(), redis::RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("notification")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut redis)
        .await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let (stop_server, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(notification::run(config, listener, async {
        let _ = stopped.await;
    }));

    let customers: Arc<Vec<Uuid>> = Arc::new((0..CUSTOMERS).map(|_| Uuid::now_v7()).collect());
    for &customer in customers.iter() {
        let created = event(
            customer,
            Payload::CustomerCreated(CustomerCreated {
                customer_id: customer.to_string(),
                locale: "en".into(),
                device_id: String::new(),
            }),
            EventType::CustomerCreated,
        );
        xadd(&mut redis, &stream, &created).await?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    let delivered_in_window = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Histogram::<u64>::new_with_bounds(
        1,
        LATENCY_MAX_US,
        3,
    )?));
    let started = Instant::now();
    let window = (
        started + options.warmup,
        started + options.warmup + options.duration,
    );
    let mut producers = tokio::task::JoinSet::new();
    for index in 0..options.producers {
        let (mut redis, stream, customers, waiting, stop) = (
            redis.clone(),
            stream.clone(),
            Arc::clone(&customers),
            Arc::clone(&waiting),
            Arc::clone(&stop),
        );
        let (delivered_in_window, errors, latencies) = (
            Arc::clone(&delivered_in_window),
            Arc::clone(&errors),
            Arc::clone(&latencies),
        );
        producers.spawn(async move {
            let mut sequence = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let customer = customers[(index + sequence * 7) % customers.len()];
                sequence += 1;
                let due = event(
                    customer,
                    Payload::InstallmentDueSoon(InstallmentDueSoon {
                        loan_id: customer.to_string(),
                        installment_sequence: 1,
                        due_date: Some(Date {
                            year: 2027,
                            month: 1,
                            day: 28,
                        }),
                        amount_due: Some(Money {
                            currency_code: "CNY".into(),
                            minor_units: 55_500,
                        }),
                        days_until_due: 3,
                    }),
                    EventType::InstallmentDueSoon,
                );
                let (done, delivered) = oneshot::channel();
                let registered = Instant::now();
                if let Ok(mut waiting) = waiting.lock() {
                    waiting.insert(due.event_id.clone(), (registered, done));
                }
                if xadd(&mut redis, &stream, &due).await.is_err() {
                    errors.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let sent = Instant::now();
                match tokio::time::timeout(DELIVERY_TIMEOUT, delivered).await {
                    Ok(Ok(at)) => {
                        if sent >= window.0 && sent < window.1 {
                            let micros = at.saturating_duration_since(sent).as_micros() as u64;
                            if let Ok(mut histogram) = latencies.lock() {
                                histogram.saturating_record(micros.clamp(1, LATENCY_MAX_US));
                            }
                        }
                        if at >= window.0 && at < window.1 {
                            delivered_in_window.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        });
    }
    tokio::time::sleep_until(window.1).await;
    stop.store(true, Ordering::Relaxed);
    while producers.join_next().await.is_some() {}
    let _ = stop_server.send(());
    let served = server.await;
    provider_task.abort();
    let _: Result<(), redis::RedisError> = redis::cmd("DEL")
        .arg(&stream)
        .arg(format!("{stream}:dead"))
        .arg(format!("{stream}:lease:notification"))
        .query_async(&mut redis)
        .await;
    if let Ok(Err(err)) = served {
        eprintln!("loadgen: notification-throughput: the service ended with: {err:#}");
    }

    let elapsed = options.duration.as_secs_f64();
    let delivered = delivered_in_window.load(Ordering::Relaxed);
    let errors = errors.load(Ordering::Relaxed);
    let latency_ms = latencies
        .lock()
        .map(|histogram| LatencyMs::from_micros(&histogram))
        .unwrap_or_default();
    eprintln!(
        "loadgen: notification-throughput: {delivered} webhooks delivered ({:.0}/s) in the {elapsed:.0} s window, {errors} undelivered",
        delivered as f64 / elapsed
    );
    let mut errors_by_code = BTreeMap::new();
    if errors > 0 {
        errors_by_code.insert("UNDELIVERED".to_owned(), errors);
    }
    Ok(RunReport {
        scenario: "notification-throughput".to_owned(),
        target: "postgres + redis (in-process notification, local provider)".to_owned(),
        concurrency: options.producers,
        connections: options.producers,
        warmup_seconds: options.warmup.as_secs(),
        elapsed_seconds: elapsed,
        requests: delivered + errors,
        ok: delivered,
        errors,
        errors_by_code,
        first_error_by_code: BTreeMap::new(),
        throughput_rps: delivered as f64 / elapsed,
        latency_ms,
        stopped_by: "duration".to_owned(),
        loadgen_version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}
