//! Consumer groups: reads the stream through one Redis consumer group, hands each
//! event to a [`Handler`] inside a Postgres transaction that also records the event id
//! (`processed_events`), commits, and only then acknowledges (`XACK`).
//!
//! - At least once in, effects once: a redelivered event finds its id recorded and
//!   is acknowledged without running the handler again.
//! - Bounded concurrency with per-customer order: `consumer_workers` tasks, each with
//!   a queue of at most `consumer_batch_size_max`; an event goes to the worker chosen
//!   by its customer's hash, so one customer's events are handled one at a time, in
//!   stream order, by this process.
//! - One reader per group: Redis hands a group's entries to whichever consumer asks,
//!   with no affinity by customer, so two replicas reading at once would handle one
//!   customer's events concurrently. The replicas of a service therefore hold a lease
//!   (`<stream>:lease:<group>`, renewed every `claim_idle / 3`, expiring after
//!   `claim_idle`); only the holder reads, the others stand by and take over when it
//!   stops (it releases the lease) or dies (the lease expires).
//! - Take-over: entries a dead consumer left unacknowledged for `claim_idle` are
//!   claimed (`XAUTOCLAIM`) and handled here.
//! - Poison: an entry that cannot be decoded, has `EVENT_TYPE_UNSPECIFIED` (or a type
//!   that does not match its payload), a malformed id, a permanent handler error, or
//!   `deliveries_max` failed attempts goes to the dead-letter stream with the error,
//!   is acknowledged, and the group moves on. Attempts are Redis's delivery count of
//!   the entry, so they survive restarts and take-overs.

use std::{collections::HashMap, future::Future, sync::Arc, time::Duration};

use microloan_platform::cache::Cache;
use microloan_proto::events::v1::{Event, EventType};
use prost::Message;
use redis::{
    AsyncCommands, RedisError, Value,
    aio::ConnectionManager,
    streams::{
        StreamAutoClaimOptions, StreamAutoClaimReply, StreamClaimOptions, StreamInfoGroupsReply,
        StreamPendingCountReply, StreamReadOptions, StreamReadReply,
    },
};
use sqlx::{PgPool, Postgres, Transaction};
use tokio::{
    sync::{mpsc, watch},
    task::JoinSet,
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

use crate::{
    Backoff,
    config::EventsConfig,
    metrics::EventsMetrics,
    outbox::{TraceFields, customer_hash, event_type_of},
    sleep_or_stop,
};

/// Pages one take-over pass claims at most (each up to `consumer_batch_size_max`).
const CLAIM_PAGES_MAX: u32 = 16;
/// How often the lag and pending gauges are refreshed.
const GAUGE_INTERVAL: Duration = Duration::from_secs(5);
/// First pause between attempts at a failing event; doubles per attempt.
const RETRY_DELAY_MIN: Duration = Duration::from_millis(50);
/// Longest pause between attempts: a failing event holds up its worker's queue.
const RETRY_DELAY_MAX: Duration = Duration::from_secs(2);

/// What a consuming service implements, once per consumer group.
pub trait Handler: Send + Sync + 'static {
    /// Applies `event`. Everything it writes goes through `tx`, the runner's
    /// transaction, which also records the event as processed: the effects and the
    /// record commit together or not at all. Must not commit `tx` itself.
    fn handle(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
    ) -> impl Future<Output = Result<(), HandlerError>> + Send;

    /// Applies a batch of events, in stream order, that this group has not handled
    /// before (at most `EVENTS_CONSUMER_BATCH_SIZE_MAX`), through `tx` as
    /// [`Handler::handle`] does. The default calls `handle` for each, in its span. A
    /// handler overrides it to apply the batch in fewer statements (one read and one
    /// insert for all of them instead of per event); it must leave the same effects as
    /// handling the events one after the other, and fail as a whole: the runner rolls
    /// the transaction back on any error.
    fn handle_batch(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        batch: &[Fresh<'_>],
    ) -> impl Future<Output = Result<(), BatchFailure>> + Send {
        async move {
            for (index, fresh) in batch.iter().enumerate() {
                self.handle(tx, fresh.event)
                    .instrument(fresh.span.clone())
                    .await
                    .map_err(|error| BatchFailure::at(index, error))?;
            }
            Ok(())
        }
    }

    /// Called after the transaction that applied `events` (the fresh ones of a batch)
    /// committed: the place to wake in-process readers of the effects, which a handler
    /// cannot do itself (it runs before the commit). Must not block. The default does
    /// nothing.
    fn committed(&self, events: &[&Event]) {
        let _ = events;
    }
}

/// One event of a batch handed to [`Handler::handle_batch`], with the span its handling
/// belongs to (a child of the span that appended it: enter it for per-event work).
#[derive(Debug)]
pub struct Fresh<'a> {
    pub event: &'a Event,
    pub span: tracing::Span,
}

