//! The ledger's configuration: the shared settings and the product bounds the loan book
//! enforces (it calls no peer; its events leave through the outbox and Redis).

use microloan_events::EventsConfig;
use microloan_platform::config::{CommonConfig, ConfigError, Env, ServiceIdentity};
use std::time::Duration;

use crate::book::BookRules;

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
    /// The product bounds (docs/ledger.md "The loan book"): `CREDIT_LINE_LIMIT_MIN_MINOR_UNITS`,
    /// `CREDIT_LINE_LIMIT_MAX_MINOR_UNITS`, `DRAWDOWN_MIN_MINOR_UNITS`,
    /// `DRAWDOWN_MAX_MINOR_UNITS`, `LOAN_TERMS_MONTHS`, `APR_CAP`, `PENALTY_RATE_MULTIPLIER`.
    pub book: BookRules,
    /// `LEDGER_EXPIRY_SWEEP_INTERVAL_MS` (default 1000, 10..=3,600,000): how often the
    /// background sweep releases reservations past their timeout (docs/ledger.md).
    pub expiry_sweep_interval: Duration,
}

impl Config {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let common = CommonConfig::from_env(env, IDENTITY)?;
        Ok(Self {
            events: EventsConfig::from_env(env, &common)?,
            common,
            book: book_rules(env)?,
            expiry_sweep_interval: Duration::from_millis(env.bounded(
                "LEDGER_EXPIRY_SWEEP_INTERVAL_MS",
                1_000,
                10,
                3_600_000,
            )?),
        })
    }
}

/// The product bounds, parsed by the one parser account shares (libs/domain).
fn book_rules(env: &Env<'_>) -> Result<BookRules, ConfigError> {
    BookRules::from_lookup(|variable| env.optional::<String>(variable).ok().flatten()).map_err(
        |err| ConfigError {
            variable: err.variable,
            reason: err.reason,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(extra: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut vars: HashMap<String, String> = [
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledger"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ]
        .into_iter()
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect();
        for (key, value) in extra {
            vars.insert((*key).to_owned(), (*value).to_owned());
        }
        Config::from_env(&Env::from_fn(|name| vars.get(name).cloned()))
    }

    #[test]
    fn the_product_bounds_default_to_design_and_can_be_set() {
        assert_eq!(config(&[]).expect("defaults").book, BookRules::default());
        let set = config(&[("LOAN_TERMS_MONTHS", "20, 5,10,5"), ("APR_CAP", "0.2")]).expect("set");
        assert_eq!(set.book.offered_terms, [5, 10, 20]);
        assert_eq!(set.book.apr_cap.to_string(), "0.2");
    }

    #[test]
    fn bad_bounds_name_their_variable() {
        for (variable, value) in [
            ("LOAN_TERMS_MONTHS", "5,x"),
            ("LOAN_TERMS_MONTHS", "0"),
            ("LOAN_TERMS_MONTHS", "61"),
            ("APR_CAP", "0.5"),
            ("APR_CAP", "-0.1"),
            ("PENALTY_RATE_MULTIPLIER", "3"),
            ("DRAWDOWN_MIN_MINOR_UNITS", "0"),
            ("LEDGER_EXPIRY_SWEEP_INTERVAL_MS", "5"),
            ("LEDGER_EXPIRY_SWEEP_INTERVAL_MS", "soon"),
        ] {
            let err = config(&[(variable, value)]).expect_err(value);
            assert_eq!(err.variable, variable, "{value}");
        }
        let err = config(&[("DRAWDOWN_MIN_MINOR_UNITS", "5000000")]).expect_err("min above max");
        assert_eq!(err.variable, "DRAWDOWN_MAX_MINOR_UNITS");
    }
}
