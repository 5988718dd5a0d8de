//! The events knobs, read from the environment like every other setting (a bad value
//! stops the process with exit 64 naming the variable). Every knob has a default and
//! bounds, so a typo cannot turn a bounded queue or batch into an unbounded one.

use std::time::Duration;

use microloan_platform::config::{CommonConfig, ConfigError, Env};

pub const STREAM_DEFAULT: &str = "events";
pub const STREAM_LENGTH_MAX_DEFAULT: u64 = 1_000_000;
pub const RELAY_BATCH_SIZE_MAX_DEFAULT: u64 = 512;
pub const RELAY_POLL_INTERVAL_MS_DEFAULT: u64 = 1_000;
pub const RELAY_BACKOFF_MAX_MS_DEFAULT: u64 = 5_000;
pub const OUTBOX_RETENTION_HOURS_DEFAULT: u64 = 72;
pub const PROCESSED_RETENTION_DAYS_DEFAULT: u64 = 30;
pub const CONSUMER_WORKERS_DEFAULT: u64 = 4;
pub const CONSUMER_BATCH_SIZE_MAX_DEFAULT: u64 = 128;
pub const CONSUMER_BLOCK_MS_DEFAULT: u64 = 1_000;
pub const CLAIM_IDLE_MS_DEFAULT: u64 = 60_000;
pub const DELIVERIES_MAX_DEFAULT: u64 = 5;

/// How the relay and the consumers of one service process behave.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Producing service, written into every event's `producer`.
    pub producer: String,
    /// The stream key: `REDIS_KEY_PREFIX` + `{` + `EVENTS_STREAM` (default `events`) + `}`.
    /// The braces are a Redis Cluster hash tag shared with the dead-letter stream, so an
    /// operator's replay script may touch both keys atomically (DESIGN §11).
    pub stream: String,
    /// `EVENTS_STREAM_LENGTH_MAX`: `XADD ... MAXLEN ~` bound on the stream (and on the
    /// dead-letter stream). Entries beyond it are trimmed oldest first, read or not:
    /// it must hold what the slowest consumer group may fall behind by.
    pub stream_length_max: u64,
    /// `EVENTS_RELAY_BATCH_SIZE_MAX`: rows one relay transaction claims and publishes.
    pub relay_batch_size_max: usize,
    /// `EVENTS_RELAY_POLL_INTERVAL_MS`: the relay looks for work at least this often
    /// even when no `NOTIFY` arrives (a missed notification, a lost connection).
    pub relay_poll_interval: Duration,
    /// `EVENTS_RELAY_BACKOFF_MAX_MS`: ceiling of the relay's exponential back-off
    /// while Redis or Postgres fails.
    pub relay_backoff_max: Duration,
    /// `EVENTS_OUTBOX_RETENTION_HOURS`: published rows are deleted this long after
    /// publication (0: at the next sweep).
    pub outbox_retention: Duration,
    /// `EVENTS_PROCESSED_RETENTION_DAYS`: how long a consumer remembers an event id.
    /// A copy redelivered or replayed later than this would be applied again.
    pub processed_retention: Duration,
    /// `EVENTS_CONSUMER_NAME`: this process in its consumer groups; default `HOSTNAME`
    /// (the pod name), else `<service>-<random>`.
    pub consumer_name: String,
    /// `EVENTS_CONSUMER_WORKERS`: events handled at once per group; one customer's
    /// events always go to the same worker, so they are handled in stream order.
    pub consumer_workers: usize,
    /// `EVENTS_CONSUMER_BATCH_SIZE_MAX`: `XREADGROUP ... COUNT`, and the depth of each
    /// worker's queue.
    pub consumer_batch_size_max: usize,
    /// `EVENTS_CONSUMER_BLOCK_MS`: `XREADGROUP ... BLOCK`, how long one read waits.
    pub consumer_block: Duration,
    /// `EVENTS_CLAIM_IDLE_MS`: an entry delivered but not acknowledged for this long
    /// is taken over (`XAUTOCLAIM`) by another consumer of the group: its consumer is
    /// presumed dead. Must exceed the slowest handler's run time.
    pub claim_idle: Duration,
    /// `EVENTS_DELIVERIES_MAX`: attempts at an event before it is dead-lettered.
    pub deliveries_max: u32,
}

impl EventsConfig {
    pub fn from_env(env: &Env<'_>, common: &CommonConfig) -> Result<Self, ConfigError> {
        Self::from_env_for(env, common.identity.name, &common.redis_key_prefix)
    }

