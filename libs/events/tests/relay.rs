//! The outbox and the relay against real Postgres and Redis: nothing is published
//! that did not commit, nothing committed is lost, and each customer's events reach
//! the stream in commit order, through crashes, Redis outages and competing relays.

mod common;

use std::time::Duration;

use common::{RedisServer, World, assert_complete_and_ordered, event_of, eventually};
use microloan_events::{append, append_batch, outbox::APPEND_BATCH_MAX};
use microloan_platform::testing;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

#[tokio::test]
async fn a_rolled_back_transaction_leaves_no_event_and_a_committed_one_is_published_once() {
    let world = World::new(&testing::redis_url(), |_| {}).await;
    let customer = Uuid::new_v4();

    let mut rolled_back = world.pool.begin().await.expect("begin");
    append(&mut rolled_back, "test", event_of(customer, 0))
        .await
        .expect("append");
    rolled_back.rollback().await.expect("rollback");
    let committed = world.commit_event(customer, 1).await;

    let stop = CancellationToken::new();
    let relay = world.spawn_relay(&stop);
    eventually("the committed event is published", || async {
        world.unpublished().await == 0
            && world.stream_len().await >= 1
            && world.metrics.published_total.get() == 1
    })
    .await;
    // More rounds publish nothing more.
    assert_eq!(world.relay().publish_batch().await.expect("batch"), 0);
    let events = world.stream_events().await;
    assert_eq!(events.len(), 1, "exactly one entry: {events:?}");
    let event = &events[0];
    assert_eq!(event.event_id, committed.to_string());
    assert_eq!(event.customer_id, customer.to_string());
    assert_eq!(event.producer, "test");
    assert_eq!(event.event_type, 7, "EVENT_TYPE_INSTALLMENT_DUE_SOON");
    assert!(event.occurred_at.is_some());
    assert_eq!(
        Uuid::parse_str(&event.event_id)
            .expect("uuid")
            .get_version_num(),
        7
    );
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&world.pool)
        .await
        .expect("count");
    assert_eq!(rows, 1, "the rolled-back row does not exist");
    assert_eq!(world.metrics.published_total.get(), 1);

    stop.cancel();
    relay.await.expect("relay stops");
    world.finish().await;
}

#[tokio::test]
async fn events_committed_around_a_relay_crash_are_all_published_after_a_restart() {
    let world = World::new(&testing::redis_url(), |config| {
        config.relay_batch_size_max = 8;
    })
    .await;
    let stop = CancellationToken::new();
    // A relay killed mid-work, between commits and publications, as a process dies.
    let doomed = world.spawn_relay(&stop);
    let metrics = world.metrics.clone();
    let killer = tokio::spawn(async move {
        eventually("the doomed relay publishes something", || async {
            metrics.published_total.get() >= 20
        })
        .await;
        doomed.abort();
        let _ = doomed.await;
    });
    let mut customers = world.commit_many(10, 30).await;
    killer.await.expect("relay killed");
    // Committed after the crash: nobody publishes them until a relay restarts.
    let late = world.commit_many(5, 30).await;
    assert!(world.unpublished().await >= 150);
    customers.extend(late);

    let restarted = world.spawn_relay(&stop);
    eventually("the backlog drains", || async {
        world.unpublished().await == 0
    })
    .await;
    // At least once: a batch cut off between XADD and commit may appear twice, but
    // nothing is missing and each customer's order holds.
    assert_complete_and_ordered(&world.stream_events().await, &customers, 30, false);

    stop.cancel();
    restarted.await.expect("relay stops");
    world.finish().await;
}

#[tokio::test]
async fn with_redis_stopped_a_thousand_events_wait_and_drain_in_commit_order_when_it_returns() {
    let mut redis = RedisServer::start().await;
    let world = World::new(&redis.url(), |_| {}).await;
    let stop = CancellationToken::new();
    let relay = world.spawn_relay(&stop);
    // Prove the relay works before the outage.
    world.commit_event(Uuid::new_v4(), 0).await;
    eventually("the first event is published", || async {
        world.unpublished().await == 0
    })
    .await;
    assert_eq!(world.stream_len().await, 1);

    redis.stop();
    // The producers keep committing while Redis is down.
    let customers = world.commit_many(20, 50).await;
    assert_eq!(world.unpublished().await, 1_000);
    eventually("the relay notices the outage", || async {
        world.metrics.relay_errors_total.get() > 0
    })
    .await;
    assert_eq!(
        world.unpublished().await,
        1_000,
        "nothing leaves while Redis is down"
    );

    redis.restart().await;
    eventually("the backlog drains", || async {
        world.unpublished().await == 0
    })
    .await;
    // The restarted server is empty (no persistence): the stream holds exactly the
    // backlog, published once each, each customer's in commit order.
    let events = world.stream_events().await;
    assert_eq!(events.len(), 1_000);
    assert_complete_and_ordered(&events, &customers, 50, true);

    stop.cancel();
    relay.await.expect("relay stops");
    world.finish().await;
}

#[tokio::test]
async fn two_relays_on_one_outbox_publish_every_event_once_in_customer_order() {
    let world = World::new(&testing::redis_url(), |config| {
        config.relay_batch_size_max = 16;
    })
    .await;
    let stop = CancellationToken::new();
    let first = world.spawn_relay(&stop);
    let second = world.spawn_relay(&stop);
    let customers = world.commit_many(40, 25).await;
    eventually("the backlog drains", || async {
        world.unpublished().await == 0
    })
    .await;
    let events = world.stream_events().await;
    assert_eq!(events.len(), 1_000);
    assert_complete_and_ordered(&events, &customers, 25, true);

    stop.cancel();
    first.await.expect("relay stops");
    second.await.expect("relay stops");
    world.finish().await;
}

