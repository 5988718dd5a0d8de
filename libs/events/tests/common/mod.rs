//! What the events tests share: a fresh database with the events tables, a unique
//! stream per test, a redis-server of the test's own (for the tests that stop
//! Redis), and bounded waiting.
#![allow(dead_code)]

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    process::{Child, Command, Stdio},
    sync::Arc,
    time::Duration,
};

use microloan_events::{
    EventsConfig, EventsMetrics, GroupStart, Handler, HandlerError, NewEvent, Relay, append,
    consumer::Consumer,
};
use microloan_platform::{cache::Cache, db, testing};
use microloan_proto::events::v1::{Event, InstallmentDueSoon, event::Payload};
use prost::Message;
use redis::{AsyncCommands, Value, streams::StreamRangeReply};
use sqlx::{PgPool, Postgres, Transaction, postgres::PgPoolOptions};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Upper bound of every wait in these tests.
pub const WAIT_MAX: Duration = Duration::from_secs(8);

/// Polls `check` every 20 ms until it returns true; panics after `WAIT_MAX`.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + WAIT_MAX;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out after {WAIT_MAX:?} waiting for: {what}");
}

/// One test's world: its own database and stream.
pub struct World {
    pub pool: PgPool,
    pub database_url: String,
    pub cache: Cache,
    pub config: Arc<EventsConfig>,
    pub metrics: EventsMetrics,
}

/// Knobs small enough for tests to finish quickly.
pub fn test_config(prefix: &str) -> EventsConfig {
    EventsConfig {
        producer: "test".to_owned(),
        stream: format!("{prefix}{{events}}"),
        stream_length_max: 100_000,
        relay_batch_size_max: 100,
        relay_poll_interval: Duration::from_millis(100),
        relay_backoff_max: Duration::from_millis(200),
        outbox_retention: Duration::from_secs(3_600),
        processed_retention: Duration::from_secs(86_400),
        consumer_name: "consumer-1".to_owned(),
        consumer_workers: 4,
        consumer_batch_size_max: 64,
        consumer_block: Duration::from_millis(100),
        claim_idle: Duration::from_secs(30),
        deliveries_max: 5,
    }
}

impl World {
    pub async fn new(redis_url: &str, tweak: impl FnOnce(&mut EventsConfig)) -> Self {
        let database_url = testing::fresh_database_url("events");
        db::create_database_if_missing(&database_url)
            .await
            .expect("create database");
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(5))
            .connect(&database_url)
            .await
            .expect("connect");
        db::migrate_all(&pool, &[&microloan_events::MIGRATOR])
            .await
            .expect("migrate");
        // What the tests' handler does: one row per application of an event.
        sqlx::query(
            "CREATE TABLE effects (seq bigserial PRIMARY KEY, event_id uuid NOT NULL,
                                   customer_id uuid NOT NULL, sequence int NOT NULL)",
        )
        .execute(&pool)
        .await
        .expect("effects table");
        let prefix = format!("test:{}:", Uuid::new_v4().simple());
        let mut config = test_config(&prefix);
        tweak(&mut config);
        let cache = Cache::open(redis_url, &prefix).expect("redis url");
        Self {
            pool,
            database_url,
            cache,
            config: Arc::new(config),
            metrics: EventsMetrics::unregistered(),
        }
    }

    pub fn relay(&self) -> Relay {
        Relay::new(
            self.pool.clone(),
            self.cache.clone(),
            Arc::clone(&self.config),
            self.metrics.clone(),
        )
    }

    /// Publishes everything committed so far, batch by batch (bounded).
    pub async fn publish_all(&self) {
        let relay = self.relay();
        for _ in 0..10_000 {
            if relay.publish_batch().await.expect("publish") == 0 {
                return;
            }
        }
        panic!("the outbox never emptied");
    }

    /// Starts a relay task; cancel `stop` or abort the handle to end it.
    pub fn spawn_relay(&self, stop: &CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.relay().run(stop.clone()))
    }

    pub fn consumer<H: Handler>(
        &self,
        group: &str,
        handler: H,
        config: &EventsConfig,
    ) -> Consumer<H> {
        Consumer::new(
            group,
            handler,
            self.pool.clone(),
            self.cache.clone(),
            Arc::new(config.clone()),
            self.metrics.clone(),
        )
        .starting_at(GroupStart::Beginning)
    }

    /// Commits one event of `customer` whose payload carries `sequence`.
    pub async fn commit_event(&self, customer: Uuid, sequence: i32) -> Uuid {
        let mut tx = self.pool.begin().await.expect("begin");
        let appended = append(&mut tx, &self.config.producer, event_of(customer, sequence))
            .await
            .expect("append");
        tx.commit().await.expect("commit");
        appended.event_id
    }

    /// Commits `per_customer` events for each customer, customers concurrently, each
    /// customer's in sequence order. Returns the customers.
    pub async fn commit_many(&self, customers: usize, per_customer: i32) -> Vec<Uuid> {
        let ids: Vec<Uuid> = (0..customers).map(|_| Uuid::new_v4()).collect();
        let mut producers = tokio::task::JoinSet::new();
        for customer in ids.clone() {
            let pool = self.pool.clone();
            let producer = self.config.producer.clone();
            producers.spawn(async move {
                for sequence in 0..per_customer {
                    let mut tx = pool.begin().await.expect("begin");
                    append(&mut tx, &producer, event_of(customer, sequence))
                        .await
                        .expect("append");
                    tx.commit().await.expect("commit");
                }
            });
        }
        while let Some(joined) = producers.join_next().await {
            joined.expect("producer");
        }
        ids
    }

    pub async fn redis(&self) -> redis::aio::ConnectionManager {
        self.cache.connection().await.expect("redis")
    }

    pub async fn stream_len(&self) -> usize {
        let mut redis = self.redis().await;
        redis.xlen(&self.config.stream).await.unwrap_or(0)
    }

    /// Every entry of the stream, decoded, oldest first.
    pub async fn stream_events(&self) -> Vec<Event> {
        let mut redis = self.redis().await;
        let reply: StreamRangeReply = redis.xrange_all(&self.config.stream).await.expect("xrange");
        reply
            .ids
            .iter()
            .map(|entry| match entry.map.get("event") {
                Some(Value::BulkString(bytes)) => Event::decode(bytes.as_slice()).expect("decode"),
                other => panic!("entry without event: {other:?}"),
            })
            .collect()
    }

    /// Advisory-lock requests of this database that wait (a writer blocked on a
    /// customer's outbox lock).
    pub async fn advisory_locks_waiting(&self) -> i64 {
        sqlx::query_scalar(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        )
        .fetch_one(&self.pool)
        .await
        .expect("pg_locks")
    }

    pub async fn unpublished(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM outbox WHERE published_at IS NULL")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    pub async fn effects(&self) -> Vec<(Uuid, Uuid, i32)> {
        sqlx::query_as("SELECT event_id, customer_id, sequence FROM effects ORDER BY seq")
            .fetch_all(&self.pool)
            .await
            .expect("effects")
    }

    pub async fn pending(&self, group: &str) -> usize {
        let mut redis = self.redis().await;
        let reply: redis::streams::StreamPendingReply = redis
            .xpending(&self.config.stream, group)
            .await
            .expect("xpending");
        reply.count()
    }

    /// Drops the test's database and deletes its Redis keys (the stream, the dead
    /// letters and the leases of the groups the tests use).
    pub async fn finish(self) {
        if let Ok(mut redis) = self.cache.connection().await {
            let stream = &self.config.stream;
            let _ = redis::cmd("DEL")
                .arg(stream)
                .arg(self.config.dead_letter_stream())
                .arg(format!("{stream}:lease:test-group"))
                .arg(format!("{stream}:lease:trace-test"))
                .query_async::<()>(&mut redis)
                .await;
        }
        self.pool.close().await;
        testing::drop_database(&self.database_url)
            .await
            .expect("drop database");
    }
}