/// Why [`Handler::handle_batch`] did not apply a batch.
#[derive(Debug)]
pub struct BatchFailure {
    /// The event (index into the batch) the error belongs to, if one can be named: the
    /// events before it are applied again as a batch and it is retried alone (a
    /// `Reject` dead-letters it). `None` (a statement over the whole batch failed):
    /// every event of the batch is retried alone.
    pub index: Option<usize>,
    pub error: HandlerError,
}

impl BatchFailure {
    pub fn at(index: usize, error: HandlerError) -> Self {
        Self {
            index: Some(index),
            error,
        }
    }

    pub fn whole(error: HandlerError) -> Self {
        Self { index: None, error }
    }
}

/// Why a handler did not apply an event.
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// May succeed later (a peer or the database unavailable, a conflict): retried
    /// with back-off up to `deliveries_max` attempts, then dead-lettered.
    #[error("{0:#}")]
    Retry(anyhow::Error),
    /// Will never succeed (the event contradicts this service's state): dead-lettered
    /// at once.
    #[error("{0:#}")]
    Reject(anyhow::Error),
}

impl From<sqlx::Error> for HandlerError {
    fn from(err: sqlx::Error) -> Self {
        Self::Retry(err.into())
    }
}

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupStart {
    /// Events published after the group was created (`$`): a service deployed for the
    /// first time does not replay the retained history. The default.
    NewEvents,
    /// Everything still retained in the stream (`0`).
    Beginning,
}

/// One entry read from the stream, routed to a worker.
#[derive(Debug)]
struct Delivery {
    stream_id: String,
    fields: HashMap<String, Value>,
    /// The decoded envelope, or why it could not be decoded.
    event: Result<Event, String>,
    /// Redis's delivery count: the number of this attempt.
    deliveries: u32,
}

/// A consumer of one group. See the module docs.
#[derive(Debug)]
pub struct Consumer<H> {
    shared: Arc<Shared<H>>,
    start: GroupStart,
}

#[derive(Debug)]
struct Shared<H> {
    group: String,
    handler: H,
    pool: PgPool,
    cache: Cache,
    config: Arc<EventsConfig>,
    metrics: EventsMetrics,
}

impl<H: Handler> Consumer<H> {
    pub fn new(
        group: &str,
        handler: H,
        pool: PgPool,
        cache: Cache,
        config: Arc<EventsConfig>,
        metrics: EventsMetrics,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                group: group.to_owned(),
                handler,
                pool,
                cache,
                config,
                metrics,
            }),
            start: GroupStart::NewEvents,
        }
    }

    pub fn starting_at(mut self, start: GroupStart) -> Self {
        self.start = start;
        self
    }

    /// Reads and handles until `stop` is cancelled. Entries read but not yet handled
    /// at that moment stay pending in the group and are handled after `claim_idle` by
    /// whichever consumer of the group claims them (this one after a restart).
    pub async fn run(self, stop: CancellationToken) {
        let shared = self.shared;
        let config = Arc::clone(&shared.config);
        let mut workers = JoinSet::new();
        let queues: Vec<mpsc::Sender<Delivery>> = (0..config.consumer_workers)
            .map(|_| {
                let (sender, receiver) = mpsc::channel(config.consumer_batch_size_max);
                workers.spawn(work(Arc::clone(&shared), receiver, stop.clone()));
                sender
            })
            .collect();
        let (leadership, leader) = watch::channel(false);
        workers.spawn(keep_lease(Arc::clone(&shared), leadership, stop.clone()));
        let mut reader = Reader {
            shared: Arc::clone(&shared),
            leader,
            start: self.start,
            queues,
            connection: None,
            group_ready: false,
            next_claim: Instant::now(),
            next_gauges: Instant::now(),
        };
        let mut backoff = Backoff::new(RETRY_DELAY_MAX);
        while !stop.is_cancelled() {
            let outcome = tokio::select! {
                () = stop.cancelled() => break,
                outcome = reader.round() => outcome,
            };
            match outcome {
                Ok(()) => backoff.reset(),
                Err(err) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(group = %shared.group, error = %err, retry_ms = delay.as_millis() as u64, "events consumer: reading failed");
                    // A failed connection is rebuilt, and the group made again (the
                    // stream may have been deleted: NOGROUP), on the next round.
                    reader.connection = None;
                    reader.group_ready = false;
                    if !sleep_or_stop(delay, &stop).await {
                        break;
                    }
                }
            }
        }
        drop(reader);
        // Workers stop after their current event (the queues are closed or `stop` is
        // cancelled); what they leave stays pending.
        while workers.join_next().await.is_some() {}
    }
}

