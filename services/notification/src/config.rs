//! The notification service's configuration: the shared settings, account's URL, the
//! provider webhooks and the delivery knobs (docs/notification.md lists each with its
//! default). A bad value stops the process with exit 64, naming the variable.

use std::time::Duration;

use microloan_events::EventsConfig;
use microloan_platform::config::{CommonConfig, ConfigError, Env, Secret, ServiceIdentity};

pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "notification",
    default_grpc_port: 50054,
    default_admin_port: 9104,
};

/// One provider webhook (SMS or push).
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    /// Signs every request (HMAC-SHA256 over `timestamp + "." + body`).
    pub secret: Secret,
}

/// How notifications are delivered.
#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    /// `NOTIFICATION_ATTEMPTS_MAX` (default 6, 1..=50): attempts before DEAD_LETTERED.
    pub attempts_max: u32,
    /// `NOTIFICATION_BACKOFF_BASE_MS` (default 1000): the first retry's delay; doubles
    /// per attempt, with jitter.
    pub backoff_base: Duration,
    /// `NOTIFICATION_BACKOFF_MAX_MS` (default 300000): ceiling of the back-off.
    pub backoff_max: Duration,
    /// `NOTIFICATION_RETRY_AFTER_MAX_SECONDS` (default 3600): the longest provider
    /// `Retry-After` honoured as given; longer ones are capped.
    pub retry_after_max: Duration,
    /// `NOTIFICATION_HTTP_TIMEOUT_MS` (default 5000): a provider call's whole budget.
    pub http_timeout: Duration,
    /// `NOTIFICATION_CHANNEL_CONCURRENCY` (default 16, 1..=1024): deliveries in flight
    /// per channel, so one slow provider does not hold back the others.
    pub channel_concurrency: usize,
    /// `NOTIFICATION_POLL_INTERVAL_MS` (default 500): how often idle workers look for
    /// due notifications (a new notification wakes its worker at once).
    pub poll_interval: Duration,
    /// `NOTIFICATION_CLAIM_LEASE_MS` (default 60000): how long a claimed notification
    /// is reserved for its worker; after it, another worker (after a restart, another
    /// replica) takes it. Must exceed the HTTP timeout.
    pub claim_lease: Duration,
    /// `NOTIFICATION_SMS_WEBHOOK_URL` / `_SECRET`, falling back to
    /// `NOTIFICATION_WEBHOOK_URL` / `NOTIFICATION_WEBHOOK_SECRET`. Unset: SMS fails.
    pub sms: Option<Webhook>,
    /// `NOTIFICATION_PUSH_WEBHOOK_URL` / `_SECRET`, with the same fallback.
    pub push: Option<Webhook>,
    /// `NOTIFICATION_LOG_CHANNEL_ENABLED` (default false): the LOG channel, for
    /// development; when on, it is added to every class's default channels.
    pub log_channel_enabled: bool,
}

/// The in-app stream.
#[derive(Debug, Clone)]
pub struct StreamConfig {
    /// `NOTIFICATION_SUBSCRIBE_HEARTBEAT_MS` (default 30000).
    pub heartbeat: Duration,
    /// `NOTIFICATION_SUBSCRIBE_POLL_MS` (default 1000): how often an open stream looks
    /// for notices delivered by other replicas (this replica's wake it at once).
    pub poll_interval: Duration,
    /// `NOTIFICATION_SUBSCRIBE_STREAMS_PER_CUSTOMER_MAX` (default 5): open streams per
    /// customer on one replica.
    pub streams_per_customer_max: usize,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `EVENTS_*`: the outbox relay and consumer groups (docs/events.md).
    pub events: EventsConfig,
    /// `ACCOUNT_URL`: the account service (locales, customers, contact points).
    pub account_url: String,
    pub delivery: DeliveryConfig,
    pub stream: StreamConfig,
    /// `NOTIFICATION_RETENTION_DAYS` (default 730, at least `EVENTS_PROCESSED_RETENTION_DAYS`,
    /// at most 3650): notifications in a final state older than this are deleted with
    /// their attempts (docs/notification.md "Retention").
    pub retention: Duration,
}

