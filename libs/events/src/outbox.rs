//! Writing events: [`append`] puts an event into the outbox inside the caller's
//! transaction, so the event exists if and only if the state change it reports
//! committed (DESIGN §3).

use std::{collections::HashMap, sync::LazyLock, time::SystemTime};

use microloan_proto::{
    events::v1::{Event, EventType, event::Payload},
    google::r#type::Date,
};
use opentelemetry::propagation::Injector;
use prost::Message;
use sqlx::PgConnection;
use tokio::sync::watch;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

/// The outbox is split into this many partitions by customer; one relay at a time
/// publishes a partition, so several replicas share the work without reordering a
/// customer's events. Fixed, not a knob: rows carry their partition, and changing the
/// count while rows wait would let two relays publish one customer's events at once.
pub const PARTITIONS: u16 = 16;

/// `NOTIFY` channel the relays of a database listen on; see [`wake_relays`].
pub const NOTIFY_CHANNEL: &str = "microloan_events_outbox";

/// Counts appends in this process, so the relays of this process wake at once (see
/// [`append`] for why not `NOTIFY`). A watch channel: a relay busy when an append
/// happens still sees the change when it next waits.
static APPENDED: LazyLock<watch::Sender<u64>> = LazyLock::new(|| watch::channel(0).0);

/// The relays' end of the in-process wake-up.
pub(crate) fn appended() -> watch::Receiver<u64> {
    APPENDED.subscribe()
}

/// First key of the advisory locks [`append`] takes per customer (the second is the
/// customer's hash); the two-key lock space keeps them apart from other users'.
pub(crate) const APPEND_LOCK_CLASS: i32 = 0x6576_6f62; // "evob"
/// First key of the advisory locks a relay takes per partition.
pub(crate) const RELAY_LOCK_CLASS: i32 = 0x6576_726c; // "evrl"

/// An event about to be written: what the producer knows. The rest of the envelope
/// (id, type, time, trace context, producer) is filled in by [`append`].
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub customer_id: Uuid,
    /// The ledger business date the change was booked on, if it belongs to one.
    pub business_date: Option<Date>,
    pub payload: Payload,
}

/// What [`append`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Appended {
    pub event_id: Uuid,
    pub event: Event,
}

/// Writes `event` to the outbox on `connection`, which should be inside the caller's
/// transaction (`&mut *tx`): the row commits or rolls back with the state change.
///
/// Assigns the event id (UUIDv7), the event type (from the payload, so the two always
/// agree), `occurred_at`, `producer` and the current span's W3C trace context.
///
/// Wake-up: `append` wakes the relays of this process, which then poll briefly until
/// the caller's commit shows the row. It does not `NOTIFY`: Postgres serializes the
/// commits of notifying transactions on one lock held through the WAL flush, which
/// cut single-event commits from about 5,500/s to 600/s on the benchmark machine
/// (docs/events.md). Other processes' relays find the row by polling; a producer in a
/// process without a relay can call [`wake_relays`].
///
/// Ordering: takes a transaction-level advisory lock on the customer before the row
/// gets its id, so a second transaction appending for the same customer waits until
/// this one ends; a customer's ids are therefore in commit order, and the relay
/// publishes in id order. A transaction appending for several customers should append
/// in a consistent order (e.g. sorted by customer id); otherwise two such
/// transactions can deadlock, which Postgres detects and reports (SQLSTATE 40P01) so
/// the caller retries.
pub async fn append(
    connection: &mut PgConnection,
    producer: &str,
    event: NewEvent,
) -> Result<Appended, sqlx::Error> {
    let event_id = Uuid::now_v7();
    let event_type = event_type_of(&event.payload);
    let customer_id = event.customer_id;
    let envelope = envelope(event_id, producer, &current_trace_context(), event);
    let hash = customer_hash(&envelope.customer_id);
    // One round trip: the CTE takes the customer's lock before the INSERT draws the id
    // from the sequence.
    sqlx::query(
        "WITH locked AS (SELECT pg_advisory_xact_lock($1, $2))
         INSERT INTO outbox (event_id, customer_id, partition, event_type, payload)
         SELECT $3, $4, $5, $6, $7 FROM locked",
    )
    .bind(APPEND_LOCK_CLASS)
    .bind(hash as i32)
    .bind(event_id)
    .bind(customer_id)
    .bind(partition_of(hash) as i16)
    .bind(event_type.as_str_name())
    .bind(envelope.encode_to_vec())
    .execute(connection)
    .await?;
    APPENDED.send_modify(|count| *count = count.wrapping_add(1));
    Ok(Appended {
        event_id,
        event: envelope,
    })
}

