//! The ledger's configuration: only the shared settings so far (it calls no peer;
//! its events leave through the outbox and Redis).

use microloan_platform::config::{CommonConfig, ConfigError, Env, ServiceIdentity};

pub const IDENTITY: ServiceIdentity = ServiceIdentity {
    name: "ledger",
    default_grpc_port: 50053,
    default_admin_port: 9103,
};

#[derive(Debug, Clone)]
pub struct Config {
    pub common: CommonConfig,
}

impl Config {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        Ok(Self {
            common: CommonConfig::from_env(env, IDENTITY)?,
        })
    }
}
