//! The account service's configuration: the shared settings, its peers' URLs, the PII
//! keys and the onboarding rules.

use microloan_events::EventsConfig;
use microloan_platform::config::{CommonConfig, ConfigError, Env, Secret, ServiceIdentity};

use std::time::Duration;

use microloan_domain::ProductRules;

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
    /// The product bounds, parsed by the parser the ledger uses (libs/domain
    /// `ProductRules`): `CREDIT_LINE_LIMIT_*_MINOR_UNITS`, `DRAWDOWN_*_MINOR_UNITS`,
    /// `LOAN_TERMS_MONTHS`, `APR_CAP`, `PENALTY_RATE_MULTIPLIER`.
    pub product: ProductRules,
    /// The credit-line journeys' own settings.
    pub lines: LineSettings,
    /// `RATE_LIMIT_*`: per customer and per device, per minute.
    pub rate_limits: RateLimits,
}

/// Clocks of the credit-line journeys.
#[derive(Debug, Clone, Copy)]
pub struct LineSettings {
    /// `CREDIT_LINE_CACHE_TTL_SECONDS` (default 300): how long Redis keeps a line.
    pub cache_ttl: Duration,
    /// `QUOTE_TTL_SECONDS` (default 900): how long a quote locks its terms.
    pub quote_ttl: Duration,
    /// `LIMIT_INCREASE_COOLDOWN_DAYS` (default 30).
    pub increase_cooldown_days: u32,
    /// `REAPPLY_COOLDOWN_DAYS` (default 30): after a declined application.
    pub reapply_cooldown_days: u32,
}

impl Default for LineSettings {
    fn default() -> Self {
        Self {
            cache_ttl: Duration::from_secs(300),
            quote_ttl: Duration::from_secs(900),
            increase_cooldown_days: 30,
            reapply_cooldown_days: 30,
        }
    }
}

/// Requests per minute allowed per customer and per device, by RPC; 0 = unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `RATE_LIMIT_CREATE_CUSTOMER_PER_CUSTOMER` (per national id) / `..._PER_DEVICE`.
    pub create_customer: (u32, u32),
    /// `RATE_LIMIT_APPLY_PER_CUSTOMER` / `RATE_LIMIT_APPLY_PER_DEVICE`.
    pub apply: (u32, u32),
    /// `RATE_LIMIT_BORROW_PER_CUSTOMER` / `RATE_LIMIT_BORROW_PER_DEVICE`.
    pub borrow: (u32, u32),
}

impl Default for RateLimits {
    fn default() -> Self {
        Self {
            create_customer: (10, 20),
            apply: (5, 10),
            borrow: (30, 60),
        }
    }
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
            product: ProductRules::from_lookup(|variable| {
                env.optional::<String>(variable).ok().flatten()
            })
            .map_err(|err| ConfigError {
                variable: err.variable,
                reason: err.reason,
            })?,
            lines: line_settings(env)?,
            rate_limits: rate_limits(env)?,
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

fn line_settings(env: &Env<'_>) -> Result<LineSettings, ConfigError> {
    let defaults = LineSettings::default();
    let days = |variable, default: u32| -> Result<u32, ConfigError> {
        let value = env.bounded(variable, u64::from(default), 0, 3_650)?;
        Ok(u32::try_from(value).unwrap_or(default))
    };
    Ok(LineSettings {
        cache_ttl: Duration::from_secs(env.bounded(
            "CREDIT_LINE_CACHE_TTL_SECONDS",
            defaults.cache_ttl.as_secs(),
            1,
            86_400,
        )?),
        quote_ttl: Duration::from_secs(env.bounded(
            "QUOTE_TTL_SECONDS",
            defaults.quote_ttl.as_secs(),
            1,
            86_400,
        )?),
        increase_cooldown_days: days(
            "LIMIT_INCREASE_COOLDOWN_DAYS",
            defaults.increase_cooldown_days,
        )?,
        reapply_cooldown_days: days("REAPPLY_COOLDOWN_DAYS", defaults.reapply_cooldown_days)?,
    })
}

fn rate_limits(env: &Env<'_>) -> Result<RateLimits, ConfigError> {
    let defaults = RateLimits::default();
    let per_minute = |variable, default: u32| -> Result<u32, ConfigError> {
        let value = env.bounded(variable, u64::from(default), 0, 1_000_000)?;
        Ok(u32::try_from(value).unwrap_or(default))
    };
    Ok(RateLimits {
        create_customer: (
            per_minute(
                "RATE_LIMIT_CREATE_CUSTOMER_PER_CUSTOMER",
                defaults.create_customer.0,
            )?,
            per_minute(
                "RATE_LIMIT_CREATE_CUSTOMER_PER_DEVICE",
                defaults.create_customer.1,
            )?,
        ),
        apply: (
            per_minute("RATE_LIMIT_APPLY_PER_CUSTOMER", defaults.apply.0)?,
            per_minute("RATE_LIMIT_APPLY_PER_DEVICE", defaults.apply.1)?,
        ),
        borrow: (
            per_minute("RATE_LIMIT_BORROW_PER_CUSTOMER", defaults.borrow.0)?,
            per_minute("RATE_LIMIT_BORROW_PER_DEVICE", defaults.borrow.1)?,
        ),
    })
}
