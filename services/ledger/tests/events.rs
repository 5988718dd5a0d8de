//! The ledger runs the events relay (libs/events): its database has the outbox, an
//! event appended in one of its transactions reaches the stream under its key prefix,
//! and the events metrics are served on its admin port.

use std::time::Duration;

use ledger::Ledger;
use microloan_events::{NewEvent, append};
use microloan_platform::testing;
use microloan_proto::events::v1::{LoanDisbursed, event::Payload};
use redis::AsyncCommands;
use uuid::Uuid;

#[tokio::test]
async fn an_event_appended_in_a_ledger_transaction_is_relayed_and_counted() {
    let prefix = format!("test:{}:", Uuid::new_v4().simple());
    let app = testing::spawn::<Ledger>(&[("REDIS_KEY_PREFIX", &prefix)]).await;

    let pool = sqlx::PgPool::connect(&app.database_url)
        .await
        .expect("connect");
    let mut tx = pool.begin().await.expect("begin");
    let event = NewEvent {
        customer_id: Uuid::new_v4(),
        business_date: None,
        payload: Payload::LoanDisbursed(LoanDisbursed {
            loan_id: Uuid::new_v4().to_string(),
            ..Default::default()
        }),
    };
    let appended = append(&mut tx, "ledger", event).await.expect("append");
    tx.commit().await.expect("commit");
    pool.close().await;

    let client = redis::Client::open(testing::redis_url()).expect("redis url");
    let mut redis = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let stream = format!("{prefix}{{events}}");
    let mut published = false;
    for _ in 0..250 {
        let length: usize = redis.xlen(&stream).await.expect("xlen");
        if length == 1 {
            published = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        published,
        "event {} never reached {stream}",
        appended.event_id
    );

    // The relay counts a batch once its commit returns, just after the XADD.
    let mut metrics = String::new();
    for _ in 0..250 {
        metrics = testing::http_get(app.admin_addr, "/metrics").await;
        if metrics.contains("events_published_total 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        metrics.contains("events_published_total 1"),
        "events metrics missing:\n{metrics}"
    );
    assert!(metrics.contains("events_outbox_backlog"));
    app.stop().await.expect("clean stop");
}
