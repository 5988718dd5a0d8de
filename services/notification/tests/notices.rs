//! Notices from events and from Send, preferences, quiet hours and the in-app stream,
//! against real Postgres, Redis, a real account server and a local provider.

mod common;

use std::time::Duration;

use chrono::{Timelike, Utc};
use common::{Stack, customer, eventually, operator, service};
use microloan_platform::testing;
use microloan_proto::{
    common::v1::Money,
    events::v1::{CreditLineOpened, Event, EventType, event::Payload},
    notification::v1::{
        Channel, ChannelPreference, GetPreferencesRequest, ListNotificationsRequest, MessageClass,
        Notification, NotificationStatus, Preferences, QuietHours, RawContent, SendRequest,
        SetPreferencesRequest, SubscribeRequest, SuppressionReason, TemplateContent,
        send_request::Content, subscribe_response::Item,
    },
};
use prost::Message;
use tokio_stream::StreamExt;
use tonic::{Code, Streaming};

/// Bounded waits: generous for a loaded CI machine; a passing test returns as soon as it holds.
const WAIT: Duration = Duration::from_secs(10);

fn raw(
    request_id: &str,
    customer_id: &str,
    class: MessageClass,
    channels: &[Channel],
) -> SendRequest {
    SendRequest {
        request_id: request_id.into(),
        customer_id: customer_id.into(),
        message_class: class as i32,
        channels: channels.iter().map(|&c| c as i32).collect(),
        content: Some(Content::Raw(RawContent {
            title: format!("title {request_id}"),
            body: "body".into(),
        })),
        ..SendRequest::default()
    }
}

async fn send(stack: &Stack, request: SendRequest) -> Vec<Notification> {
    stack
        .client()
        .await
        .send(testing::with_token(request, &operator()))
        .await
        .expect("sent")
        .into_inner()
        .notifications
}

async fn set_preferences(
    stack: &Stack,
    customer_id: &str,
    preferences: Preferences,
) -> Preferences {
    stack
        .client()
        .await
        .set_preferences(testing::with_token(
            SetPreferencesRequest {
                request_id: format!("prefs-{}", uuid::Uuid::new_v4().simple()),
                preferences: Some(Preferences {
                    customer_id: customer_id.into(),
                    ..preferences
                }),
            },
            &customer(customer_id),
        ))
        .await
        .expect("preferences set")
        .into_inner()
        .preferences
        .expect("preferences")
}

fn channel(channel: Channel, enabled: bool, marketing_enabled: bool) -> ChannelPreference {
    ChannelPreference {
        channel: channel as i32,
        enabled,
        marketing_enabled,
    }
}

#[tokio::test]
async fn opt_outs_hold_for_marketing_and_service_and_never_for_regulatory() {
    let stack = Stack::start(vec![], &[]).await;
    let customer_id = stack.create_customer("en").await;

    // Defaults before anything is set: account's locale, every channel on.
    let defaults = stack
        .client()
        .await
        .get_preferences(testing::with_token(
            GetPreferencesRequest {
                customer_id: customer_id.clone(),
            },
            &customer(&customer_id),
        ))
        .await
        .expect("defaults")
        .into_inner()
        .preferences
        .expect("preferences");
    assert_eq!(defaults.locale, "en");
    assert!(
        defaults
            .channels
            .iter()
            .all(|c| c.enabled && !c.marketing_enabled)
    );
    assert_eq!(
        defaults
            .quiet_hours
            .as_ref()
            .map(|q| (q.start_minute, q.end_minute)),
        Some((1320, 480))
    );
    assert!(defaults.update_time.is_none());

    set_preferences(
        &stack,
        &customer_id,
        Preferences {
            channels: vec![
                channel(Channel::Push, false, true),
                channel(Channel::Sms, false, false),
            ],
            ..Preferences::default()
        },
    )
    .await;

    let marketing = send(
        &stack,
        raw(
            "m1",
            &customer_id,
            MessageClass::Marketing,
            &[Channel::Push],
        ),
    )
    .await;
    assert_eq!(marketing[0].status, NotificationStatus::Suppressed as i32);
    assert_eq!(
        marketing[0].suppression_reason,
        SuppressionReason::ChannelDisabled as i32
    );
    let no_consent = send(
        &stack,
        raw(
            "m2",
            &customer_id,
            MessageClass::Marketing,
            &[Channel::InApp],
        ),
    )
    .await;
    assert_eq!(
        no_consent[0].suppression_reason,
        SuppressionReason::MarketingNotAllowed as i32
    );
    let service_notice = send(
        &stack,
        raw("s1", &customer_id, MessageClass::Service, &[Channel::Sms]),
    )
    .await;
    assert_eq!(
        service_notice[0].suppression_reason,
        SuppressionReason::ChannelDisabled as i32
    );

    // Regulatory: the SMS opt-out is ignored; it is delivered through the provider.
    let regulatory = send(
        &stack,
        raw(
            "r1",
            &customer_id,
            MessageClass::Regulatory,
            &[Channel::Sms],
        ),
    )
    .await;
    assert_eq!(regulatory[0].status, NotificationStatus::Pending as i32);
    let mut client = stack.client().await;
    common::wait_for_status(
        &mut client,
        &regulatory[0].notification_id,
        NotificationStatus::Sent,
        WAIT,
    )
    .await;
    assert_eq!(stack.provider.accepted(), 1);
    stack.stop().await;
}