struct Reader<H> {
    shared: Arc<Shared<H>>,
    /// Whether this process holds the group's lease (see the module docs).
    leader: watch::Receiver<bool>,
    start: GroupStart,
    queues: Vec<mpsc::Sender<Delivery>>,
    /// Its own connection: `XREADGROUP ... BLOCK` would stall a shared one.
    connection: Option<ConnectionManager>,
    group_ready: bool,
    next_claim: Instant,
    next_gauges: Instant,
}

impl<H: Handler> Reader<H> {
    async fn round(&mut self) -> Result<(), RedisError> {
        let shared = Arc::clone(&self.shared);
        let config = &shared.config;
        if !*self.leader.borrow_and_update() {
            // Standing by (another replica reads this group) until the lease is ours.
            tokio::select! {
                changed = self.leader.changed() => {
                    if changed.is_err() {
                        // The lease keeper stopped: shutdown is under way.
                        tokio::time::sleep(config.claim_idle / 3).await;
                    }
                }
                () = tokio::time::sleep(config.claim_idle / 3) => {}
            }
            return Ok(());
        }
        let mut connection = match &self.connection {
            Some(connection) => connection.clone(),
            None => {
                let connection = shared
                    .cache
                    .dedicated_connection(config.consumer_block)
                    .await?;
                self.connection = Some(connection.clone());
                connection
            }
        };
        if !self.group_ready {
            self.create_group(&mut connection).await?;
            self.group_ready = true;
        }
        let now = Instant::now();
        if now >= self.next_claim {
            self.claim_abandoned(&mut connection).await?;
            // Half the idle time: an abandoned entry waits at most 1.5 × claim_idle.
            self.next_claim = now + config.claim_idle / 2;
        }
        if now >= self.next_gauges {
            self.refresh_gauges(&mut connection).await?;
            self.next_gauges = now + GAUGE_INTERVAL;
        }
        let options = StreamReadOptions::default()
            .group(&shared.group, &config.consumer_name)
            .count(config.consumer_batch_size_max)
            .block(config.consumer_block.as_millis() as usize);
        let reply: Option<StreamReadReply> = connection
            .xread_options(&[&config.stream], &[">"], &options)
            .await?;
        for key in reply.map(|reply| reply.keys).unwrap_or_default() {
            for entry in key.ids {
                self.dispatch(entry.id, entry.map, 1).await;
            }
        }
        Ok(())
    }

    async fn create_group(&self, connection: &mut ConnectionManager) -> Result<(), RedisError> {
        let start = match self.start {
            GroupStart::NewEvents => "$",
            GroupStart::Beginning => "0",
        };
        let created: Result<(), RedisError> = connection
            .xgroup_create_mkstream(&self.shared.config.stream, &self.shared.group, start)
            .await;
        match created {
            Ok(()) => Ok(()),
            // The group exists already: another replica, or an earlier run, made it.
            Err(err) if err.code() == Some("BUSYGROUP") => Ok(()),
            Err(err) => Err(err),
        }
    }

