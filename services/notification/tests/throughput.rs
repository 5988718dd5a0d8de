//! `notification-throughput`, measured in-process (ignored by default; run with
//! `cargo test -p microloan-notification --release --test throughput -- --ignored
//! --nocapture`): events put on the stream → notifications → PUSH webhooks accepted by
//! a local receiver. Prints events/s (a burst, stream to last delivery) and the
//! event-to-delivery latency percentiles at a paced rate. docs/notification.md keeps
//! the figures measured.

mod common;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use common::Stack;
use microloan_platform::testing;
use microloan_proto::{
    common::v1::Money,
    events::v1::{CustomerCreated, Event, EventType, InstallmentDueSoon, event::Payload},
    google::r#type::Date,
};
use prost::Message;
use redis::aio::MultiplexedConnection;

const CUSTOMERS: usize = 200;

fn event(customer_id: &str, payload: Payload, event_type: EventType) -> Event {
    Event {
        event_id: uuid::Uuid::now_v7().to_string(),
        event_type: event_type as i32,
        customer_id: customer_id.to_owned(),
        producer: "ledger".into(),
        payload: Some(payload),
        ..Event::default()
    }
}

fn due_soon(customer_id: &str, sequence: i32) -> Event {
    event(
        customer_id,
        Payload::InstallmentDueSoon(InstallmentDueSoon {
            loan_id: uuid::Uuid::now_v7().to_string(),
            installment_sequence: sequence,
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
    )
}

async fn xadd(redis: &mut MultiplexedConnection, stream: &str, events: &[Event]) {
    let mut pipe = redis::pipe();
    for event in events {
        pipe.cmd("XADD")
            .arg(stream)
            .arg("*")
            .arg("event")
            .arg(event.encode_to_vec())
            .ignore();
    }
    pipe.query_async::<()>(redis).await.expect("xadd");
}

/// Waits until the provider has accepted a PUSH for every event in `sent_at`; returns
/// each event's delivery latency and the last delivery instant.
async fn deliveries(
    stack: &Stack,
    sent_at: &HashMap<String, Instant>,
    within: Duration,
) -> (Vec<Duration>, Instant) {
    let deadline = Instant::now() + within;
    loop {
        let received = stack.provider.received();
        let mut latencies = Vec::with_capacity(sent_at.len());
        let mut last = None::<Instant>;
        for request in received.iter().filter(|r| r.accepted && r.path == "/push") {
            let Some(event_id) = request.body["event_id"].as_str() else {
                continue;
            };
            if let Some(sent) = sent_at.get(event_id) {
                latencies.push(request.at - *sent);
                last = Some(last.map_or(request.at, |l| l.max(request.at)));
            }
        }
        if latencies.len() >= sent_at.len() {
            return (latencies, last.expect("deliveries"));
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {} delivered",
            latencies.len(),
            sent_at.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let index = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index]
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "a benchmark: run explicitly with --ignored (see the module docs)"]
async fn notification_throughput() {
    let burst: usize = std::env::var("BENCH_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let stack = Stack::start(
        vec![],
        &[
            ("NOTIFICATION_CHANNEL_CONCURRENCY", "64"),
            ("EVENTS_CONSUMER_WORKERS", "8"),
            ("NOTIFICATION_POLL_INTERVAL_MS", "20"),
            ("NOTIFICATION_HTTP_TIMEOUT_MS", "2000"),
            ("NOTIFICATION_CLAIM_LEASE_MS", "30000"),
            ("RUST_LOG", "warn"),
        ],
    )
    .await;
    let stream = format!("{}{{events}}", stack.redis_prefix);
    let client = redis::Client::open(testing::redis_url()).expect("redis");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    let _: Result<(), redis::RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("notification")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut redis)
        .await;
    // Customers first (their locales are recorded from CustomerCreated).
    let customers: Vec<String> = (0..CUSTOMERS)
        .map(|_| uuid::Uuid::now_v7().to_string())
        .collect();
    let created: Vec<Event> = customers
        .iter()
        .map(|customer| {
            event(
                customer,
                Payload::CustomerCreated(CustomerCreated {
                    customer_id: customer.clone(),
                    locale: "en".into(),
                    device_id: String::new(),
                }),
                EventType::CustomerCreated,
            )
        })
        .collect();
    let welcome: HashMap<String, Instant> = created
        .iter()
        .map(|e| (e.event_id.clone(), Instant::now()))
        .collect();
    xadd(&mut redis, &stream, &created).await;
    deliveries(&stack, &welcome, Duration::from_secs(60)).await;

    // Burst: every event on the stream at once; throughput = events / (last delivery - start).
    let events: Vec<Event> = (0..burst)
        .map(|i| due_soon(&customers[i % CUSTOMERS], i as i32))
        .collect();
    let start = Instant::now();
    let sent_at: HashMap<String, Instant> =
        events.iter().map(|e| (e.event_id.clone(), start)).collect();
    for chunk in events.chunks(500) {
        xadd(&mut redis, &stream, chunk).await;
    }
    let (_, last) = deliveries(&stack, &sent_at, Duration::from_secs(120)).await;
    let per_second = burst as f64 / (last - start).as_secs_f64();

    // Paced: 200 events/s for 5 s; latency from XADD to the provider's acceptance.
    let rate = 200;
    let mut paced = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(50));
    for tick in 0..100 {
        ticker.tick().await;
        let batch: Vec<Event> = (0..rate / 20)
            .map(|i| due_soon(&customers[(tick * 10 + i) % CUSTOMERS], 1))
            .collect();
        let now = Instant::now();
        xadd(&mut redis, &stream, &batch).await;
        paced.extend(batch.iter().map(|e| (e.event_id.clone(), now)));
    }
    let (mut latencies, _) = deliveries(&stack, &paced, Duration::from_secs(60)).await;
    latencies.sort_unstable();
    println!(
        "notification-throughput: burst {burst} events -> {per_second:.0} events/s delivered (PUSH webhook; IN_APP stored alongside); paced {rate}/s: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().expect("latencies"),
    );
    stack.stop().await;
}
