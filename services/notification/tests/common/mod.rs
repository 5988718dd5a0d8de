//! What the notification integration tests share: a real account server (for
//! GetContactPoint and locales), a real local HTTP server playing the SMS/push provider
//! (it verifies every signature and answers from a script), and the notification
//! server pointed at both, with small timeouts and back-off.
#![allow(dead_code, reason = "each test binary uses part of it")]

use std::{
    collections::VecDeque,
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use account::Account;
use axum::{
    Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
};
use hmac::{Hmac, Mac};
use microloan_platform::{
    auth::Role,
    testing::{self, TestApp},
};
use microloan_proto::{
    account::v1::{CreateCustomerRequest, account_service_client::AccountServiceClient},
    common::v1::Money,
    notification::v1::{
        GetNotificationRequest, Notification as ProtoNotification, NotificationStatus,
        notification_service_client::NotificationServiceClient,
    },
};
use notification::Notification;
use sha2::Sha256;
use tonic::transport::Channel;

/// The provider's shared secret in the tests.
pub const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789";

/// How the provider answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    Status(u16),
    /// 429 (or 503) with a `Retry-After` header.
    RetryAfter(u16, &'static str),
    /// Never answers (holds the request open).
    Hang,
}

/// One request the provider received.
#[derive(Debug, Clone)]
pub struct Received {
    pub path: String,
    pub at: Instant,
    pub body: serde_json::Value,
    pub signature_ok: bool,
    pub idempotency_key: String,
    /// Answered 2xx.
    pub accepted: bool,
}

#[derive(Debug, Default)]
struct ProviderState {
    script: VecDeque<Reply>,
    received: Vec<Received>,
}

/// A real HTTP server on 127.0.0.1:0 playing the provider.
#[derive(Debug, Clone)]
pub struct Provider {
    pub addr: SocketAddr,
    state: Arc<Mutex<ProviderState>>,
}

/// Checks `v1=<hex>` against HMAC-SHA256(secret, timestamp + "." + body), in constant
/// time, as a provider would.
pub fn signature_is_valid(secret: &str, timestamp: &str, body: &[u8], header: &str) -> bool {
    let Some(hex) = header.strip_prefix("v1=") else {
        return false;
    };
    if hex.len() % 2 != 0 {
        return false;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect();
    let Some(bytes) = bytes else { return false };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&bytes).is_ok()
}

async fn receive(
    State(provider): State<Provider>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let signature_ok = signature_is_valid(
        WEBHOOK_SECRET,
        &header("x-microloan-timestamp"),
        &body,
        &header("x-microloan-signature"),
    );
    let reply = {
        let mut state = provider.state.lock().expect("state");
        state.script.pop_front().unwrap_or(Reply::Status(200))
    };
    let status = match &reply {
        Reply::Status(code) | Reply::RetryAfter(code, _) => *code,
        Reply::Hang => 0,
    };
    let accepted = (200..300).contains(&status) && signature_ok;
    provider
        .state
        .lock()
        .expect("state")
        .received
        .push(Received {
            path: uri.path().to_owned(),
            at: Instant::now(),
            body: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
            signature_ok,
            idempotency_key: header("idempotency-key"),
            accepted,
        });
    match reply {
        Reply::Hang => std::future::pending().await,
        _ if !signature_ok => (StatusCode::UNAUTHORIZED, "bad signature").into_response(),
        Reply::Status(code) => {
            let code = StatusCode::from_u16(code).expect("status");
            let body = if code.is_success() {
                format!(
                    "{{\"message_id\":\"msg-{}\"}}",
                    uuid::Uuid::new_v4().simple()
                )
            } else {
                "{}".to_owned()
            };
            (code, body).into_response()
        }
        Reply::RetryAfter(code, after) => (
            StatusCode::from_u16(code).expect("status"),
            [("retry-after", after)],
            "{}",
        )
            .into_response(),
    }
}

impl Provider {
    pub async fn start(script: Vec<Reply>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let provider = Self {
            addr: listener.local_addr().expect("addr"),
            state: Arc::new(Mutex::new(ProviderState {
                script: script.into(),
                received: Vec::new(),
            })),
        };
        let router = Router::new()
            .route("/sms", post(receive))
            .route("/push", post(receive))
            .with_state(provider.clone());
        tokio::spawn(async move { axum::serve(listener, router).await });
        provider
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().expect("state").received.clone()
    }

    pub fn accepted(&self) -> usize {
        self.received().iter().filter(|r| r.accepted).count()
    }
}

/// A valid national id (born 1990-03-07), distinct per serial (< 1000).
fn national_id(serial: u32) -> String {
    microloan_domain::national_id::with_check_character(&format!("11010519900307{serial:03}"))
        .expect("17 digits")
}

/// Notification, account and the provider, wired together.
#[derive(Debug)]
pub struct Stack {
    pub account: TestApp,
    pub notification: TestApp,
    pub provider: Provider,
    pub redis_prefix: String,
    /// The notification server's overrides (to restart it on the same database).
    pub overrides: Vec<(String, String)>,
}

/// The overrides that point notification at `account` and `provider`, with small
/// timeouts, back-off and lease so every test stays within seconds.
pub fn overrides(
    account: &TestApp,
    provider: &Provider,
    redis_prefix: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = [
        ("ACCOUNT_URL", account.url()),
        (
            "NOTIFICATION_SMS_WEBHOOK_URL",
            format!("http://{}/sms", provider.addr),
        ),
        (
            "NOTIFICATION_PUSH_WEBHOOK_URL",
            format!("http://{}/push", provider.addr),
        ),
        ("NOTIFICATION_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
        ("NOTIFICATION_BACKOFF_BASE_MS", "50".to_owned()),
        ("NOTIFICATION_BACKOFF_MAX_MS", "200".to_owned()),
        ("NOTIFICATION_HTTP_TIMEOUT_MS", "300".to_owned()),
        ("NOTIFICATION_CLAIM_LEASE_MS", "1000".to_owned()),
        ("NOTIFICATION_POLL_INTERVAL_MS", "50".to_owned()),
        ("NOTIFICATION_ATTEMPTS_MAX", "3".to_owned()),
        ("NOTIFICATION_SUBSCRIBE_POLL_MS", "100".to_owned()),
        ("NOTIFICATION_SUBSCRIBE_HEARTBEAT_MS", "2000".to_owned()),
        ("EVENTS_CONSUMER_BLOCK_MS", "100".to_owned()),
        ("REDIS_KEY_PREFIX", redis_prefix.to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect();
    for (key, value) in extra {
        vars.retain(|(known, _)| known != key);
        vars.push(((*key).to_owned(), (*value).to_owned()));
    }
    vars
}

pub async fn spawn_notification(overrides: &[(String, String)]) -> TestApp {
    let refs: Vec<(&str, &str)> = overrides
        .iter()
        .map(|(key, value)| (key.as_str(), value.as_str()))
        .collect();
    testing::spawn::<Notification>(&refs).await
}

impl Stack {
    pub async fn start(script: Vec<Reply>, extra: &[(&str, &str)]) -> Self {
        let provider = Provider::start(script).await;
        let account = testing::spawn::<Account>(&[]).await;
        let redis_prefix = format!("test:{}:", uuid::Uuid::new_v4().simple());
        let overrides = overrides(&account, &provider, &redis_prefix, extra);
        let notification = spawn_notification(&overrides).await;
        Self {
            account,
            notification,
            provider,
            redis_prefix,
            overrides,
        }
    }

    /// Creates a customer through account's CreateCustomer (phone +8613812345678).
    pub async fn create_customer(&self, locale: &str) -> String {
        let mut account = AccountServiceClient::new(self.account.channel().await);
        let serial = rand_serial();
        account
            .create_customer(testing::with_token(
                CreateCustomerRequest {
                    request_id: format!("create-{serial}"),
                    name: "王小明".into(),
                    national_id: national_id(serial),
                    phone: "+8613812345678".into(),
                    annual_income: Some(Money {
                        currency_code: "CNY".into(),
                        minor_units: 12_000_000,
                    }),
                    locale: locale.into(),
                    device_id: String::new(),
                },
                &testing::token(Role::Service, None),
            ))
            .await
            .expect("customer created")
            .into_inner()
            .customer
            .expect("customer")
            .customer_id
    }

    pub async fn client(&self) -> NotificationServiceClient<Channel> {
        NotificationServiceClient::new(self.notification.channel().await)
    }

    pub async fn stop(self) {
        self.notification.stop().await.expect("notification stops");
        self.account.stop().await.expect("account stops");
    }
}

/// Distinct national ids within one test process.
fn rand_serial() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1000
}

pub fn service() -> String {
    testing::token(Role::Service, None)
}

pub fn operator() -> String {
    testing::token(Role::Operator, None)
}

pub fn customer(customer_id: &str) -> String {
    testing::token(Role::Customer, Some(customer_id))
}

/// Polls `check` every 25 ms until it yields, at most `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Waits until the notification reaches `status`; returns it.
pub async fn wait_for_status(
    client: &mut NotificationServiceClient<Channel>,
    notification_id: &str,
    status: NotificationStatus,
    within: Duration,
) -> ProtoNotification {
    let what = format!("{notification_id} to be {}", status.as_str_name());
    eventually(&what, within, || {
        let mut client = client.clone();
        async move {
            let found = client
                .get_notification(testing::with_token(
                    GetNotificationRequest {
                        notification_id: notification_id.to_owned(),
                    },
                    &service(),
                ))
                .await
                .expect("get notification")
                .into_inner()
                .notification
                .expect("notification");
            (found.status == status as i32).then_some(found)
        }
    })
    .await
}