    /// Takes over entries other consumers left unacknowledged for `claim_idle`.
    async fn claim_abandoned(
        &mut self,
        connection: &mut ConnectionManager,
    ) -> Result<(), RedisError> {
        let shared = Arc::clone(&self.shared);
        let config = &shared.config;
        let mut cursor = "0-0".to_owned();
        for _ in 0..CLAIM_PAGES_MAX {
            let reply: StreamAutoClaimReply = connection
                .xautoclaim_options(
                    &config.stream,
                    &shared.group,
                    &config.consumer_name,
                    config.claim_idle.as_millis() as u64,
                    &cursor,
                    StreamAutoClaimOptions::default().count(config.consumer_batch_size_max),
                )
                .await?;
            if !reply.deleted_ids.is_empty() {
                // Trimmed by MAXLEN before anyone acknowledged them: the stream bound
                // is too small for this group's lag.
                tracing::error!(group = %shared.group, lost = reply.deleted_ids.len(), "events consumer: pending entries were trimmed from the stream before being handled");
            }
            if !reply.claimed.is_empty() {
                let counts =
                    delivery_counts(connection, config, &shared.group, &reply.claimed).await?;
                tracing::info!(group = %shared.group, claimed = reply.claimed.len(), "events consumer: took over abandoned entries");
                for (entry, deliveries) in reply.claimed.into_iter().zip(counts) {
                    self.dispatch(entry.id, entry.map, deliveries).await;
                }
            }
            if reply.next_stream_id == "0-0" {
                break;
            }
            cursor = reply.next_stream_id;
        }
        Ok(())
    }

    async fn refresh_gauges(&self, connection: &mut ConnectionManager) -> Result<(), RedisError> {
        let reply: StreamInfoGroupsReply =
            connection.xinfo_groups(&self.shared.config.stream).await?;
        if let Some(group) = reply
            .groups
            .iter()
            .find(|group| group.name == self.shared.group)
        {
            let metrics = &self.shared.metrics;
            let label = [self.shared.group.as_str()];
            metrics
                .consumer_pending
                .with_label_values(&label)
                .set(group.pending as i64);
            if let Some(lag) = group.lag {
                metrics
                    .consumer_lag
                    .with_label_values(&label)
                    .set(lag as i64);
            }
        }
        Ok(())
    }

    /// Decodes the entry and queues it for its customer's worker (waiting while that
    /// queue is full: back-pressure instead of unbounded memory).
    async fn dispatch(&self, stream_id: String, fields: HashMap<String, Value>, deliveries: u32) {
        let event = decode(&fields);
        let route = match &event {
            Ok(event) => customer_hash(&event.customer_id),
            // Undecodable entries are dead-lettered by whichever worker; spread them.
            Err(_) => customer_hash(&stream_id),
        };
        let queue = &self.queues[route as usize % self.queues.len()];
        let delivery = Delivery {
            stream_id,
            fields,
            event,
            deliveries,
        };
        // Fails only when the worker has stopped (shutdown); the entry stays pending.
        let _ = queue.send(delivery).await;
    }
}

/// Acquires and renews the group's lease every `claim_idle / 3` until `stop`, then
/// releases it so a standby replica takes over at once.
async fn keep_lease<H>(
    shared: Arc<Shared<H>>,
    leader: watch::Sender<bool>,
    stop: CancellationToken,
) {
    // Renews the lease if we hold it, takes it if nobody does: 1 when ours afterwards.
    const ACQUIRE: &str = r"
        local holder = redis.call('GET', KEYS[1])
        if holder == ARGV[1] then
            redis.call('PEXPIRE', KEYS[1], ARGV[2])
            return 1
        end
        if not holder then
            redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
            return 1
        end
        return 0";
    const RELEASE: &str = r"
        if redis.call('GET', KEYS[1]) == ARGV[1] then
            return redis.call('DEL', KEYS[1])
        end
        return 0";
    let config = &shared.config;
    let key = format!("{}:lease:{}", config.stream, shared.group);
    let ttl_ms = config.claim_idle.as_millis() as u64;
    loop {
        let held: Result<i64, RedisError> = async {
            let mut connection = shared.cache.connection().await?;
            redis::cmd("EVAL")
                .arg(ACQUIRE)
                .arg(1)
                .arg(&key)
                .arg(&config.consumer_name)
                .arg(ttl_ms)
                .query_async(&mut connection)
                .await
        }
        .await;
        let held = match held {
            Ok(held) => held == 1,
            Err(err) => {
                tracing::warn!(group = %shared.group, %err, "events consumer: cannot renew the group lease");
                false
            }
        };
        if leader.send_replace(held) != held {
            tracing::info!(group = %shared.group, consumer = %config.consumer_name, leader = held, "events consumer: group lease changed hands");
        }
        if !sleep_or_stop(config.claim_idle / 3, &stop).await {
            break;
        }
    }
    leader.send_replace(false);
    let released: Result<i64, RedisError> = async {
        let mut connection = shared.cache.connection().await?;
        redis::cmd("EVAL")
            .arg(RELEASE)
            .arg(1)
            .arg(&key)
            .arg(&config.consumer_name)
            .query_async(&mut connection)
            .await
    }
    .await;
    if let Err(err) = released {
        tracing::debug!(group = %shared.group, %err, "events consumer: lease not released; it expires by itself");
    }
}

