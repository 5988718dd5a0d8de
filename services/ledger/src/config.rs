//! The ledger's configuration: only the shared settings so far (it calls no peer;
//! its events leave through the outbox and Redis).

use microloan_events::EventsConfig;
use microloan_platform::config::{CommonConfig, ConfigError, Env, ServiceIdentity};

pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "ledger",
    default_grpc_port: 50053,
    default_admin_port: 9103,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
    /// `EVENTS_*`: the outbox relay and consumer groups (docs/events.md).
    pub events: EventsConfig,
}

impl Config {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env, IDENTITY)?;
        Ok(Self {
            events: EventsConfig::from_env(env, &common)?,
            common,
        })
    }
}
