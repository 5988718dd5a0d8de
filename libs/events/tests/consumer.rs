//! Consumer groups against real Postgres and Redis: effects happen once however often
//! an event is delivered, a dead consumer's events are taken over, poison is
//! dead-lettered without stopping the flow, and a customer's events are handled in
//! order.

mod common;

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::Duration,
};

use common::{Record, World, eventually, sequence_of};
use microloan_events::{BatchFailure, Fresh, Handler, HandlerError};
use microloan_platform::testing;
use microloan_proto::events::v1::Event;
use redis::{AsyncCommands, Value, streams::StreamRangeReply};
use sqlx::{Postgres, Transaction};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const GROUP: &str = "test-group";

/// Publishes everything committed so far (one relay round is enough in tests).
async fn publish(world: &World) {
    world.publish_all().await;
    assert_eq!(world.unpublished().await, 0);
}

/// Appends a copy of every field of stream entry `index` to the stream again, as a
/// relay that crashed after XADD and before its commit would.
async fn duplicate_entry(world: &World, index: usize) {
    let mut redis = world.redis().await;
    let reply: StreamRangeReply = redis
        .xrange_all(&world.config.stream)
        .await
        .expect("xrange");
    let entry = &reply.ids[index];
    let mut command = redis::cmd("XADD");
    command.arg(&world.config.stream).arg("*");
    for (name, value) in &entry.map {
        if let Value::BulkString(bytes) = value {
            command.arg(name).arg(bytes.as_slice());
        }
    }
    command.query_async::<()>(&mut redis).await.expect("xadd");
}

#[tokio::test]
async fn the_same_event_delivered_twice_takes_effect_once() {
    let world = World::new(&testing::redis_url(), |_| {}).await;
    let customer = Uuid::new_v4();
    let event_id = world.commit_event(customer, 0).await;
    publish(&world).await;
    duplicate_entry(&world, 0).await;
    assert_eq!(world.stream_len().await, 2);

    let stop = CancellationToken::new();
    let consumer = tokio::spawn(
        world
            .consumer(GROUP, Record, &world.config)
            .run(stop.clone()),
    );
    let consumed = world.metrics.consumed_total.with_label_values(&[GROUP]);
    eventually("both deliveries are acknowledged", || async {
        consumed.get() == 2 && world.pending(GROUP).await == 0
    })
    .await;
    assert_eq!(world.effects().await, [(event_id, customer, 0)]);

    stop.cancel();
    consumer.await.expect("consumer stops");
    world.finish().await;
}

/// Signals that it started, then never finishes: a consumer that dies mid-event.
#[derive(Debug, Clone)]
struct Hang(Arc<Notify>);

impl Handler for Hang {
    async fn handle(
        &self,
        _tx: &mut Transaction<'_, Postgres>,
        _event: &Event,
    ) -> Result<(), HandlerError> {
        self.0.notify_one();
        std::future::pending().await
    }
}

#[tokio::test]
async fn a_consumer_killed_before_its_ack_is_taken_over_and_the_event_applied_once() {
    // Short enough for a quick take-over, long enough that a slow machine does not
    // see the heir's own entry go idle while it handles it.
    let world = World::new(&testing::redis_url(), |config| {
        config.claim_idle = Duration::from_secs(1);
    })
    .await;
    let customer = Uuid::new_v4();
    let event_id = world.commit_event(customer, 0).await;
    publish(&world).await;

    let started = Arc::new(Notify::new());
    let mut doomed_config = (*world.config).clone();
    doomed_config.consumer_name = "doomed".to_owned();
    let stop = CancellationToken::new();
    let doomed = tokio::spawn(
        world
            .consumer(GROUP, Hang(Arc::clone(&started)), &doomed_config)
            .run(stop.clone()),
    );
    tokio::time::timeout(common::WAIT_MAX, started.notified())
        .await
        .expect("the doomed consumer receives the event");
    doomed.abort();
    let _ = doomed.await;
    assert_eq!(
        world.pending(GROUP).await,
        1,
        "delivered, never acknowledged"
    );

    let mut heir_config = (*world.config).clone();
    heir_config.consumer_name = "heir".to_owned();
    let heir = tokio::spawn(
        world
            .consumer(GROUP, Record, &heir_config)
            .run(stop.clone()),
    );
    eventually(
        "the heir takes the event over and acknowledges it",
        || async { world.pending(GROUP).await == 0 && !world.effects().await.is_empty() },
    )
    .await;
    assert_eq!(world.effects().await, [(event_id, customer, 0)]);
    assert_eq!(
        world
            .metrics
            .redeliveries_total
            .with_label_values(&[GROUP])
            .get(),
        1
    );

    stop.cancel();
    heir.await.expect("consumer stops");
    world.finish().await;
}