/// The delivery count of each claimed entry (`XPENDING` with the id as range).
async fn delivery_counts(
    connection: &mut ConnectionManager,
    config: &EventsConfig,
    group: &str,
    entries: &[redis::streams::StreamId],
) -> Result<Vec<u32>, RedisError> {
    let mut pipe = redis::pipe();
    for entry in entries {
        pipe.xpending_count(&config.stream, group, &entry.id, &entry.id, 1);
    }
    let replies: Vec<StreamPendingCountReply> = pipe.query_async(connection).await?;
    Ok(replies
        .iter()
        .map(|reply| {
            reply
                .ids
                .first()
                .map_or(1, |pending| pending.times_delivered as u32)
        })
        .collect())
}

fn decode(fields: &HashMap<String, Value>) -> Result<Event, String> {
    let bytes = match fields.get("event") {
        Some(Value::BulkString(bytes)) => bytes,
        Some(_) => return Err("field `event` is not a string".to_owned()),
        None => return Err("entry has no `event` field".to_owned()),
    };
    let event =
        Event::decode(bytes.as_slice()).map_err(|err| format!("undecodable event: {err}"))?;
    validate(&event)?;
    Ok(event)
}

/// The envelope's own rules: a known type that matches the payload, UUID ids.
fn validate(event: &Event) -> Result<(), String> {
    let event_type = EventType::try_from(event.event_type)
        .map_err(|_| format!("unknown event type {}", event.event_type))?;
    if event_type == EventType::Unspecified {
        return Err("event type is EVENT_TYPE_UNSPECIFIED".to_owned());
    }
    match &event.payload {
        Some(payload) if event_type_of(payload) == event_type => {}
        _ => {
            return Err(format!(
                "payload does not match event type {}",
                event_type.as_str_name()
            ));
        }
    }
    Uuid::parse_str(&event.event_id).map_err(|err| format!("event_id: {err}"))?;
    Uuid::parse_str(&event.customer_id).map_err(|err| format!("customer_id: {err}"))?;
    Ok(())
}

async fn work<H: Handler>(
    shared: Arc<Shared<H>>,
    mut queue: mpsc::Receiver<Delivery>,
    stop: CancellationToken,
) {
    let batch_size_max = shared.config.consumer_batch_size_max;
    let mut batch = Vec::with_capacity(batch_size_max);
    loop {
        let first = tokio::select! {
            () = stop.cancelled() => return,
            delivery = queue.recv() => match delivery {
                Some(delivery) => delivery,
                None => return,
            },
        };
        batch.push(first);
        // Whatever else is queued already joins the batch: under load one commit and
        // one XACK serve many events; when idle a batch is one event, at once.
        while batch.len() < batch_size_max {
            match queue.try_recv() {
                Ok(delivery) => batch.push(delivery),
                Err(_) => break,
            }
        }
        let settled = settle(&shared, &batch, &stop).await;
        batch.clear();
        if !settled {
            return;
        }
    }
}

/// Why a batch was not applied.
enum BatchError {
    /// The handler refused the event at this index of the batch.
    Handler { index: usize, error: HandlerError },
    /// Postgres failed around the handlers (begin, dedupe insert, commit, time-out).
    Database(anyhow::Error),
}

