//! The account service's configuration: the shared settings, its peers' URLs, the PII
//! keys and the onboarding rules.

use microloan_events::EventsConfig;
use microloan_platform::config::{CommonConfig, ConfigError, Env, Secret, ServiceIdentity};

use crate::{identity::AgeBand, pii::PiiKeys};

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
    /// `PII_ENCRYPTION_KEY` (seals and opens), `PII_DECRYPT_ONLY_KEY` (opens, during a
    /// rotation) and `PII_LOOKUP_KEY` (the keyed lookup hash): base64 of 32 bytes each,
    /// the lookup key distinct from both (services/account/src/pii.rs).
    pub pii: PiiKeys,
    /// `CUSTOMER_AGE_MIN_YEARS` / `CUSTOMER_AGE_MAX_YEARS`: the eligible age band from
    /// the national id's birth date (default 18-60, inclusive).
    pub age_band: AgeBand,
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
            pii: pii_keys(env)?,
            age_band: age_band(env)?,
        })
    }
}

fn pii_keys(env: &Env<'_>) -> Result<PiiKeys, ConfigError> {
    let encryption: Secret = env.required("PII_ENCRYPTION_KEY")?;
    let decrypt_only: Option<Secret> = env.optional("PII_DECRYPT_ONLY_KEY")?;
    let lookup: Secret = env.required("PII_LOOKUP_KEY")?;
    // Check each key alone first, so the error names the variable at fault.
    for (variable, key) in [
        ("PII_ENCRYPTION_KEY", Some(&encryption)),
        ("PII_DECRYPT_ONLY_KEY", decrypt_only.as_ref()),
        ("PII_LOOKUP_KEY", Some(&lookup)),
    ] {
        if let Some(key) = key {
            PiiKeys::from_base64(key.expose(), None, LOOKUP_PROBE).map_err(|err| ConfigError {
                variable,
                reason: err.to_string(),
            })?;
        }
    }
    PiiKeys::from_base64(
        encryption.expose(),
        decrypt_only.as_ref().map(Secret::expose),
        lookup.expose(),
    )
    .map_err(|_| ConfigError {
        variable: "PII_LOOKUP_KEY",
        reason: "must differ from PII_ENCRYPTION_KEY and PII_DECRYPT_ONLY_KEY".into(),
    })
}

/// A valid lookup key used only to check one sealing key on its own.
const LOOKUP_PROBE: &str = "cHJvYmUtb25seS1wcm9iZS1vbmx5LXByb2JlLW9ubHk=";

fn age_band(env: &Env<'_>) -> Result<AgeBand, ConfigError> {
    let band = AgeBand {
        min_years: env.or("CUSTOMER_AGE_MIN_YEARS", AgeBand::DEFAULT.min_years)?,
        max_years: env.or("CUSTOMER_AGE_MAX_YEARS", AgeBand::DEFAULT.max_years)?,
    };
    if !(0..=150).contains(&band.min_years)
        || band.max_years < band.min_years
        || band.max_years > 150
    {
        return Err(ConfigError {
            variable: "CUSTOMER_AGE_MAX_YEARS",
            reason:
                "the band must satisfy 0 <= CUSTOMER_AGE_MIN_YEARS <= CUSTOMER_AGE_MAX_YEARS <= 150"
                    .into(),
        });
    }
    Ok(band)
}