/// Fails every attempt at one customer's events; records everyone else's.
#[derive(Debug, Clone)]
struct FailFor {
    customer: Uuid,
    attempts: Arc<AtomicU32>,
}

impl Handler for FailFor {
    async fn handle(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
    ) -> Result<(), HandlerError> {
        if event.customer_id == self.customer.to_string() && sequence_of(event) == 0 {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            return Err(HandlerError::Retry(anyhow::anyhow!("the peer is down")));
        }
        Record.handle(tx, event).await
    }
}

#[tokio::test]
async fn poison_events_are_dead_lettered_after_n_tries_while_later_events_flow() {
    let world = World::new(&testing::redis_url(), |config| {
        config.deliveries_max = 3;
    })
    .await;
    let poisoned = Uuid::new_v4();
    let poison_id = world.commit_event(poisoned, 0).await;
    // Entries no consumer can decode or accept, written straight to the stream.
    let mut redis = world.redis().await;
    let _: String = redis
        .xadd(
            &world.config.stream,
            "*",
            &[("event", b"\xff\xff not protobuf".as_slice())],
        )
        .await
        .expect("xadd garbage");
    let unspecified = Event {
        event_id: Uuid::now_v7().to_string(),
        customer_id: Uuid::new_v4().to_string(),
        ..Default::default()
    };
    let _: String = redis
        .xadd(
            &world.config.stream,
            "*",
            &[("event", prost::Message::encode_to_vec(&unspecified))],
        )
        .await
        .expect("xadd unspecified");
    // Later events: the poisoned customer's next one, and other customers'.
    let mut later = vec![(world.commit_event(poisoned, 1).await, poisoned, 1)];
    for sequence in 0..20 {
        let customer = Uuid::new_v4();
        later.push((
            world.commit_event(customer, sequence).await,
            customer,
            sequence,
        ));
    }
    publish(&world).await;

    let attempts = Arc::new(AtomicU32::new(0));
    let handler = FailFor {
        customer: poisoned,
        attempts: Arc::clone(&attempts),
    };
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(
        world
            .consumer(GROUP, handler, &world.config)
            .run(stop.clone()),
    );
    let dead_letters = world.metrics.dead_letters_total.with_label_values(&[GROUP]);
    eventually(
        "the poison is dead-lettered and everything else handled",
        || async {
            dead_letters.get() == 3
                && world.pending(GROUP).await == 0
                && world.effects().await.len() == 21
        },
    )
    .await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        3,
        "N attempts, then dead-lettered"
    );
    let mut effects = world.effects().await;
    effects.sort();
    later.sort();
    assert_eq!(effects, later, "every later event applied once");

    let dead: StreamRangeReply = redis
        .xrange_all(world.config.dead_letter_stream())
        .await
        .expect("dead letters");
    let fields: Vec<HashMap<String, String>> = dead
        .ids
        .iter()
        .map(|entry| {
            entry
                .map
                .iter()
                .filter(|(name, _)| name.as_str() != "event")
                .map(|(name, value)| {
                    let text: String = redis::from_redis_value_ref(value).expect("text field");
                    (name.clone(), text)
                })
                .collect()
        })
        .collect();
    let errors: Vec<&str> = fields.iter().map(|f| f["dead.error"].as_str()).collect();
    assert!(
        errors.iter().any(|e| e.starts_with("undecodable event")),
        "{errors:?}"
    );
    assert!(
        errors.iter().any(|e| e.contains("EVENT_TYPE_UNSPECIFIED")),
        "{errors:?}"
    );
    let failed = fields
        .iter()
        .find(|f| f.get("event_id").map(String::as_str) == Some(&*poison_id.to_string()))
        .expect("the failing event is dead-lettered");
    assert!(
        failed["dead.error"].contains("the peer is down"),
        "{failed:?}"
    );
    assert_eq!(failed["dead.deliveries"], "3");
    assert_eq!(failed["dead.group"], GROUP);
    assert!(failed.contains_key("dead.source_id"));

    stop.cancel();
    consumer.await.expect("consumer stops");
    world.finish().await;
}