pub fn event_of(customer: Uuid, sequence: i32) -> NewEvent {
    NewEvent {
        customer_id: customer,
        business_date: None,
        payload: Payload::InstallmentDueSoon(InstallmentDueSoon {
            loan_id: Uuid::new_v4().to_string(),
            installment_sequence: sequence,
            ..Default::default()
        }),
    }
}

pub fn sequence_of(event: &Event) -> i32 {
    match &event.payload {
        Some(Payload::InstallmentDueSoon(due)) => due.installment_sequence,
        other => panic!("unexpected payload {other:?}"),
    }
}

/// Asserts every event published once at most... `exactly_once`: no duplicates; in
/// any case every committed event is there and each customer's first occurrences
/// are in sequence order.
pub fn assert_complete_and_ordered(
    events: &[Event],
    customers: &[Uuid],
    per_customer: i32,
    exactly_once: bool,
) {
    let mut seen = HashSet::new();
    let mut next: HashMap<String, i32> = customers.iter().map(|c| (c.to_string(), 0)).collect();
    for event in events {
        let first = seen.insert(event.event_id.clone());
        assert!(
            first || !exactly_once,
            "event {} published twice",
            event.event_id
        );
        if !first {
            continue;
        }
        let expected = next.get_mut(&event.customer_id).expect("known customer");
        assert_eq!(
            sequence_of(event),
            *expected,
            "customer {} out of commit order",
            event.customer_id
        );
        *expected += 1;
    }
    for (customer, count) in next {
        assert_eq!(count, per_customer, "customer {customer}: events missing");
    }
}

/// The tests' handler: records one effect row per application, in the transaction.
#[derive(Debug, Clone, Default)]
pub struct Record;

impl Handler for Record {
    async fn handle(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
    ) -> Result<(), HandlerError> {
        sqlx::query("INSERT INTO effects (event_id, customer_id, sequence) VALUES ($1, $2, $3)")
            .bind(Uuid::parse_str(&event.event_id).map_err(|err| HandlerError::Reject(err.into()))?)
            .bind(
                Uuid::parse_str(&event.customer_id)
                    .map_err(|err| HandlerError::Reject(err.into()))?,
            )
            .bind(sequence_of(event))
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// A redis-server of the test's own, which the test may stop and start again.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub async fn start() -> Self {
        let port = testing::free_local_addr().await.port();
        let mut server = Self { port, child: None };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again) on its port and waits until it answers.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("/usr/bin/redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("url");
        eventually("redis-server answers", || {
            let client = client.clone();
            async move {
                match client.get_multiplexed_async_connection().await {
                    Ok(mut connection) => redis::cmd("PING")
                        .query_async::<String>(&mut connection)
                        .await
                        .is_ok(),
                    Err(_) => false,
                }
            }
        })
        .await;
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
