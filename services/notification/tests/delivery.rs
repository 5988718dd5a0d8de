//! Delivery against real Postgres, Redis, a real account server and a real local HTTP
//! provider: retries, back-off, Retry-After, dead-lettering, signatures, restarts.

mod common;

use std::time::Duration;

use common::{Provider, Reply, Stack, eventually, service, wait_for_status};
use microloan_platform::testing;
use microloan_proto::notification::v1::{
    AttemptOutcome, Channel, GetNotificationRequest, MessageClass, Notification,
    NotificationStatus, SendRequest, TemplateContent,
    notification_service_client::NotificationServiceClient, send_request::Content,
};
use tonic::transport::Channel as GrpcChannel;

/// Bounded waits: generous for a loaded CI machine; a passing test returns as soon as it holds.
const WAIT: Duration = Duration::from_secs(10);

fn template(key: &str, params: &[(&str, &str)]) -> Option<Content> {
    Some(Content::Template(TemplateContent {
        template_key: key.into(),
        params: params
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }))
}

/// A REGULATORY welcome notice by SMS only (regulatory: no opt-out can interfere).
fn sms_notice(request_id: &str, customer_id: &str) -> SendRequest {
    SendRequest {
        request_id: request_id.into(),
        customer_id: customer_id.into(),
        message_class: MessageClass::Regulatory as i32,
        channels: vec![Channel::Sms as i32],
        content: template("CUSTOMER_CREATED", &[]),
        ..SendRequest::default()
    }
}

async fn send_one(
    client: &mut NotificationServiceClient<GrpcChannel>,
    request: SendRequest,
) -> Notification {
    let mut sent = client
        .send(testing::with_token(request, &service()))
        .await
        .expect("sent")
        .into_inner()
        .notifications;
    assert_eq!(sent.len(), 1);
    sent.remove(0)
}

fn outcomes(notification: &Notification) -> Vec<AttemptOutcome> {
    notification
        .attempts
        .iter()
        .map(|attempt| AttemptOutcome::try_from(attempt.outcome).expect("outcome"))
        .collect()
}

#[tokio::test]
async fn a_provider_failing_twice_with_503_then_accepting_sends_once_after_3_signed_attempts() {
    let stack = Stack::start(
        vec![Reply::Status(503), Reply::Status(503), Reply::Status(200)],
        &[],
    )
    .await;
    let customer_id = stack.create_customer("en").await;
    let mut client = stack.client().await;
    let created = send_one(&mut client, sms_notice("sms-503", &customer_id)).await;
    assert_eq!(created.status, NotificationStatus::Pending as i32);

    let sent = wait_for_status(
        &mut client,
        &created.notification_id,
        NotificationStatus::Sent,
        WAIT,
    )
    .await;
    assert_eq!(
        outcomes(&sent),
        [
            AttemptOutcome::ServerError,
            AttemptOutcome::ServerError,
            AttemptOutcome::Delivered
        ]
    );
    assert_eq!(sent.attempts[0].http_status, 503);
    assert!(sent.attempts[2].provider_message_id.starts_with("msg-"));
    assert_eq!(sent.destination_masked, "+86 138****5678");
    assert_eq!(sent.locale, "en");
    assert!(sent.sent_time.is_some() && sent.next_attempt_time.is_none());

    let received = stack.provider.received();
    assert_eq!(received.len(), 3);
    assert_eq!(stack.provider.accepted(), 1, "delivered once");
    for request in &received {
        assert!(request.signature_ok, "every request is signed");
        assert_eq!(request.idempotency_key, created.notification_id);
        // The phone goes to the provider, and only there.
        assert_eq!(request.body["to"], "+8613812345678");
        assert_eq!(request.body["title"], "Welcome to microloan");
    }
    // A tampered body fails the receiver's check.
    assert!(!common::signature_is_valid(
        common::WEBHOOK_SECRET,
        "1700000000",
        b"{}",
        "v1=00"
    ));
    stack.stop().await;
}

#[tokio::test]
async fn a_400_fails_at_once_without_a_retry() {
    let stack = Stack::start(vec![Reply::Status(400)], &[]).await;
    let customer_id = stack.create_customer("zh-CN").await;
    let mut client = stack.client().await;
    let created = send_one(&mut client, sms_notice("sms-400", &customer_id)).await;
    let failed = wait_for_status(
        &mut client,
        &created.notification_id,
        NotificationStatus::Failed,
        WAIT,
    )
    .await;
    assert_eq!(outcomes(&failed), [AttemptOutcome::Rejected]);
    assert_eq!(failed.attempts[0].http_status, 400);
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(stack.provider.received().len(), 1, "no retry after a 4xx");
    stack.stop().await;
}