/// Handles `batch` in queue order: runs of first deliveries are applied in one
/// transaction each and acknowledged with one `XACK`; redeliveries, poison and events
/// after a failure are settled one at a time. Returns false when `stop` interrupted
/// it (what is left stays pending).
async fn settle<H: Handler>(
    shared: &Shared<H>,
    batch: &[Delivery],
    stop: &CancellationToken,
) -> bool {
    let label = [shared.group.as_str()];
    let mut start = 0;
    // The first attempt at this event (by batch index) failed inside a batch.
    let mut failed: Option<(usize, HandlerError)> = None;
    while start < batch.len() {
        if let Some((index, error)) = failed.take() {
            if index == start {
                if !attempt_until_settled(shared, &batch[start], Some(error), stop).await {
                    return false;
                }
                start += 1;
                continue;
            }
            failed = Some((index, error));
        }
        let end = failed.as_ref().map_or(batch.len(), |(index, _)| *index);
        let plain = batch[start..end]
            .iter()
            .take_while(|delivery| delivery.event.is_ok() && delivery.deliveries == 1)
            .count();
        if plain == 0 {
            if !attempt_until_settled(shared, &batch[start], None, stop).await {
                return false;
            }
            start += 1;
            continue;
        }
        let run = &batch[start..start + plain];
        match apply(shared, run).await {
            Ok(()) => {
                let ids: Vec<&str> = run.iter().map(|d| d.stream_id.as_str()).collect();
                acknowledge(shared, &ids).await;
                shared
                    .metrics
                    .consumed_total
                    .with_label_values(&label)
                    .inc_by(plain as u64);
                start += plain;
            }
            // The events before it are applied again as a batch; it then retries alone.
            Err(BatchError::Handler { index, error }) => failed = Some((start + index, error)),
            Err(BatchError::Database(err)) => {
                tracing::warn!(group = %shared.group, error = %err, "events consumer: batch failed; handling its events one at a time");
                for delivery in run {
                    if !attempt_until_settled(shared, delivery, None, stop).await {
                        return false;
                    }
                }
                start += plain;
            }
        }
    }
    true
}

/// Settles one delivery: attempts with back-off, dead-lettering when it cannot be
/// decoded, is rejected, or has failed `deliveries_max` times. `failure` is the error
/// of an attempt already made (inside a batch). Returns false when `stop` interrupted
/// it (the entry stays pending).
async fn attempt_until_settled<H: Handler>(
    shared: &Shared<H>,
    delivery: &Delivery,
    mut failure: Option<HandlerError>,
    stop: &CancellationToken,
) -> bool {
    let config = &shared.config;
    let label = [shared.group.as_str()];
    let mut deliveries = delivery.deliveries;
    if deliveries > 1 {
        shared
            .metrics
            .redeliveries_total
            .with_label_values(&label)
            .inc();
    }
    let event = match &delivery.event {
        Ok(event) => event,
        Err(reason) => return dead_letter(shared, delivery, deliveries, reason, stop).await,
    };
    loop {
        let error = match failure.take() {
            Some(error) => error,
            None => {
                if deliveries > config.deliveries_max {
                    let reason = format!("failed {} times", config.deliveries_max);
                    return dead_letter(shared, delivery, deliveries, &reason, stop).await;
                }
                match apply(shared, std::slice::from_ref(delivery)).await {
                    Ok(()) => {
                        acknowledge(shared, &[delivery.stream_id.as_str()]).await;
                        shared
                            .metrics
                            .consumed_total
                            .with_label_values(&label)
                            .inc();
                        return true;
                    }
                    Err(BatchError::Handler { error, .. }) => error,
                    Err(BatchError::Database(err)) => HandlerError::Retry(err),
                }
            }
        };
        shared
            .metrics
            .handler_errors_total
            .with_label_values(&label)
            .inc();
        tracing::warn!(group = %shared.group, event_id = %event.event_id, attempt = deliveries, error = %error, "events consumer: handler failed");
        if let HandlerError::Reject(_) = error {
            return dead_letter(shared, delivery, deliveries, &error.to_string(), stop).await;
        }
        if deliveries >= config.deliveries_max {
            let reason = format!("failed {deliveries} times; last error: {error}");
            return dead_letter(shared, delivery, deliveries, &reason, stop).await;
        }
        let delay = (RETRY_DELAY_MIN * 2u32.saturating_pow(deliveries - 1)).min(RETRY_DELAY_MAX);
        if !sleep_or_stop(delay, stop).await {
            return false;
        }
        deliveries += 1;
        // Record the attempt in Redis (RETRYCOUNT) so a restart or take-over counts
        // on from here; this also resets the entry's idle time, so no other consumer
        // takes it over while it is being retried here.
        match record_attempt(shared, &delivery.stream_id, deliveries).await {
            Ok(true) => shared
                .metrics
                .redeliveries_total
                .with_label_values(&label)
                .inc(),
            // Another consumer claimed it (we were too slow) or it was trimmed.
            Ok(false) => return true,
            Err(err) => {
                tracing::warn!(group = %shared.group, %err, "events consumer: cannot record a retry; leaving the entry pending");
                return true;
            }
        }
    }
}

