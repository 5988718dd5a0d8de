//! Points-to-double-odds scaling (`ScorecardScaling` in scoring.proto, same field names):
//! score = offset + factor · ln(odds good:bad), factor = pdo / ln 2,
//! offset = base_score − factor · ln(base_odds).

use serde::{Deserialize, Serialize};

/// Score at the base odds.
pub const BASE_SCORE: i32 = 600;
/// Good:bad odds at the base score.
pub const BASE_ODDS: f64 = 50.0;
/// Points that double the odds.
pub const POINTS_TO_DOUBLE_ODDS: i32 = 20;

/// The scaling, as in the proto (`base_odds` a decimal string there and in the artefact).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScorecardScaling {
    pub base_score: i32,
    #[serde(with = "decimal_string")]
    pub base_odds: f64,
    pub points_to_double_odds: i32,
}

impl Default for ScorecardScaling {
    fn default() -> Self {
        Self {
            base_score: BASE_SCORE,
            base_odds: BASE_ODDS,
            points_to_double_odds: POINTS_TO_DOUBLE_ODDS,
        }
    }
}

impl ScorecardScaling {
    /// pdo / ln 2: points per unit of log-odds.
    pub fn factor(&self) -> f64 {
        f64::from(self.points_to_double_odds) / std::f64::consts::LN_2
    }

    /// base_score − factor · ln(base_odds).
    pub fn offset(&self) -> f64 {
        f64::from(self.base_score) - self.factor() * self.base_odds.ln()
    }

    /// The (unrounded) score of good:bad log-odds.
    pub fn score(&self, log_odds_good: f64) -> f64 {
        self.offset() + self.factor() * log_odds_good
    }

    /// The good:bad log-odds a score stands for.
    pub fn log_odds(&self, score: f64) -> f64 {
        (score - self.offset()) / self.factor()
    }

    /// The probability of default a score stands for: 1 / (1 + odds good:bad).
    pub fn probability_of_default(&self, score: f64) -> f64 {
        1.0 / (1.0 + self.log_odds(score).exp())
    }
}

/// f64 ⇄ JSON string ("50", "12.5"), as the proto carries decimals.
mod decimal_string {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<f64, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse::<f64>()
            .ok()
            .filter(|v| v.is_finite() && *v > 0.0)
            .ok_or_else(|| D::Error::custom(format!("`{text}` is not a positive decimal")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn six_hundred_at_fifty_to_one_and_twenty_more_per_doubling() {
        let scaling = ScorecardScaling::default();
        // factor = 20 / ln 2 = 28.8539…; offset = 600 − 28.8539 · ln 50 = 487.1229…
        assert!((scaling.factor() - 28.853_900_817_779_27).abs() < 1e-12);
        assert!((scaling.offset() - 487.122_876_204_505_5).abs() < 1e-9);
        assert!((scaling.score(50.0_f64.ln()) - 600.0).abs() < 1e-9);
        assert!((scaling.score(100.0_f64.ln()) - 620.0).abs() < 1e-9);
        assert!((scaling.score(25.0_f64.ln()) - 580.0).abs() < 1e-9);
        // 600 ⇔ odds 50:1 ⇔ PD 1/51.
        assert!((scaling.probability_of_default(600.0) - 1.0 / 51.0).abs() < 1e-12);
    }

    #[test]
    fn base_odds_travels_as_a_decimal_string() {
        let json = serde_json::to_string(&ScorecardScaling::default()).unwrap();
        assert_eq!(
            json,
            r#"{"base_score":600,"base_odds":"50","points_to_double_odds":20}"#
        );
        let back: ScorecardScaling = serde_json::from_str(&json).unwrap();
        assert_eq!(back, ScorecardScaling::default());
        assert!(
            serde_json::from_str::<ScorecardScaling>(
                r#"{"base_score":600,"base_odds":"-1","points_to_double_odds":20}"#
            )
            .is_err()
        );
    }
}