#[tokio::test]
async fn a_429_is_retried_no_sooner_than_its_retry_after() {
    let stack = Stack::start(vec![Reply::RetryAfter(429, "1"), Reply::Status(200)], &[]).await;
    let customer_id = stack.create_customer("en").await;
    let mut client = stack.client().await;
    let created = send_one(&mut client, sms_notice("sms-429", &customer_id)).await;
    let sent = wait_for_status(
        &mut client,
        &created.notification_id,
        NotificationStatus::Sent,
        WAIT,
    )
    .await;
    assert_eq!(
        outcomes(&sent),
        [AttemptOutcome::RateLimited, AttemptOutcome::Delivered]
    );
    let received = stack.provider.received();
    let gap = received[1].at - received[0].at;
    // The back-off alone would be at most 50 ms; Retry-After asked for 1 s.
    assert!(gap >= Duration::from_millis(950), "retried after {gap:?}");
    stack.stop().await;
}

#[tokio::test]
async fn a_provider_that_never_answers_is_dead_lettered_after_the_configured_attempts() {
    let stack = Stack::start(vec![Reply::Hang, Reply::Hang, Reply::Hang], &[]).await;
    let customer_id = stack.create_customer("en").await;
    let mut client = stack.client().await;
    let created = send_one(&mut client, sms_notice("sms-hang", &customer_id)).await;
    let dead = wait_for_status(
        &mut client,
        &created.notification_id,
        NotificationStatus::DeadLettered,
        WAIT,
    )
    .await;
    assert_eq!(
        outcomes(&dead),
        [
            AttemptOutcome::Timeout,
            AttemptOutcome::Timeout,
            AttemptOutcome::Timeout
        ]
    );
    assert!(dead.next_attempt_time.is_none());
    assert_eq!(stack.provider.accepted(), 0);
    stack.stop().await;
}

#[tokio::test]
async fn a_process_killed_between_claim_and_delivery_delivers_after_restart_once() {
    // The first request hangs past the moment the process dies; the restarted process
    // claims the notification again once the dead one's lease has expired.
    let provider = Provider::start(vec![Reply::Hang, Reply::Status(200)]).await;
    let account = testing::spawn::<account::Account>(&[]).await;
    let prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
    let mut overrides = common::overrides(
        &account,
        &provider,
        &prefix,
        &[
            ("NOTIFICATION_HTTP_TIMEOUT_MS", "2000"),
            ("NOTIFICATION_CLAIM_LEASE_MS", "2500"),
        ],
    );
    let first = common::spawn_notification(&overrides).await;
    let stack_account = Stack {
        account,
        notification: first,
        provider: provider.clone(),
        redis_prefix: prefix.clone(),
        overrides: overrides.clone(),
    };
    let customer_id = stack_account.create_customer("en").await;
    let mut client = stack_account.client().await;
    let created = send_one(&mut client, sms_notice("sms-kill", &customer_id)).await;
    eventually("the first (hanging) request", WAIT, || async {
        (!provider.received().is_empty()).then_some(())
    })
    .await;
    let Stack {
        account,
        notification: first,
        ..
    } = stack_account;
    let database_url = first.database_url.clone();
    // Killed: the process stops with the delivery in flight (nothing recorded).
    drop(first);

    overrides.push(("DATABASE_URL".to_owned(), database_url));
    let second = common::spawn_notification(&overrides).await;
    let mut client = NotificationServiceClient::new(second.channel().await);
    let sent = wait_for_status(
        &mut client,
        &created.notification_id,
        NotificationStatus::Sent,
        WAIT,
    )
    .await;
    assert_eq!(
        outcomes(&sent),
        [AttemptOutcome::Delivered],
        "one recorded attempt"
    );
    assert_eq!(provider.accepted(), 1, "delivered once");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(provider.accepted(), 1, "and never again");
    second.stop().await.expect("stops");
    account.stop().await.expect("stops");
}