/// Events one [`append_batch`] statement writes at most; a longer batch is written in
/// statements of this many (one transaction still: the caller's).
pub const APPEND_BATCH_MAX: usize = 1_000;

/// Writes `events`, in order, to the outbox on `connection` (inside the caller's
/// transaction, as [`append`]), one statement per [`APPEND_BATCH_MAX`] events instead of
/// one round trip per event: for producers that emit many events in one transaction,
/// such as the ledger's end of day (a reminder per instalment due soon).
///
/// The envelope of each event is filled in as [`append`] does (one trace context: the
/// current span's). Ordering is [`append`]'s: the statement first takes the advisory
/// lock of every customer of the chunk, in ascending hash order (so two batch writers
/// cannot deadlock on each other), then draws the ids in the order of `events`; a
/// customer's events keep their relative order and follow earlier commits.
pub async fn append_batch(
    connection: &mut PgConnection,
    producer: &str,
    events: Vec<NewEvent>,
) -> Result<Vec<Appended>, sqlx::Error> {
    let trace_context = current_trace_context();
    let mut written = Vec::with_capacity(events.len());
    let mut events = events.into_iter().peekable();
    while events.peek().is_some() {
        let mut event_ids = Vec::with_capacity(APPEND_BATCH_MAX);
        let mut customer_ids = Vec::with_capacity(APPEND_BATCH_MAX);
        let mut hashes = Vec::with_capacity(APPEND_BATCH_MAX);
        let mut partitions = Vec::with_capacity(APPEND_BATCH_MAX);
        let mut event_types = Vec::with_capacity(APPEND_BATCH_MAX);
        let mut payloads = Vec::with_capacity(APPEND_BATCH_MAX);
        let mut chunk = Vec::with_capacity(APPEND_BATCH_MAX);
        for event in events.by_ref().take(APPEND_BATCH_MAX) {
            let event_id = Uuid::now_v7();
            let event_type = event_type_of(&event.payload);
            customer_ids.push(event.customer_id);
            let event = envelope(event_id, producer, &trace_context, event);
            let hash = customer_hash(&event.customer_id);
            event_ids.push(event_id);
            hashes.push(hash as i32);
            partitions.push(partition_of(hash) as i16);
            event_types.push(event_type.as_str_name());
            payloads.push(event.encode_to_vec());
            chunk.push(Appended { event_id, event });
        }
        debug_assert!(chunk.len() <= APPEND_BATCH_MAX);
        // The locks are taken (sorted, once per hash) before any row draws its id from
        // the sequence: `locked` is joined into the INSERT's input, and `OFFSET 0` keeps
        // the planner from flattening the ordered lock query into it.
        sqlx::query(
            "WITH locked AS (
               SELECT count(pg_advisory_xact_lock($1, hash)) AS locks
               FROM (SELECT DISTINCT hash FROM unnest($3::int4[]) AS hash
                     ORDER BY hash OFFSET 0) AS sorted
             )
             INSERT INTO outbox (event_id, customer_id, partition, event_type, payload)
             SELECT event.event_id, event.customer_id, event.partition, event.event_type,
                    event.payload
             FROM locked,
                  unnest($2::uuid[], $4::uuid[], $5::int2[], $6::text[], $7::bytea[])
                    WITH ORDINALITY
                    AS event(event_id, customer_id, partition, event_type, payload, position)
             WHERE locked.locks >= 0
             ORDER BY event.position",
        )
        .bind(APPEND_LOCK_CLASS)
        .bind(&event_ids)
        .bind(&hashes)
        .bind(&customer_ids)
        .bind(&partitions)
        .bind(&event_types)
        .bind(&payloads)
        .execute(&mut *connection)
        .await?;
        written.extend(chunk);
    }
    if !written.is_empty() {
        APPENDED.send_modify(|count| *count = count.wrapping_add(written.len() as u64));
    }
    Ok(written)
}