#[tokio::test]
async fn quiet_hours_delay_marketing_until_they_end_and_nothing_else() {
    let stack = Stack::start(vec![], &[]).await;
    let customer_id = stack.create_customer("en").await;
    // A window (in UTC) from a minute ago to two minutes from now.
    let now_minute = (Utc::now().hour() * 60 + Utc::now().minute()) as i32;
    let start = (now_minute + 1439) % 1440;
    let end = (now_minute + 2) % 1440;
    let stored = set_preferences(
        &stack,
        &customer_id,
        Preferences {
            locale: "zh-CN".into(),
            channels: vec![channel(Channel::InApp, true, true)],
            quiet_hours: Some(QuietHours {
                start_minute: start,
                end_minute: end,
                time_zone: "UTC".into(),
            }),
            ..Preferences::default()
        },
    )
    .await;
    assert_eq!(stored.locale, "zh-CN");
    assert!(stored.update_time.is_some());

    let marketing = send(
        &stack,
        raw(
            "q1",
            &customer_id,
            MessageClass::Marketing,
            &[Channel::InApp],
        ),
    )
    .await;
    assert_eq!(marketing[0].status, NotificationStatus::Pending as i32);
    assert_eq!(marketing[0].locale, "zh-CN", "the preferences' locale");
    let due = marketing[0]
        .next_attempt_time
        .as_ref()
        .expect("held")
        .seconds;
    let wanted = Utc::now()
        .date_naive()
        .and_hms_opt((end / 60) as u32, (end % 60) as u32, 0)
        .expect("time")
        .and_utc();
    let wanted = if wanted < Utc::now() {
        wanted + chrono::Duration::days(1)
    } else {
        wanted
    };
    assert_eq!(due, wanted.timestamp(), "held until the window ends");

    let service_notice = send(
        &stack,
        raw("q2", &customer_id, MessageClass::Service, &[Channel::InApp]),
    )
    .await;
    assert_eq!(
        service_notice[0].status,
        NotificationStatus::Sent as i32,
        "service ignores quiet hours"
    );
    stack.stop().await;
}

async fn next_notification(
    stream: &mut Streaming<microloan_proto::notification::v1::SubscribeResponse>,
) -> Notification {
    loop {
        let item = tokio::time::timeout(WAIT, stream.next())
            .await
            .expect("an item in time")
            .expect("stream open")
            .expect("item");
        match item.item {
            Some(Item::Notification(notification)) => return notification,
            Some(Item::Heartbeat(_)) => continue,
            None => panic!("empty item"),
        }
    }
}

#[tokio::test]
async fn subscribe_streams_new_notices_and_resumes_after_a_reconnect_without_a_gap() {
    let stack = Stack::start(vec![], &[("NOTIFICATION_SUBSCRIBE_HEARTBEAT_MS", "300")]).await;
    let customer_id = stack.create_customer("en").await;
    let token = customer(&customer_id);
    let mut client = stack.client().await;
    let subscribe = |resume: &str| {
        testing::with_token(
            SubscribeRequest {
                customer_id: customer_id.clone(),
                resume_after_id: resume.into(),
            },
            &token,
        )
    };
    let mut stream = client
        .subscribe(subscribe(""))
        .await
        .expect("subscribed")
        .into_inner();
    // Idle: a heartbeat comes first.
    let first = tokio::time::timeout(WAIT, stream.next())
        .await
        .expect("in time")
        .expect("open")
        .expect("item");
    assert!(matches!(first.item, Some(Item::Heartbeat(_))));

    let n1 = send(
        &stack,
        raw(
            "live-1",
            &customer_id,
            MessageClass::Service,
            &[Channel::InApp],
        ),
    )
    .await;
    let got = next_notification(&mut stream).await;
    assert_eq!(got.notification_id, n1[0].notification_id);
    assert_eq!(got.attempts.len(), 1, "stored: one DELIVERED attempt");
    drop(stream);

    // Disconnected while two more arrive.
    let n2 = send(
        &stack,
        raw(
            "gap-2",
            &customer_id,
            MessageClass::Service,
            &[Channel::InApp],
        ),
    )
    .await;
    let n3 = send(
        &stack,
        raw(
            "gap-3",
            &customer_id,
            MessageClass::Service,
            &[Channel::InApp],
        ),
    )
    .await;
    let mut stream = client
        .subscribe(subscribe(&n1[0].notification_id))
        .await
        .expect("resumed")
        .into_inner();
    assert_eq!(
        next_notification(&mut stream).await.notification_id,
        n2[0].notification_id
    );
    assert_eq!(
        next_notification(&mut stream).await.notification_id,
        n3[0].notification_id
    );
    let n4 = send(
        &stack,
        raw(
            "live-4",
            &customer_id,
            MessageClass::Service,
            &[Channel::InApp],
        ),
    )
    .await;
    assert_eq!(
        next_notification(&mut stream).await.notification_id,
        n4[0].notification_id
    );

    // Another customer's notice, or an unknown one, is not a resume point.
    let status = client
        .subscribe(subscribe(&uuid::Uuid::now_v7().to_string()))
        .await
        .expect_err("unknown resume point");
    assert_eq!(status.code(), Code::NotFound);
    drop(stream);
    stack.stop().await;
}