impl Config {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env, IDENTITY)?;
        let events = EventsConfig::from_env(env, &common)?;
        // The (event_id, channel) uniqueness is the dedupe of last resort once the
        // consumer's processed-event record has expired: it must outlive that record.
        let processed_days = events.processed_retention.as_secs().div_ceil(86_400);
        let retention_days = env.bounded("NOTIFICATION_RETENTION_DAYS", 730, 1, 3_650)?;
        if retention_days < processed_days {
            return Err(ConfigError {
                variable: "NOTIFICATION_RETENTION_DAYS",
                reason: format!(
                    "must be at least EVENTS_PROCESSED_RETENTION_DAYS ({processed_days})"
                ),
            });
        }
        Ok(Self {
            events,
            common,
            account_url: env.peer_url("ACCOUNT_URL", "http://127.0.0.1:50051")?,
            delivery: delivery(env)?,
            stream: stream(env)?,
            retention: Duration::from_secs(retention_days * 86_400),
        })
    }
}

fn millis(
    env: &Env<'_>,
    variable: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<Duration, ConfigError> {
    env.bounded(variable, default, min, max)
        .map(Duration::from_millis)
}

fn delivery(env: &Env<'_>) -> Result<DeliveryConfig, ConfigError> {
    let http_timeout = millis(env, "NOTIFICATION_HTTP_TIMEOUT_MS", 5_000, 10, 120_000)?;
    let claim_lease = millis(env, "NOTIFICATION_CLAIM_LEASE_MS", 60_000, 100, 3_600_000)?;
    if claim_lease <= http_timeout {
        return Err(ConfigError {
            variable: "NOTIFICATION_CLAIM_LEASE_MS",
            reason: "must exceed NOTIFICATION_HTTP_TIMEOUT_MS".into(),
        });
    }
    let backoff_base = millis(env, "NOTIFICATION_BACKOFF_BASE_MS", 1_000, 1, 3_600_000)?;
    let backoff_max = millis(env, "NOTIFICATION_BACKOFF_MAX_MS", 300_000, 1, 86_400_000)?;
    if backoff_max < backoff_base {
        return Err(ConfigError {
            variable: "NOTIFICATION_BACKOFF_MAX_MS",
            reason: "must be at least NOTIFICATION_BACKOFF_BASE_MS".into(),
        });
    }
    Ok(DeliveryConfig {
        attempts_max: env.bounded("NOTIFICATION_ATTEMPTS_MAX", 6, 1, 50)? as u32,
        backoff_base,
        backoff_max,
        retry_after_max: Duration::from_secs(env.bounded(
            "NOTIFICATION_RETRY_AFTER_MAX_SECONDS",
            3_600,
            1,
            86_400,
        )?),
        http_timeout,
        channel_concurrency: env.bounded("NOTIFICATION_CHANNEL_CONCURRENCY", 16, 1, 1_024)?
            as usize,
        poll_interval: millis(env, "NOTIFICATION_POLL_INTERVAL_MS", 500, 10, 60_000)?,
        claim_lease,
        sms: webhook(
            env,
            "NOTIFICATION_SMS_WEBHOOK_URL",
            "NOTIFICATION_SMS_WEBHOOK_SECRET",
        )?,
        push: webhook(
            env,
            "NOTIFICATION_PUSH_WEBHOOK_URL",
            "NOTIFICATION_PUSH_WEBHOOK_SECRET",
        )?,
        log_channel_enabled: env.or("NOTIFICATION_LOG_CHANNEL_ENABLED", false)?,
    })
}

/// A channel's webhook, or the shared one; the secret is required with a URL.
fn webhook(
    env: &Env<'_>,
    url_variable: &'static str,
    secret_variable: &'static str,
) -> Result<Option<Webhook>, ConfigError> {
    let (url_variable, secret_variable) = match env.optional::<String>(url_variable)? {
        Some(_) => (url_variable, secret_variable),
        None => ("NOTIFICATION_WEBHOOK_URL", "NOTIFICATION_WEBHOOK_SECRET"),
    };
    if env.optional::<String>(url_variable)?.is_none() {
        return Ok(None);
    }
    let url = env.peer_url(url_variable, "")?;
    let secret: Secret = match env.optional(secret_variable)? {
        Some(secret) => secret,
        // A channel URL without its own secret uses the shared one.
        None => env
            .required("NOTIFICATION_WEBHOOK_SECRET")
            .map_err(|_| ConfigError {
                variable: secret_variable,
                reason: format!("is not set (required with {url_variable})"),
            })?,
    };
    if secret.expose().len() < 16 {
        return Err(ConfigError {
            variable: secret_variable,
            reason: "must be at least 16 characters".into(),
        });
    }
    Ok(Some(Webhook { url, secret }))
}

fn stream(env: &Env<'_>) -> Result<StreamConfig, ConfigError> {
    Ok(StreamConfig {
        heartbeat: millis(
            env,
            "NOTIFICATION_SUBSCRIBE_HEARTBEAT_MS",
            30_000,
            10,
            600_000,
        )?,
        poll_interval: millis(env, "NOTIFICATION_SUBSCRIBE_POLL_MS", 1_000, 10, 60_000)?,
        streams_per_customer_max: env.bounded(
            "NOTIFICATION_SUBSCRIBE_STREAMS_PER_CUSTOMER_MAX",
            5,
            1,
            100,
        )? as usize,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut vars: HashMap<String, String> = [
            (
                "DATABASE_URL",
                "postgres://postgres@127.0.0.1:5432/notification",
            ),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in pairs {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        Config::from_env(&Env::from_fn(|name| vars.get(name).cloned()))
    }

    #[test]
    fn defaults_hold_without_webhooks() {
        let config = load(&[]).expect("valid");
        assert_eq!(config.delivery.attempts_max, 6);
        assert!(config.delivery.sms.is_none() && config.delivery.push.is_none());
        assert_eq!(config.stream.heartbeat, Duration::from_secs(30));
        assert_eq!(config.retention, Duration::from_secs(730 * 86_400));
    }

    #[test]
    fn channel_webhooks_fall_back_to_the_shared_one() {
        let config = load(&[
            ("NOTIFICATION_WEBHOOK_URL", "https://provider.example/v1"),
            ("NOTIFICATION_WEBHOOK_SECRET", "shared-secret-0123456789"),
            ("NOTIFICATION_PUSH_WEBHOOK_URL", "https://push.example/v1"),
            ("NOTIFICATION_PUSH_WEBHOOK_SECRET", "push-secret-0123456789"),
        ])
        .expect("valid");
        let sms = config.delivery.sms.expect("sms");
        let push = config.delivery.push.expect("push");
        assert_eq!(sms.url, "https://provider.example/v1");
        assert_eq!(sms.secret.expose(), "shared-secret-0123456789");
        assert_eq!(push.url, "https://push.example/v1");
        assert_eq!(push.secret.expose(), "push-secret-0123456789");
    }

    #[test]
    fn errors_name_the_variable() {
        let cases = [
            (
                vec![("NOTIFICATION_SMS_WEBHOOK_URL", "https://sms.example")],
                "NOTIFICATION_SMS_WEBHOOK_SECRET",
            ),
            (
                vec![
                    ("NOTIFICATION_HTTP_TIMEOUT_MS", "5000"),
                    ("NOTIFICATION_CLAIM_LEASE_MS", "1000"),
                ],
                "NOTIFICATION_CLAIM_LEASE_MS",
            ),
            (
                vec![("NOTIFICATION_ATTEMPTS_MAX", "0")],
                "NOTIFICATION_ATTEMPTS_MAX",
            ),
            (vec![("ACCOUNT_URL", "account:50051")], "ACCOUNT_URL"),
            (
                vec![("NOTIFICATION_RETENTION_DAYS", "0")],
                "NOTIFICATION_RETENTION_DAYS",
            ),
            (
                vec![
                    ("EVENTS_PROCESSED_RETENTION_DAYS", "90"),
                    ("NOTIFICATION_RETENTION_DAYS", "60"),
                ],
                "NOTIFICATION_RETENTION_DAYS",
            ),
        ];
        for (pairs, variable) in cases {
            let err = load(&pairs).expect_err(variable);
            assert_eq!(err.variable, variable);
        }
    }
}
