//! The demo's knobs, from the environment (errors name the variable).

use std::path::PathBuf;

use anyhow::{Context, bail};

/// Customers at most: the national ids and phones the demo makes are unique per run
/// within this bound (see `identity`).
pub const CUSTOMERS_MAX: usize = 10_000;
pub const MONTHS_MAX: u32 = 36;
pub const CONCURRENCY_MAX: usize = 64;

#[derive(Debug, Clone)]
pub struct Config {
    pub customers: usize,
    pub months: u32,
    pub seed: u64,
    /// Per-customer calls in flight at once (results applied in customer order). The
    /// default 32: of 8, 16 and 32 measured on a 2-core machine the book ran fastest at
    /// 32; applications were flat from 8 (docs/demo.md "Concurrency").
    pub concurrency: usize,
    pub account_url: String,
    pub scoring_url: String,
    /// Scoring's admin address (host:port of `/metrics`): the demo waits there for a
    /// PageRank refresh of the ingested graph before anyone applies.
    pub scoring_admin: String,
    /// Every service's admin address: the demo waits there for the events to settle
    /// before it counts the notices.
    pub admins: Vec<String>,
    pub ledger_url: String,
    pub notification_url: String,
    pub jwt_secret: String,
    pub report_dir: PathBuf,
}

fn var_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match std::env::var(name) {
        Ok(text) if !text.trim().is_empty() => text
            .trim()
            .parse()
            .map_err(|err| anyhow::anyhow!("{name}={text:?} is not valid: {err}")),
        _ => Ok(default),
    }
}

fn url(service: &str, default_port: u16) -> anyhow::Result<String> {
    let port: u16 = var_or(&format!("{}_PORT", service.to_uppercase()), default_port)?;
    Ok(format!("http://127.0.0.1:{port}"))
}

impl Config {
    pub fn from_env() -> anyhow::Result<Config> {
        let customers: usize = var_or("DEMO_CUSTOMERS", 10_000)?;
        if !(10..=CUSTOMERS_MAX).contains(&customers) {
            bail!("DEMO_CUSTOMERS={customers}: must be 10..={CUSTOMERS_MAX}");
        }
        let months: u32 = var_or("DEMO_MONTHS", 12)?;
        if !(1..=MONTHS_MAX).contains(&months) {
            bail!("DEMO_MONTHS={months}: must be 1..={MONTHS_MAX}");
        }
        let concurrency: usize = var_or("DEMO_CONCURRENCY", 32)?;
        if !(1..=CONCURRENCY_MAX).contains(&concurrency) {
            bail!("DEMO_CONCURRENCY={concurrency}: must be 1..={CONCURRENCY_MAX}");
        }
        Ok(Config {
            customers,
            months,
            seed: var_or("DEMO_SEED", 2026)?,
            concurrency,
            account_url: url("account", 50051)?,
            scoring_url: url("scoring", 50052)?,
            scoring_admin: format!("127.0.0.1:{}", var_or::<u16>("SCORING_ADMIN_PORT", 9102)?),
            admins: [
                ("ACCOUNT_ADMIN_PORT", 9101),
                ("SCORING_ADMIN_PORT", 9102),
                ("LEDGER_ADMIN_PORT", 9103),
                ("NOTIFICATION_ADMIN_PORT", 9104),
            ]
            .into_iter()
            .map(|(name, port)| Ok(format!("127.0.0.1:{}", var_or::<u16>(name, port)?)))
            .collect::<anyhow::Result<_>>()?,
            ledger_url: url("ledger", 50053)?,
            notification_url: url("notification", 50054)?,
            jwt_secret: std::env::var("AUTH_JWT_SECRET").context(
                "AUTH_JWT_SECRET must be set (scripts/demo.sh takes it from scripts/dev-env.sh)",
            )?,
            report_dir: PathBuf::from(var_or("DEMO_REPORT_DIR", "demo-report".to_owned())?),
        })
    }
}
