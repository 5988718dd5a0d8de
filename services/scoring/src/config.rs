//! The scoring service's configuration: the shared settings plus its peers' URLs.

use std::time::Duration;

use microloan_events::EventsConfig;
use microloan_platform::config::{CommonConfig, ConfigError, Env, ServiceIdentity};

pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "scoring",
    default_grpc_port: 50052,
    default_admin_port: 9102,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `EVENTS_*`: the outbox relay and consumer groups (docs/events.md).
    pub events: EventsConfig,
    /// `ACCOUNT_URL`: the account service.
    pub account_url: String,
    /// `LEDGER_URL`: the ledger service.
    pub ledger_url: String,
    /// `SCORING_PAGERANK_REFRESH_SECONDS`: how often the defaulter-seeded PageRank is
    /// recomputed over the stored graph (default 900; 0 = only on demand; at most a day).
    pub pagerank_refresh: Duration,
}

pub const PAGERANK_REFRESH_DEFAULT: Duration = Duration::from_secs(900);
const PAGERANK_REFRESH_MAX: Duration = Duration::from_secs(86_400);

impl Config {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env, IDENTITY)?;
        Ok(Self {
            events: EventsConfig::from_env(env, &common)?,
            common,
            account_url: env.peer_url("ACCOUNT_URL", "http://127.0.0.1:50051")?,
            ledger_url: env.peer_url("LEDGER_URL", "http://127.0.0.1:50053")?,
            pagerank_refresh: env.seconds(
                "SCORING_PAGERANK_REFRESH_SECONDS",
                PAGERANK_REFRESH_DEFAULT,
                PAGERANK_REFRESH_MAX,
            )?,
        })
    }
}