/// Applies decoded deliveries in one transaction: records their ids for the group
/// (one statement), hands the handler the events not recorded before, in order, and
/// commits, then tells the handler what committed. Each event gets a span that
/// continues the producer's trace.
async fn apply<H: Handler>(shared: &Shared<H>, run: &[Delivery]) -> Result<(), BatchError> {
    let events: Vec<&Event> = run.iter().filter_map(|d| d.event.as_ref().ok()).collect();
    debug_assert_eq!(
        events.len(),
        run.len(),
        "only decoded deliveries are applied"
    );
    let mut customer_ids = Vec::with_capacity(events.len());
    let mut event_ids = Vec::with_capacity(events.len());
    for (index, event) in events.iter().enumerate() {
        // `validate` checked both already; a failure here is the event's fault.
        let parsed = Uuid::parse_str(&event.customer_id)
            .and_then(|customer| Ok((customer, Uuid::parse_str(&event.event_id)?)));
        match parsed {
            Ok((customer, event_id)) => {
                customer_ids.push(customer);
                event_ids.push(event_id);
            }
            Err(err) => {
                let error = HandlerError::Reject(err.into());
                return Err(BatchError::Handler { index, error });
            }
        }
    }
    let attempt = async {
        let mut tx = shared.pool.begin().await.map_err(database)?;
        let fresh: Vec<Uuid> = sqlx::query_scalar(
            "INSERT INTO processed_events (consumer_group, customer_id, event_id)
             SELECT $1, customer_id, event_id FROM unnest($2::uuid[], $3::uuid[])
                 AS fresh(customer_id, event_id)
             ON CONFLICT DO NOTHING
             RETURNING event_id",
        )
        .bind(&shared.group)
        .bind(&customer_ids)
        .bind(&event_ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(database)?;
        let mut fresh: std::collections::HashSet<Uuid> = fresh.into_iter().collect();
        // Recorded before (a redelivery) or earlier in this batch: skipped. `positions`
        // maps the handler's batch back to `run`.
        let mut positions = Vec::with_capacity(events.len());
        let mut batch = Vec::with_capacity(events.len());
        for (index, event) in events.iter().enumerate() {
            if fresh.remove(&event_ids[index]) {
                positions.push(index);
                batch.push(Fresh {
                    event,
                    span: handler_span(shared, event),
                });
            }
        }
        if !batch.is_empty()
            && let Err(failure) = shared.handler.handle_batch(&mut tx, &batch).await
        {
            // A failure of a batch of one belongs to its event.
            let at = failure.index.or((batch.len() == 1).then_some(0));
            return Err(match at.and_then(|at| positions.get(at)) {
                Some(&index) => BatchError::Handler {
                    index,
                    error: failure.error,
                },
                None => BatchError::Database(match failure.error {
                    HandlerError::Retry(err) | HandlerError::Reject(err) => err,
                }),
            });
        }
        tx.commit().await.map_err(database)?;
        if !batch.is_empty() {
            let applied: Vec<&Event> = batch.iter().map(|fresh| fresh.event).collect();
            shared.handler.committed(&applied);
        }
        Ok(())
    };
    // A hung handler must not hold its worker forever: past claim_idle another
    // consumer may take the entries over anyway.
    match tokio::time::timeout(shared.config.claim_idle, attempt).await {
        Ok(outcome) => outcome,
        Err(_) => Err(BatchError::Database(anyhow::anyhow!(
            "handlers did not finish within {} ms",
            shared.config.claim_idle.as_millis()
        ))),
    }
}

fn database(err: sqlx::Error) -> BatchError {
    BatchError::Database(err.into())
}

/// The span of one handler call, a child of the span that appended the event.
fn handler_span<H>(shared: &Shared<H>, event: &Event) -> tracing::Span {
    let event_type = EventType::try_from(event.event_type).unwrap_or(EventType::Unspecified);
    let span = tracing::info_span!(
        "events.handle",
        otel.name = %format!("{} process", event_type.as_str_name()),
        otel.kind = "consumer",
        messaging.system = "redis",
        messaging.destination.name = %shared.config.stream,
        messaging.consumer.group.name = %shared.group,
        messaging.message.id = %event.event_id,
    );
    if !event.traceparent.is_empty() {
        let mut fields = TraceFields::default();
        fields
            .0
            .insert("traceparent".to_owned(), event.traceparent.clone());
        fields
            .0
            .insert("tracestate".to_owned(), event.tracestate.clone());
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&fields)
        });
        // Fails only when the span is disabled by the filter; nothing to link then.
        let _ = span.set_parent(parent);
    }
    span
}