/// The envelope of `event`: what [`append`] and [`append_batch`] store and publish.
fn envelope(
    event_id: Uuid,
    producer: &str,
    (traceparent, tracestate): &(String, String),
    event: NewEvent,
) -> Event {
    Event {
        event_id: event_id.to_string(),
        event_type: event_type_of(&event.payload) as i32,
        occurred_at: Some(prost_types::Timestamp::from(SystemTime::now())),
        customer_id: event.customer_id.to_string(),
        traceparent: traceparent.clone(),
        tracestate: tracestate.clone(),
        producer: producer.to_owned(),
        business_date: event.business_date,
        payload: Some(event.payload),
    }
}

/// Wakes the relays of every process on this database when the caller's transaction
/// commits (`NOTIFY`; dropped on rollback). For producers that run no relay of their
/// own; not for a hot path (see [`append`]).
pub async fn wake_relays(connection: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(NOTIFY_CHANNEL)
        .execute(connection)
        .await?;
    Ok(())
}

/// The event type that goes with a payload: one place, so they cannot disagree.
pub fn event_type_of(payload: &Payload) -> EventType {
    match payload {
        Payload::CustomerCreated(_) => EventType::CustomerCreated,
        Payload::CreditLineOpened(_) => EventType::CreditLineOpened,
        Payload::CreditLineChanged(_) => EventType::CreditLineChanged,
        Payload::ApplicationDeclined(_) => EventType::ApplicationDeclined,
        Payload::LoanDisbursed(_) => EventType::LoanDisbursed,
        Payload::RepaymentReceived(_) => EventType::RepaymentReceived,
        Payload::InstallmentDueSoon(_) => EventType::InstallmentDueSoon,
        Payload::InstallmentOverdue(_) => EventType::InstallmentOverdue,
        Payload::LoanPaidOff(_) => EventType::LoanPaidOff,
        Payload::LoanWrittenOff(_) => EventType::LoanWrittenOff,
    }
}

/// FNV-1a over the customer id's text: stable across processes, versions and
/// languages (unlike `std`'s randomly seeded hasher), so every replica and consumer
/// routes a customer the same way.
pub fn customer_hash(customer_id: &str) -> u32 {
    const OFFSET_BASIS: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    customer_id.bytes().fold(OFFSET_BASIS, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(PRIME)
    })
}

/// The outbox partition of a customer hash.
pub fn partition_of(hash: u32) -> u16 {
    // PARTITIONS fits in u16, so the remainder does too.
    (hash % u32::from(PARTITIONS)) as u16
}

/// The current span's `traceparent` and `tracestate` through the global propagator
/// (W3C trace context, installed by the platform's telemetry); empty outside a trace.
fn current_trace_context() -> (String, String) {
    let context = tracing::Span::current().context();
    let mut fields = TraceFields::default();
    opentelemetry::global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut fields);
    });
    (
        fields.0.remove("traceparent").unwrap_or_default(),
        fields.0.remove("tracestate").unwrap_or_default(),
    )
}

#[derive(Debug, Default)]
pub(crate) struct TraceFields(pub(crate) HashMap<String, String>);

impl Injector for TraceFields {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key.to_owned(), value);
    }
}

impl opentelemetry::propagation::Extractor for TraceFields {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_customer_hash_is_fnv1a_and_partitions_stay_in_range() {
        // Reference values of 32-bit FNV-1a.
        assert_eq!(customer_hash(""), 0x811c_9dc5);
        assert_eq!(customer_hash("a"), 0xe40c_292c);
        let mut seen = [false; PARTITIONS as usize];
        for _ in 0..2_000 {
            let partition = partition_of(customer_hash(&Uuid::new_v4().to_string()));
            assert!(partition < PARTITIONS);
            seen[partition as usize] = true;
        }
        assert!(seen.iter().all(|hit| *hit), "every partition is used");
    }
}