/// The precondition of the ordering guarantee: a customer's ids follow commit order.
/// Without the per-customer lock, the waiting writer would draw its id before the
/// first writer's second event and commit after it.
#[tokio::test]
async fn a_second_writer_for_the_same_customer_waits_so_ids_follow_commit_order() {
    let world = World::new(&testing::redis_url(), |_| {}).await;
    let customer = Uuid::new_v4();
    let mut first = world.pool.begin().await.expect("begin");
    append(&mut first, "test", event_of(customer, 0))
        .await
        .expect("append");

    let pool = world.pool.clone();
    let second = tokio::spawn(async move {
        let mut tx = pool.begin().await.expect("begin");
        let appended = append(&mut tx, "test", event_of(customer, 2))
            .await
            .expect("append");
        tx.commit().await.expect("commit");
        appended.event_id
    });
    eventually(
        "the second writer waits for the customer's lock",
        || async { world.advisory_locks_waiting().await == 1 },
    )
    .await;
    append(&mut first, "test", event_of(customer, 1))
        .await
        .expect("append");
    first.commit().await.expect("commit");
    second.await.expect("second writer");

    let sequences: Vec<i32> = sqlx::query_scalar("SELECT payload FROM outbox ORDER BY id")
        .fetch_all(&world.pool)
        .await
        .map(|payloads: Vec<Vec<u8>>| {
            payloads
                .iter()
                .map(|bytes| {
                    let event: microloan_proto::events::v1::Event =
                        prost::Message::decode(bytes.as_slice()).expect("decode");
                    common::sequence_of(&event)
                })
                .collect()
        })
        .expect("rows");
    assert_eq!(sequences, [0, 1, 2], "id order is commit order");
    world.finish().await;
}

/// A batch longer than one statement, customers interleaved, and a second writer for
/// one of its customers: every event is written once, each customer's in the batch's
/// order, and the second writer's event follows the batch (it waited for its lock).
#[tokio::test]
async fn a_batch_append_writes_every_event_in_order_and_holds_its_customers_locks() {
    let world = World::new(&testing::redis_url(), |_| {}).await;
    let customers: Vec<Uuid> = (0..7).map(|_| Uuid::new_v4()).collect();
    let per_customer = i32::try_from(APPEND_BATCH_MAX * 2 / customers.len() + 3).expect("fits");
    // Interleaved: customer 0's sequence 0, customer 1's sequence 0, ..., then 1s.
    let batch: Vec<_> = (0..per_customer)
        .flat_map(|sequence| customers.iter().map(move |c| event_of(*c, sequence)))
        .collect();
    let total = batch.len();
    assert!(total > 2 * APPEND_BATCH_MAX, "three statements at least");

    let mut tx = world.pool.begin().await.expect("begin");
    assert!(
        append_batch(&mut tx, "test", Vec::new())
            .await
            .expect("empty")
            .is_empty()
    );
    let written = append_batch(&mut tx, "test", batch).await.expect("batch");
    assert_eq!(written.len(), total);
    let distinct: std::collections::HashSet<_> = written.iter().map(|w| w.event_id).collect();
    assert_eq!(distinct.len(), total, "one id per event");
    assert!(written.iter().all(|w| w.event.producer == "test"));

    let pool = world.pool.clone();
    let late_customer = customers[3];
    let second = tokio::spawn(async move {
        let mut tx = pool.begin().await.expect("begin");
        append(&mut tx, "test", event_of(late_customer, per_customer))
            .await
            .expect("append");
        tx.commit().await.expect("commit");
    });
    eventually("the second writer waits for the batch's lock", || async {
        world.advisory_locks_waiting().await == 1
    })
    .await;
    tx.commit().await.expect("commit");
    second.await.expect("second writer");

    world.publish_all().await;
    let events = world.stream_events().await;
    assert_eq!(events.len(), total + 1);
    let late: Vec<_> = events
        .iter()
        .filter(|event| event.customer_id == late_customer.to_string())
        .map(common::sequence_of)
        .collect();
    assert_eq!(
        late.last(),
        Some(&per_customer),
        "the late event comes last"
    );
    let without_late: Vec<_> = events
        .into_iter()
        .filter(|event| common::sequence_of(event) < per_customer)
        .collect();
    assert_complete_and_ordered(&without_late, &customers, per_customer, true);
    world.finish().await;
}

#[tokio::test]
async fn published_rows_past_retention_are_swept_and_the_backlog_is_measured() {
    let world = World::new(&testing::redis_url(), |config| {
        config.outbox_retention = Duration::from_secs(3_600);
    })
    .await;
    for sequence in 0..3 {
        world.commit_event(Uuid::new_v4(), sequence).await;
    }
    let relay = world.relay();
    relay.refresh_gauges().await.expect("gauges");
    assert_eq!(world.metrics.outbox_backlog.get(), 3);
    world.publish_all().await;
    relay.refresh_gauges().await.expect("gauges");
    assert_eq!(world.metrics.outbox_backlog.get(), 0);
    assert_eq!(
        world.metrics.outbox_oldest_unpublished_age_seconds.get(),
        0.0
    );
    // One row was published two hours ago, one just now; one is still waiting.
    world.commit_event(Uuid::new_v4(), 3).await;
    sqlx::query(
        "UPDATE outbox SET published_at = now() - interval '2 hours'
         WHERE id = (SELECT min(id) FROM outbox)",
    )
    .execute(&world.pool)
    .await
    .expect("age a row");
    let (outbox, _) = relay.sweep().await.expect("sweep");
    assert_eq!(outbox, 1);
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(&world.pool)
        .await
        .expect("count");
    assert_eq!(left, 3, "recent and unpublished rows stay");
    world.finish().await;
}
