//! The scoring service's configuration: the shared settings, its peers' URLs, the
//! active model's file, and the thresholds of the decision policy and the anti-fraud
//! rules (docs/scoring-decisions.md).

use std::{path::PathBuf, time::Duration};

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
    /// `SCORING_GRAPH_CACHE_SECONDS`: how long Evaluate may reuse a customer's
    /// neighbourhood features computed earlier by this process (default 30; 0 = never;
    /// at most an hour). Changes this process applies drop the entries they touch at
    /// once; this bounds how late another replica's changes are seen
    /// (features::cache).
    pub graph_cache_ttl: Duration,
    /// `SCORING_MODEL_PATH`: the active scorecard artefact (default
    /// [`MODEL_PATH_DEFAULT`]; a relative path is tried from the working directory, then
    /// from the workspace root).
    pub model_path: PathBuf,
    /// Grades, prices, limits and expiry.
    pub policy: crate::policy::PolicyConfig,
    /// The anti-fraud rules' thresholds.
    pub fraud: crate::fraud::FraudConfig,
}

/// The shipped model, relative to the workspace root (`make train-model` writes it).
pub const MODEL_PATH_DEFAULT: &str = "services/scoring/model/default.json";

pub const PAGERANK_REFRESH_DEFAULT: Duration = Duration::from_secs(900);
const PAGERANK_REFRESH_MAX: Duration = Duration::from_secs(86_400);
pub const GRAPH_CACHE_TTL_DEFAULT: Duration = Duration::from_secs(30);
const GRAPH_CACHE_TTL_MAX: Duration = Duration::from_secs(3_600);

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
            graph_cache_ttl: env.seconds(
                "SCORING_GRAPH_CACHE_SECONDS",
                GRAPH_CACHE_TTL_DEFAULT,
                GRAPH_CACHE_TTL_MAX,
            )?,
            model_path: env.or("SCORING_MODEL_PATH", PathBuf::from(MODEL_PATH_DEFAULT))?,
            policy: crate::policy::PolicyConfig::from_env(env)?,
            fraud: crate::fraud::FraudConfig::from_env(env)?,
        })
    }
}