    /// [`EventsConfig::from_env`] for a process that is not a service (a tool, the
    /// load generator): `producer` names it, keys start with `redis_key_prefix`.
    pub fn from_env_for(
        env: &Env<'_>,
        producer: &str,
        redis_key_prefix: &str,
    ) -> Result<Self, ConfigError> {
        let stream_name: String = env.or("EVENTS_STREAM", STREAM_DEFAULT.to_owned())?;
        let consumer_name = match env.optional::<String>("EVENTS_CONSUMER_NAME")? {
            Some(name) => name,
            None => env
                .optional::<String>("HOSTNAME")?
                .unwrap_or_else(|| format!("{producer}-{}", uuid::Uuid::new_v4().simple())),
        };
        let millis = |variable, default, min, max| {
            env.bounded(variable, default, min, max)
                .map(Duration::from_millis)
        };
        Ok(Self {
            producer: producer.to_owned(),
            stream: format!("{redis_key_prefix}{{{stream_name}}}"),
            stream_length_max: env.bounded(
                "EVENTS_STREAM_LENGTH_MAX",
                STREAM_LENGTH_MAX_DEFAULT,
                1_000,
                1_000_000_000,
            )?,
            relay_batch_size_max: env.bounded(
                "EVENTS_RELAY_BATCH_SIZE_MAX",
                RELAY_BATCH_SIZE_MAX_DEFAULT,
                1,
                10_000,
            )? as usize,
            relay_poll_interval: millis(
                "EVENTS_RELAY_POLL_INTERVAL_MS",
                RELAY_POLL_INTERVAL_MS_DEFAULT,
                10,
                60_000,
            )?,
            relay_backoff_max: millis(
                "EVENTS_RELAY_BACKOFF_MAX_MS",
                RELAY_BACKOFF_MAX_MS_DEFAULT,
                10,
                300_000,
            )?,
            outbox_retention: Duration::from_secs(
                3_600
                    * env.bounded(
                        "EVENTS_OUTBOX_RETENTION_HOURS",
                        OUTBOX_RETENTION_HOURS_DEFAULT,
                        0,
                        24 * 365,
                    )?,
            ),
            processed_retention: Duration::from_secs(
                86_400
                    * env.bounded(
                        "EVENTS_PROCESSED_RETENTION_DAYS",
                        PROCESSED_RETENTION_DAYS_DEFAULT,
                        1,
                        3_650,
                    )?,
            ),
            consumer_name,
            consumer_workers: env.bounded(
                "EVENTS_CONSUMER_WORKERS",
                CONSUMER_WORKERS_DEFAULT,
                1,
                64,
            )? as usize,
            consumer_batch_size_max: env.bounded(
                "EVENTS_CONSUMER_BATCH_SIZE_MAX",
                CONSUMER_BATCH_SIZE_MAX_DEFAULT,
                1,
                10_000,
            )? as usize,
            // Never 0: for Redis `BLOCK 0` means wait forever, and shutdown would hang.
            consumer_block: millis(
                "EVENTS_CONSUMER_BLOCK_MS",
                CONSUMER_BLOCK_MS_DEFAULT,
                1,
                30_000,
            )?,
            claim_idle: millis(
                "EVENTS_CLAIM_IDLE_MS",
                CLAIM_IDLE_MS_DEFAULT,
                10,
                86_400_000,
            )?,
            deliveries_max: env.bounded("EVENTS_DELIVERIES_MAX", DELIVERIES_MAX_DEFAULT, 1, 100)?
                as u32,
        })
    }

    /// `<stream>:dead`: where events no consumer could handle are kept for an operator.
    pub fn dead_letter_stream(&self) -> String {
        format!("{}:dead", self.stream)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use microloan_platform::config::ServiceIdentity;

    use super::*;

    const IDENTITY: ServiceIdentity = ServiceIdentity {
        name: "ledger",
        default_grpc_port: 50053,
        default_admin_port: 9103,
    };

    fn load(pairs: &[(&str, &str)]) -> Result<EventsConfig, ConfigError> {
        let mut vars: HashMap<String, String> = [
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledger"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("REDIS_KEY_PREFIX", "prod:"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        for (k, v) in pairs {
            vars.insert((*k).to_owned(), (*v).to_owned());
        }
        let env = Env::from_fn(|name| vars.get(name).cloned());
        let common = CommonConfig::from_env(&env, IDENTITY)?;
        EventsConfig::from_env(&env, &common)
    }

    #[test]
    fn the_stream_and_dead_letter_names_carry_the_key_prefix() {
        let config = load(&[("HOSTNAME", "ledger-7d9f-abcde")]).expect("valid");
        assert_eq!(config.stream, "prod:{events}");
        assert_eq!(config.dead_letter_stream(), "prod:{events}:dead");
        assert_eq!(config.consumer_name, "ledger-7d9f-abcde");
        assert_eq!(config.producer, "ledger");
        assert_eq!(config.deliveries_max, 5);
        let renamed =
            load(&[("EVENTS_STREAM", "bus"), ("EVENTS_CONSUMER_NAME", "c1")]).expect("valid");
        assert_eq!(renamed.stream, "prod:{bus}");
        assert_eq!(renamed.consumer_name, "c1");
    }

    #[test]
    fn out_of_bounds_knobs_are_refused_by_name() {
        let cases = [
            ("EVENTS_STREAM_LENGTH_MAX", "10"),
            ("EVENTS_RELAY_BATCH_SIZE_MAX", "0"),
            ("EVENTS_RELAY_BATCH_SIZE_MAX", "100000"),
            ("EVENTS_RELAY_POLL_INTERVAL_MS", "1"),
            ("EVENTS_RELAY_BACKOFF_MAX_MS", "x"),
            ("EVENTS_OUTBOX_RETENTION_HOURS", "-1"),
            ("EVENTS_PROCESSED_RETENTION_DAYS", "0"),
            ("EVENTS_CONSUMER_WORKERS", "65"),
            ("EVENTS_CONSUMER_BATCH_SIZE_MAX", "0"),
            ("EVENTS_CONSUMER_BLOCK_MS", "0"),
            ("EVENTS_CLAIM_IDLE_MS", "5"),
            ("EVENTS_DELIVERIES_MAX", "0"),
        ];
        for (variable, value) in cases {
            let err = load(&[(variable, value)]).expect_err(value);
            assert_eq!(err.variable, variable, "{value}");
        }
    }
}