fn money(minor_units: i64) -> Option<Money> {
    Some(Money {
        currency_code: "CNY".into(),
        minor_units,
    })
}

#[tokio::test]
async fn one_event_delivered_twice_on_the_stream_makes_one_notification_per_channel() {
    let stack = Stack::start(vec![], &[("NOTIFICATION_LOG_CHANNEL_ENABLED", "true")]).await;
    let customer_id = stack.create_customer("en").await;
    let stream_key = format!("{}{{events}}", stack.redis_prefix);
    let redis = redis::Client::open(testing::redis_url()).expect("redis");
    let mut redis = redis
        .get_multiplexed_async_connection()
        .await
        .expect("connect");
    // The group may not exist yet: create it at the start so nothing is skipped.
    let _: Result<(), redis::RedisError> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream_key)
        .arg("notification")
        .arg("0")
        .arg("MKSTREAM")
        .query_async(&mut redis)
        .await;
    let event = Event {
        event_id: uuid::Uuid::now_v7().to_string(),
        event_type: EventType::CreditLineOpened as i32,
        occurred_at: None,
        customer_id: customer_id.clone(),
        producer: "account".into(),
        payload: Some(Payload::CreditLineOpened(CreditLineOpened {
            credit_line_id: uuid::Uuid::now_v7().to_string(),
            limit: money(2_000_000),
            daily_rate: "0.0005".into(),
            apr: "0.1825".into(),
            ..CreditLineOpened::default()
        })),
        ..Event::default()
    };
    for _ in 0..2 {
        let _: String = redis::cmd("XADD")
            .arg(&stream_key)
            .arg("*")
            .arg("event")
            .arg(event.encode_to_vec())
            .arg("event_id")
            .arg(&event.event_id)
            .query_async(&mut redis)
            .await
            .expect("xadd");
    }
    let mut client = stack.client().await;
    let list = || ListNotificationsRequest {
        customer_id: customer_id.clone(),
        ..ListNotificationsRequest::default()
    };
    let notices = eventually("the event's notices", WAIT, || {
        let mut client = client.clone();
        let request = list();
        async move {
            let listed = client
                .list_notifications(testing::with_token(request, &service()))
                .await
                .expect("list")
                .into_inner()
                .notifications;
            (listed.len() >= 3).then_some(listed)
        }
    })
    .await;
    // Let a second copy, if any, land before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listed = client
        .list_notifications(testing::with_token(list(), &service()))
        .await
        .expect("list")
        .into_inner()
        .notifications;
    assert_eq!(
        listed.len(),
        3,
        "SERVICE: in-app, push and log, once each: {notices:?}"
    );
    let mut channels: Vec<i32> = listed.iter().map(|n| n.channel).collect();
    channels.sort_unstable();
    assert_eq!(
        channels,
        [
            Channel::InApp as i32,
            Channel::Push as i32,
            Channel::Log as i32
        ]
    );
    for notice in &listed {
        assert_eq!(notice.event_id, event.event_id);
        assert_eq!(notice.template_key, "CREDIT_LINE_OPENED");
        assert_eq!(notice.message_class, MessageClass::Service as i32);
        assert!(
            notice.body.contains("¥20,000.00") && notice.body.contains("18.25%"),
            "{}",
            notice.body
        );
    }

    // A Send naming the same event returns the existing notice.
    let again = send(
        &stack,
        SendRequest {
            request_id: "same-event".into(),
            customer_id: customer_id.clone(),
            message_class: MessageClass::Service as i32,
            channels: vec![Channel::InApp as i32],
            event_id: event.event_id.clone(),
            content: Some(Content::Template(TemplateContent {
                template_key: "CUSTOMER_CREATED".into(),
                params: Default::default(),
            })),
            ..SendRequest::default()
        },
    )
    .await;
    let in_app = listed
        .iter()
        .find(|n| n.channel == Channel::InApp as i32)
        .expect("in-app");
    assert_eq!(again[0].notification_id, in_app.notification_id);

    // Customers see their IN_APP notices only.
    let own = client
        .list_notifications(testing::with_token(list(), &customer(&customer_id)))
        .await
        .expect("own list")
        .into_inner()
        .notifications;
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].channel, Channel::InApp as i32);
    stack.stop().await;
}