/// Records the order in which it sees each customer's events, slowly enough that
/// workers overlap.
#[derive(Debug, Clone, Default)]
struct Sequence(Arc<Mutex<HashMap<String, Vec<i32>>>>);

impl Handler for Sequence {
    async fn handle(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
    ) -> Result<(), HandlerError> {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Record.handle(tx, event).await?;
        if let Ok(mut seen) = self.0.lock() {
            seen.entry(event.customer_id.clone())
                .or_default()
                .push(sequence_of(event));
        }
        Ok(())
    }
}

#[tokio::test]
async fn several_workers_handle_each_customers_events_in_stream_order() {
    let world = World::new(&testing::redis_url(), |config| {
        config.consumer_workers = 4;
        config.consumer_batch_size_max = 16;
    })
    .await;
    let customers = world.commit_many(8, 40).await;
    world.publish_all().await;
    let seen = Sequence::default();
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(
        world
            .consumer(GROUP, seen.clone(), &world.config)
            .run(stop.clone()),
    );
    eventually("every event is handled", || async {
        world.effects().await.len() == 320 && world.pending(GROUP).await == 0
    })
    .await;
    let seen = seen.0.lock().expect("lock").clone();
    for customer in customers {
        assert_eq!(
            seen[&customer.to_string()],
            (0..40).collect::<Vec<_>>(),
            "customer {customer}"
        );
    }
    stop.cancel();
    consumer.await.expect("consumer stops");
    world.finish().await;
}

#[tokio::test]
async fn two_replicas_of_a_group_keep_each_customers_order_and_a_standby_takes_over() {
    let world = World::new(&testing::redis_url(), |config| {
        config.consumer_batch_size_max = 16;
        // The lease outlives any scheduling hiccup of a loaded test machine.
        config.claim_idle = Duration::from_secs(3);
    })
    .await;
    let seen = Sequence::default();
    let replica = |name: &str, stop: &CancellationToken| {
        let mut config = (*world.config).clone();
        config.consumer_name = name.to_owned();
        tokio::spawn(
            world
                .consumer(GROUP, seen.clone(), &config)
                .run(stop.clone()),
        )
    };
    let (stop_a, stop_b) = (CancellationToken::new(), CancellationToken::new());
    let a = replica("replica-a", &stop_a);
    let b = replica("replica-b", &stop_b);

    let customers = world.commit_many(8, 40).await;
    world.publish_all().await;
    eventually("every event is handled", || async {
        world.effects().await.len() == 320 && world.pending(GROUP).await == 0
    })
    .await;
    let handled = seen.0.lock().expect("lock").clone();
    for customer in &customers {
        assert_eq!(
            handled[&customer.to_string()],
            (0..40).collect::<Vec<_>>(),
            "customer {customer}"
        );
    }

    // Whichever replica leads stops; the other takes the group over.
    stop_a.cancel();
    a.await.expect("replica a stops");
    let late = Uuid::new_v4();
    world.commit_event(late, 0).await;
    publish(&world).await;
    eventually("the remaining replica handles new events", || async {
        world.effects().await.len() == 321
    })
    .await;
    stop_b.cancel();
    b.await.expect("replica b stops");
    world.finish().await;
}