async fn acknowledge<H>(shared: &Shared<H>, stream_ids: &[&str]) {
    let acked: Result<(), RedisError> = async {
        let mut connection = shared.cache.connection().await?;
        connection
            .xack::<_, _, _, ()>(&shared.config.stream, &shared.group, stream_ids)
            .await
    }
    .await;
    if let Err(err) = acked {
        // The effects are committed; the entries will be redelivered and skipped.
        tracing::warn!(group = %shared.group, %err, "events consumer: XACK failed; the entries will be redelivered and skipped");
    }
}

/// `XCLAIM <id> RETRYCOUNT <attempt> JUSTID` to ourselves: true if we still own it.
async fn record_attempt<H>(
    shared: &Shared<H>,
    stream_id: &str,
    attempt: u32,
) -> Result<bool, RedisError> {
    let mut connection = shared.cache.connection().await?;
    let claimed: Vec<String> = connection
        .xclaim_options(
            &shared.config.stream,
            &shared.group,
            &shared.config.consumer_name,
            0,
            &[stream_id],
            StreamClaimOptions::default()
                .retry(attempt as usize)
                .with_justid(),
        )
        .await?;
    Ok(!claimed.is_empty())
}

/// Copies the entry to the dead-letter stream with the reason, then acknowledges it.
/// If Redis refuses, the entry stays pending and is tried again after a take-over.
async fn dead_letter<H>(
    shared: &Shared<H>,
    delivery: &Delivery,
    deliveries: u32,
    reason: &str,
    stop: &CancellationToken,
) -> bool {
    let config = &shared.config;
    tracing::error!(group = %shared.group, stream_id = %delivery.stream_id, deliveries, reason, "events consumer: dead-lettering an event");
    let mut command = redis::cmd("XADD");
    command
        .arg(config.dead_letter_stream())
        .arg("MAXLEN")
        .arg("~")
        .arg(config.stream_length_max)
        .arg("*");
    // The original fields first (sorted: a stable layout for operators), so a replay
    // can copy them back unchanged.
    let mut fields: Vec<(&String, &Value)> = delivery.fields.iter().collect();
    fields.sort_by(|a, b| a.0.cmp(b.0));
    for (name, value) in fields {
        if let Value::BulkString(bytes) = value {
            command.arg(name.as_str()).arg(bytes.as_slice());
        }
    }
    command
        .arg("dead.error")
        .arg(reason)
        .arg("dead.group")
        .arg(&shared.group)
        .arg("dead.consumer")
        .arg(&config.consumer_name)
        .arg("dead.source_id")
        .arg(&delivery.stream_id)
        .arg("dead.deliveries")
        .arg(deliveries);
    let moved: Result<(), RedisError> = async {
        let mut connection = shared.cache.connection().await?;
        command.query_async::<()>(&mut connection).await?;
        connection
            .xack::<_, _, _, ()>(&config.stream, &shared.group, &[&delivery.stream_id])
            .await
    }
    .await;
    match moved {
        Ok(()) => {
            shared
                .metrics
                .dead_letters_total
                .with_label_values(&[shared.group.as_str()])
                .inc();
        }
        Err(err) => {
            tracing::warn!(group = %shared.group, %err, "events consumer: cannot dead-letter; the entry stays pending");
        }
    }
    !stop.is_cancelled()
}
