//! The ledger's configuration: the shared settings and the product bounds the loan book
//! enforces (it calls no peer; its events leave through the outbox and Redis).

use microloan_events::EventsConfig;
use microloan_platform::config::{CommonConfig, ConfigError, Env, ServiceIdentity};
use rust_decimal::Decimal;
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

/// Largest term any configuration may offer (months) and most terms offered.
const TERM_MONTHS_MAX: u32 = 60;
const TERMS_OFFERED_MAX: usize = 12;
/// The legal ceiling on the cost of credit the cap may be set to (PRC courts: 36% a year).
const APR_CAP_CEILING: Decimal = Decimal::from_parts(36, 0, 0, false, 2);

fn book_rules(env: &Env<'_>) -> Result<BookRules, ConfigError> {
    let defaults = BookRules::default();
    let amount = |variable: &'static str, default: i64| -> Result<i64, ConfigError> {
        let value = env.bounded(variable, default.unsigned_abs(), 1, 1_000_000_000_000)?;
        i64::try_from(value).map_err(|_| ConfigError {
            variable,
            reason: "too large".into(),
        })
    };
    let rules = BookRules {
        line_limit_min_minor: amount(
            "CREDIT_LINE_LIMIT_MIN_MINOR_UNITS",
            defaults.line_limit_min_minor,
        )?,
        line_limit_max_minor: amount(
            "CREDIT_LINE_LIMIT_MAX_MINOR_UNITS",
            defaults.line_limit_max_minor,
        )?,
        drawdown_min_minor: amount("DRAWDOWN_MIN_MINOR_UNITS", defaults.drawdown_min_minor)?,
        drawdown_max_minor: amount("DRAWDOWN_MAX_MINOR_UNITS", defaults.drawdown_max_minor)?,
        offered_terms: terms(env)?,
        apr_cap: env.or("APR_CAP", defaults.apr_cap)?,
        penalty_multiplier: env.or("PENALTY_RATE_MULTIPLIER", defaults.penalty_multiplier)?,
    };
    let refuse = |variable: &'static str, reason: &str| ConfigError {
        variable,
        reason: reason.to_owned(),
    };
    if rules.line_limit_min_minor > rules.line_limit_max_minor {
        return Err(refuse(
            "CREDIT_LINE_LIMIT_MAX_MINOR_UNITS",
            "must be at least the minimum",
        ));
    }
    if rules.drawdown_min_minor > rules.drawdown_max_minor {
        return Err(refuse(
            "DRAWDOWN_MAX_MINOR_UNITS",
            "must be at least the minimum",
        ));
    }
    if rules.apr_cap <= Decimal::ZERO || rules.apr_cap > APR_CAP_CEILING {
        return Err(refuse("APR_CAP", "must be a fraction in (0, 0.36]"));
    }
    if rules.penalty_multiplier < Decimal::ONE || rules.penalty_multiplier > Decimal::TWO {
        return Err(refuse("PENALTY_RATE_MULTIPLIER", "must be in [1, 2]"));
    }
    Ok(rules)
}

/// `LOAN_TERMS_MONTHS`: a comma-separated list of terms in months (default "5,10,20").
fn terms(env: &Env<'_>) -> Result<Vec<u32>, ConfigError> {
    let text: String = env.or("LOAN_TERMS_MONTHS", "5,10,20".to_owned())?;
    let refuse = || ConfigError {
        variable: "LOAN_TERMS_MONTHS",
        reason: format!(
            "must be 1-{TERMS_OFFERED_MAX} distinct months in 1..={TERM_MONTHS_MAX}, comma-separated"
        ),
    };
    let mut terms: Vec<u32> = text
        .split(',')
        .map(|part| {
            part.trim()
                .parse::<u32>()
                .ok()
                .filter(|months| (1..=TERM_MONTHS_MAX).contains(months))
        })
        .collect::<Option<_>>()
        .ok_or_else(refuse)?;
    terms.sort_unstable();
    terms.dedup();
    if terms.is_empty() || terms.len() > TERMS_OFFERED_MAX {
        return Err(refuse());
    }
    Ok(terms)
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
