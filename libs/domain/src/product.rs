//! The loan product's bounds (DESIGN §4), read once from the environment by every
//! service that enforces them: the ledger (authoritatively, at posting time) and account
//! (at quote and borrow time, so a customer sees them early). One parser, so the two can
//! never disagree on a default or a variable name.

use std::str::FromStr;

use rust_decimal::Decimal;

use crate::loan::TERM_MONTHS_MAX;

/// The product's bounds: credit-line limits, drawdown bounds, offered terms, the APR
/// cap and the penalty multiplier. Amounts in fen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductRules {
    pub line_limit_min_minor: i64,
    pub line_limit_max_minor: i64,
    pub drawdown_min_minor: i64,
    pub drawdown_max_minor: i64,
    pub offered_terms: Vec<u32>,
    pub apr_cap: Decimal,
    pub penalty_multiplier: Decimal,
}

impl Default for ProductRules {
    /// DESIGN §4: lines 500-200,000 CNY; drawdowns 100-40,000 CNY; 5, 10 or 20 months;
    /// APR cap 24%; penalty 1.5 x the daily rate.
    fn default() -> Self {
        Self {
            line_limit_min_minor: 50_000,
            line_limit_max_minor: 20_000_000,
            drawdown_min_minor: 10_000,
            drawdown_max_minor: 4_000_000,
            offered_terms: vec![5, 10, 20],
            apr_cap: Decimal::new(24, 2),
            penalty_multiplier: Decimal::new(15, 1),
        }
    }
}

/// A product variable that is set to something unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {reason}")]
pub struct ProductRulesError {
    pub variable: &'static str,
    pub reason: String,
}

/// Most terms offered at once.
const TERMS_OFFERED_MAX: usize = 12;
/// The legal ceiling on the cost of credit the cap may be set to (PRC courts: 36% a year).
const APR_CAP_CEILING: Decimal = Decimal::from_parts(36, 0, 0, false, 2);
/// Largest amount any bound may be set to (fen).
const AMOUNT_MAX_MINOR: i64 = 1_000_000_000_000;

impl ProductRules {
    /// The rules from `lookup` (an environment: variable → value, unset or blank =
    /// default): `CREDIT_LINE_LIMIT_MIN_MINOR_UNITS`, `CREDIT_LINE_LIMIT_MAX_MINOR_UNITS`,
    /// `DRAWDOWN_MIN_MINOR_UNITS`, `DRAWDOWN_MAX_MINOR_UNITS`, `LOAN_TERMS_MONTHS`
    /// (comma-separated), `APR_CAP`, `PENALTY_RATE_MULTIPLIER`. Errors name the variable.
    pub fn from_lookup(
        lookup: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Self, ProductRulesError> {
        let defaults = Self::default();
        let raw = |variable: &'static str| lookup(variable).filter(|text| !text.trim().is_empty());
        let refuse =
            |variable: &'static str, reason: String| ProductRulesError { variable, reason };
        let amount = |variable: &'static str, default: i64| -> Result<i64, ProductRulesError> {
            let Some(text) = raw(variable) else {
                return Ok(default);
            };
            let value: i64 = text
                .trim()
                .parse()
                .map_err(|err| refuse(variable, format!("`{text}`: {err}")))?;
            if !(1..=AMOUNT_MAX_MINOR).contains(&value) {
                return Err(refuse(
                    variable,
                    format!("{value} is outside 1..={AMOUNT_MAX_MINOR}"),
                ));
            }
            Ok(value)
        };
        let decimal =
            |variable: &'static str, default: Decimal| -> Result<Decimal, ProductRulesError> {
                raw(variable).map_or(Ok(default), |text| {
                    Decimal::from_str(text.trim())
                        .map_err(|err| refuse(variable, format!("`{text}`: {err}")))
                })
            };
        let rules = Self {
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
            offered_terms: terms(raw("LOAN_TERMS_MONTHS").as_deref().unwrap_or("5,10,20"))?,
            apr_cap: decimal("APR_CAP", defaults.apr_cap)?,
            penalty_multiplier: decimal("PENALTY_RATE_MULTIPLIER", defaults.penalty_multiplier)?,
        };
        if rules.line_limit_min_minor > rules.line_limit_max_minor {
            return Err(refuse(
                "CREDIT_LINE_LIMIT_MAX_MINOR_UNITS",
                "must be at least the minimum".into(),
            ));
        }
        if rules.drawdown_min_minor > rules.drawdown_max_minor {
            return Err(refuse(
                "DRAWDOWN_MAX_MINOR_UNITS",
                "must be at least the minimum".into(),
            ));
        }
        if rules.apr_cap <= Decimal::ZERO || rules.apr_cap > APR_CAP_CEILING {
            return Err(refuse("APR_CAP", "must be a fraction in (0, 0.36]".into()));
        }
        if rules.penalty_multiplier < Decimal::ONE || rules.penalty_multiplier > Decimal::TWO {
            return Err(refuse(
                "PENALTY_RATE_MULTIPLIER",
                "must be in [1, 2]".into(),
            ));
        }
        Ok(rules)
    }
}

/// `LOAN_TERMS_MONTHS`: distinct terms in months, sorted.
fn terms(text: &str) -> Result<Vec<u32>, ProductRulesError> {
    let refuse = || ProductRulesError {
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

    fn rules(vars: &[(&str, &str)]) -> Result<ProductRules, ProductRulesError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
            .collect();
        ProductRules::from_lookup(|name| {
            vars.iter()
                .find(|(key, _)| key == name)
                .map(|(_, value)| value.clone())
        })
    }

    #[test]
    fn the_defaults_are_design_and_each_can_be_set() {
        assert_eq!(rules(&[]).expect("defaults"), ProductRules::default());
        let set = rules(&[("LOAN_TERMS_MONTHS", "20, 5,10,5"), ("APR_CAP", "0.2")]).expect("set");
        assert_eq!(set.offered_terms, [5, 10, 20]);
        assert_eq!(set.apr_cap.to_string(), "0.2");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (variable, value) in [
            ("LOAN_TERMS_MONTHS", "5,x"),
            ("LOAN_TERMS_MONTHS", "0"),
            ("APR_CAP", "0.5"),
            ("PENALTY_RATE_MULTIPLIER", "3"),
            ("DRAWDOWN_MIN_MINOR_UNITS", "0"),
            ("DRAWDOWN_MIN_MINOR_UNITS", "-5"),
        ] {
            let err = rules(&[(variable, value)]).expect_err(value);
            assert_eq!(err.variable, variable, "{value}");
        }
        let err = rules(&[("DRAWDOWN_MIN_MINOR_UNITS", "5000000")]).expect_err("min above max");
        assert_eq!(err.variable, "DRAWDOWN_MAX_MINOR_UNITS");
    }
}