#[tokio::test]
async fn push_goes_to_the_provider_by_customer_id_and_a_render_error_fails_visibly() {
    let stack = Stack::start(vec![], &[]).await;
    let customer_id = stack.create_customer("zh-CN").await;
    let mut client = stack.client().await;
    let push = send_one(
        &mut client,
        SendRequest {
            request_id: "push-1".into(),
            customer_id: customer_id.clone(),
            message_class: MessageClass::Service as i32,
            channels: vec![Channel::Push as i32],
            content: template(
                "CREDIT_LINE_OPENED",
                &[
                    ("limit", "¥20,000.00"),
                    ("daily_rate", "0.05%"),
                    ("apr", "18.25%"),
                ],
            ),
            ..SendRequest::default()
        },
    )
    .await;
    assert_eq!(push.locale, "zh-CN", "the customer's locale from account");
    let sent = wait_for_status(
        &mut client,
        &push.notification_id,
        NotificationStatus::Sent,
        WAIT,
    )
    .await;
    assert!(sent.body.contains("¥20,000.00"), "{}", sent.body);
    let received = stack.provider.received();
    assert_eq!(received[0].path, "/push");
    assert_eq!(received[0].body["to"], customer_id.as_str());
    assert_eq!(sent.destination_masked, "");

    // A declared parameter missing: the notice is kept, FAILED, with the error.
    let broken = send_one(
        &mut client,
        SendRequest {
            request_id: "push-2".into(),
            customer_id: customer_id.clone(),
            message_class: MessageClass::Service as i32,
            channels: vec![Channel::InApp as i32],
            content: template("CREDIT_LINE_OPENED", &[("limit", "¥1.00")]),
            ..SendRequest::default()
        },
    )
    .await;
    assert_eq!(broken.status, NotificationStatus::Failed as i32);
    let fetched = client
        .get_notification(testing::with_token(
            GetNotificationRequest {
                notification_id: broken.notification_id.clone(),
            },
            &service(),
        ))
        .await
        .expect("get")
        .into_inner()
        .notification
        .expect("notification");
    assert_eq!(fetched.status, NotificationStatus::Failed as i32);
    assert!(
        fetched.attempts[0].error_message.contains("render failed"),
        "{:?}",
        fetched.attempts
    );
    stack.stop().await;
}

#[tokio::test]
async fn the_retention_sweep_deletes_settled_notifications_past_retention_and_keeps_the_rest() {
    use chrono::{Duration as Days, Utc};
    use notification::store::retention::delete_settled_before;
    use uuid::Uuid;
    let prefix = format!("test:{}:", Uuid::new_v4().simple());
    let app = testing::spawn::<notification::Notification>(&[("REDIS_KEY_PREFIX", &prefix)]).await;
    let pool = sqlx::PgPool::connect(&app.database_url)
        .await
        .expect("connect");
    let now = Utc::now();
    let customer = Uuid::now_v7();
    // (age in days, status): SENT 2, FAILED 3, DEAD_LETTERED 4, PENDING 1.
    let rows = [(40, 2), (40, 3), (40, 4), (40, 1), (5, 2)];
    let mut ids = Vec::new();
    for (age_days, status) in rows {
        let created = now - Days::days(age_days);
        let id = Uuid::new_v7(uuid::Timestamp::from_unix(
            uuid::NoContext,
            created.timestamp() as u64,
            created.timestamp_subsec_nanos(),
        ));
        sqlx::query(
            "INSERT INTO notifications (notification_id, customer_id, channel, message_class, \
                 status, locale, title, body, next_attempt_time, create_time, update_time) \
             VALUES ($1, $2, 3, 2, $3, 'en', 't', 'b', \
                 CASE WHEN $3 = 1 THEN $4 END, $4, $4)",
        )
        .bind(id)
        .bind(customer)
        .bind(status as i16)
        .bind(created)
        .execute(&pool)
        .await
        .expect("notification");
        sqlx::query(
            "INSERT INTO delivery_attempts (notification_id, attempt_number, start_time, \
                 latency_ms, outcome) VALUES ($1, 1, $2, 1, 1)",
        )
        .bind(id)
        .bind(created)
        .execute(&pool)
        .await
        .expect("attempt");
        ids.push(id);
    }
    let deleted = delete_settled_before(&pool, now - Days::days(30))
        .await
        .expect("sweep");
    assert_eq!(
        deleted, 3,
        "the three settled notifications older than 30 days"
    );
    let left: Vec<Uuid> =
        sqlx::query_scalar("SELECT notification_id FROM notifications ORDER BY notification_id")
            .fetch_all(&pool)
            .await
            .expect("left");
    assert_eq!(
        left,
        vec![ids[3], ids[4]],
        "the old PENDING one and the recent one stay"
    );
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM delivery_attempts")
        .fetch_one(&pool)
        .await
        .expect("attempts");
    assert_eq!(
        attempts, 2,
        "the attempts of deleted notifications go with them"
    );
    assert_eq!(
        delete_settled_before(&pool, now - Days::days(30))
            .await
            .expect("sweep again"),
        0
    );
    app.stop().await.expect("stops");
}
