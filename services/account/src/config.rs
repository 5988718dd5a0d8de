//! The account service's configuration: the shared settings plus its peers' URLs.

use microloan_events::EventsConfig;
use microloan_platform::config::{CommonConfig, ConfigError, Env, ServiceIdentity};

pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "account",
    default_grpc_port: 50051,
    default_admin_port: 9101,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `EVENTS_*`: the outbox relay and consumer groups (docs/events.md).
    pub events: EventsConfig,
    /// `SCORING_URL`: the scoring service.
    pub scoring_url: String,
    /// `LEDGER_URL`: the ledger service.
    pub ledger_url: String,
    /// `NOTIFICATION_URL`: the notification service.
    pub notification_url: String,
}

impl Config {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env, IDENTITY)?;
        Ok(Self {
            events: EventsConfig::from_env(env, &common)?,
            common,
            scoring_url: env.peer_url("SCORING_URL", "http://127.0.0.1:50052")?,
            ledger_url: env.peer_url("LEDGER_URL", "http://127.0.0.1:50053")?,
            notification_url: env.peer_url("NOTIFICATION_URL", "http://127.0.0.1:50054")?,
        })
    }
}
