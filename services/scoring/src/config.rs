//! The scoring service's configuration: the shared settings plus its peers' URLs.

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
}

impl Config {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env, IDENTITY)?;
        Ok(Self {
            events: EventsConfig::from_env(env, &common)?,
            common,
            account_url: env.peer_url("ACCOUNT_URL", "http://127.0.0.1:50051")?,
            ledger_url: env.peer_url("LEDGER_URL", "http://127.0.0.1:50053")?,
        })
    }
}