#[tokio::test]
async fn send_is_idempotent_on_request_id_and_checks_its_customer() {
    let stack = Stack::start(vec![], &[]).await;
    let customer_id = stack.create_customer("en").await;
    let first = send(
        &stack,
        raw(
            "once",
            &customer_id,
            MessageClass::Service,
            &[Channel::InApp],
        ),
    )
    .await;
    let replay = send(
        &stack,
        raw(
            "once",
            &customer_id,
            MessageClass::Service,
            &[Channel::InApp],
        ),
    )
    .await;
    assert_eq!(first[0].notification_id, replay[0].notification_id);
    let mut client = stack.client().await;
    let reused = client
        .send(testing::with_token(
            raw(
                "once",
                &customer_id,
                MessageClass::Service,
                &[Channel::Push],
            ),
            &operator(),
        ))
        .await
        .expect_err("another body");
    assert_eq!(reused.code(), Code::AlreadyExists);
    let unknown = client
        .send(testing::with_token(
            raw(
                "ghost",
                &uuid::Uuid::now_v7().to_string(),
                MessageClass::Service,
                &[],
            ),
            &operator(),
        ))
        .await
        .expect_err("no such customer");
    assert_eq!(unknown.code(), Code::NotFound);
    // Default channels for SERVICE: in-app and push.
    let defaults = send(
        &stack,
        raw("defaults", &customer_id, MessageClass::Service, &[]),
    )
    .await;
    let channels: Vec<i32> = defaults.iter().map(|n| n.channel).collect();
    assert_eq!(channels, [Channel::InApp as i32, Channel::Push as i32]);
    stack.stop().await;
}

#[tokio::test]
async fn lists_page_newest_first_and_customers_reach_only_their_own_in_app_notices() {
    let stack = Stack::start(vec![], &[]).await;
    let customer_id = stack.create_customer("en").await;
    let mut ids = Vec::new();
    for index in 0..5 {
        let sent = send(
            &stack,
            raw(
                &format!("page-{index}"),
                &customer_id,
                MessageClass::Service,
                &[Channel::InApp],
            ),
        )
        .await;
        ids.push(sent[0].notification_id.clone());
    }
    let push = send(
        &stack,
        raw(
            "page-push",
            &customer_id,
            MessageClass::Regulatory,
            &[Channel::Push],
        ),
    )
    .await;
    let mut client = stack.client().await;
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .list_notifications(testing::with_token(
                ListNotificationsRequest {
                    customer_id: customer_id.clone(),
                    channels: vec![Channel::InApp as i32],
                    page_size: 2,
                    page_token: page_token.clone(),
                    ..ListNotificationsRequest::default()
                },
                &service(),
            ))
            .await
            .expect("page")
            .into_inner();
        assert!(page.notifications.len() <= 2);
        seen.extend(page.notifications.into_iter().map(|n| n.notification_id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");

    // Own IN_APP notice: readable; own PUSH notice: not found; another's: not the owner.
    let own = customer(&customer_id);
    let get = |id: &str, token: &str| {
        testing::with_token(
            microloan_proto::notification::v1::GetNotificationRequest {
                notification_id: id.to_owned(),
            },
            token,
        )
    };
    client
        .get_notification(get(&ids[0], &own))
        .await
        .expect("own in-app");
    let hidden = client
        .get_notification(get(&push[0].notification_id, &own))
        .await
        .expect_err("push is not the customer's to read");
    assert_eq!(hidden.code(), Code::NotFound);
    let other = customer(&uuid::Uuid::now_v7().to_string());
    let refused = client
        .get_notification(get(&ids[0], &other))
        .await
        .expect_err("another customer");
    assert_eq!(refused.code(), Code::PermissionDenied);
    let bad = client
        .list_notifications(testing::with_token(
            ListNotificationsRequest {
                customer_id: customer_id.clone(),
                page_token: "not-a-token".into(),
                ..ListNotificationsRequest::default()
            },
            &service(),
        ))
        .await
        .expect_err("bad token");
    assert_eq!(bad.code(), Code::InvalidArgument);
    stack.stop().await;
}