/// A consumer blocked in `XREADGROUP ... BLOCK` is woken by the relay's `XADD`: an
/// event is handled in milliseconds, not after the block time.
#[tokio::test]
async fn a_waiting_consumer_handles_a_new_event_without_waiting_out_its_block_time() {
    let world = World::new(&testing::redis_url(), |config| {
        config.consumer_block = Duration::from_secs(5);
    })
    .await;
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(
        world
            .consumer(GROUP, Record, &world.config)
            .run(stop.clone()),
    );
    let relay = world.spawn_relay(&stop);
    // Let the consumer take the lease, handle nothing and block.
    let first = world.commit_event(Uuid::new_v4(), 0).await;
    eventually("the first event is handled", || async {
        world.effects().await.len() == 1
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = tokio::time::Instant::now();
    let second = world.commit_event(Uuid::new_v4(), 1).await;
    eventually("the second event is handled", || async {
        world.effects().await.len() == 2
    })
    .await;
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(2), "handled after {waited:?}");
    let ids: Vec<Uuid> = world.effects().await.iter().map(|e| e.0).collect();
    assert_eq!(ids, [first, second]);
    stop.cancel();
    consumer.await.expect("consumer stops");
    relay.await.expect("relay stops");
    world.finish().await;
}

/// The replay script of docs/events.md ("Operating it with redis-cli"), verbatim.
const REPLAY: &str = "
  local entry = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])[1]
  if not entry then return redis.error_reply('no such dead letter') end
  local fields, copy = entry[2], {}
  for i = 1, #fields, 2 do
    if string.sub(fields[i], 1, 5) ~= 'dead.' then
      table.insert(copy, fields[i]); table.insert(copy, fields[i + 1])
    end
  end
  local id = redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '*', unpack(copy))
  redis.call('XDEL', KEYS[1], ARGV[1])
  return id";

/// Fails while `broken` is set; records otherwise.
#[derive(Debug, Clone)]
struct Fixable(Arc<std::sync::atomic::AtomicBool>);

impl Handler for Fixable {
    async fn handle(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
    ) -> Result<(), HandlerError> {
        if self.0.load(Ordering::SeqCst) {
            return Err(HandlerError::Reject(anyhow::anyhow!("template missing")));
        }
        Record.handle(tx, event).await
    }
}

#[tokio::test]
async fn a_dead_letter_replayed_with_the_documented_script_is_applied_once() {
    let world = World::new(&testing::redis_url(), |_| {}).await;
    let customer = Uuid::new_v4();
    let event_id = world.commit_event(customer, 0).await;
    world.publish_all().await;
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(
        world
            .consumer(GROUP, Fixable(Arc::clone(&broken)), &world.config)
            .run(stop.clone()),
    );
    let dead_letters = world.metrics.dead_letters_total.with_label_values(&[GROUP]);
    eventually("the rejected event is dead-lettered", || async {
        dead_letters.get() == 1 && world.pending(GROUP).await == 0
    })
    .await;
    assert!(world.effects().await.is_empty());

    // The operator fixes the cause and replays the dead letter.
    broken.store(false, Ordering::SeqCst);
    let mut redis = world.redis().await;
    let dead: StreamRangeReply = redis
        .xrange_all(world.config.dead_letter_stream())
        .await
        .expect("dead letters");
    let dead_id = dead.ids[0].id.clone();
    let _: String = redis::cmd("EVAL")
        .arg(REPLAY)
        .arg(2)
        .arg(world.config.dead_letter_stream())
        .arg(&world.config.stream)
        .arg(&dead_id)
        .arg(world.config.stream_length_max)
        .query_async(&mut redis)
        .await
        .expect("replay");
    eventually("the replayed event is applied", || async {
        world.effects().await.len() == 1 && world.pending(GROUP).await == 0
    })
    .await;
    assert_eq!(world.effects().await, [(event_id, customer, 0)]);
    let left: usize = redis
        .xlen(world.config.dead_letter_stream())
        .await
        .expect("xlen");
    assert_eq!(left, 0, "the replayed dead letter is gone");
    stop.cancel();
    consumer.await.expect("consumer stops");
    world.finish().await;
}

/// Overrides the batch hook: records each batch's size and the events `committed`
/// reports, applies the batch through `Record`, and rejects one customer's events by
/// their index in the batch.
#[derive(Debug, Clone, Default)]
struct Batched {
    reject: Uuid,
    sizes: Arc<Mutex<Vec<usize>>>,
    committed: Arc<Mutex<Vec<String>>>,
}

impl Handler for Batched {
    async fn handle(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let batch = [Fresh {
            event,
            span: tracing::Span::current(),
        }];
        self.handle_batch(tx, &batch)
            .await
            .map_err(|failure| failure.error)
    }

    async fn handle_batch(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        batch: &[Fresh<'_>],
    ) -> Result<(), BatchFailure> {
        self.sizes.lock().expect("sizes").push(batch.len());
        for (index, fresh) in batch.iter().enumerate() {
            if fresh.event.customer_id == self.reject.to_string() {
                let error = HandlerError::Reject(anyhow::anyhow!("not for this service"));
                return Err(BatchFailure::at(index, error));
            }
            Record
                .handle(tx, fresh.event)
                .await
                .map_err(|error| BatchFailure::at(index, error))?;
        }
        Ok(())
    }

    fn committed(&self, events: &[&Event]) {
        let mut committed = self.committed.lock().expect("committed");
        committed.extend(events.iter().map(|event| event.event_id.clone()));
    }
}

#[tokio::test]
async fn a_batch_handler_gets_fresh_events_together_and_a_rejected_one_is_dead_lettered_alone() {
    // One worker: every event queues behind the same one, so batches form.
    let world = World::new(&testing::redis_url(), |config| config.consumer_workers = 1).await;
    let mut customers = world.commit_many(10, 2).await;
    publish(&world).await;
    // A copy of the first entry before the rejected event: recorded already when it
    // comes (earlier in the same batch), so left out of the handler's batch; the
    // rejected event's index in the handler's batch is then one less than in the
    // runner's, and only the rejected event may be dead-lettered.
    duplicate_entry(&world, 0).await;
    let rejected = Uuid::new_v4();
    world.commit_event(rejected, 0).await;
    customers.extend(world.commit_many(10, 2).await);
    let mut expected: Vec<(Uuid, i32)> = customers
        .iter()
        .flat_map(|&customer| [(customer, 0), (customer, 1)])
        .collect();
    publish(&world).await;

    let handler = Batched {
        reject: rejected,
        ..Batched::default()
    };
    let stop = CancellationToken::new();
    let consumer = tokio::spawn(
        world
            .consumer(GROUP, handler.clone(), &world.config)
            .run(stop.clone()),
    );
    let dead_letters = world.metrics.dead_letters_total.with_label_values(&[GROUP]);
    eventually("everything handled or dead-lettered", || async {
        dead_letters.get() == 1
            && world.pending(GROUP).await == 0
            && world.effects().await.len() == expected.len()
    })
    .await;
    stop.cancel();
    consumer.await.expect("consumer stops");

    let effects = world.effects().await;
    let mut applied: Vec<(Uuid, i32)> = effects
        .iter()
        .map(|&(_, customer, sequence)| (customer, sequence))
        .collect();
    applied.sort();
    expected.sort();
    assert_eq!(applied, expected, "every other event applied once");
    let mut applied_ids: Vec<String> = effects
        .iter()
        .map(|(event_id, _, _)| event_id.to_string())
        .collect();
    applied_ids.sort();
    let mut committed = handler.committed.lock().expect("committed").clone();
    committed.sort();
    assert_eq!(
        committed, applied_ids,
        "committed names each applied event once"
    );
    let sizes = handler.sizes.lock().expect("sizes").clone();
    assert!(
        sizes.iter().any(|&size| size > 1),
        "events reached the handler together: {sizes:?}"
    );
    world.finish().await;
}
