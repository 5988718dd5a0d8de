//! Pricing and limits (DESIGN §4-5, docs/scoring-decisions.md): the grade table (score
//! band → risk grade → daily rate), the offered limit f(PD, income) within the caps,
//! and the scorecard reason codes. Pure: the decision module applies them.

use std::time::Duration;

use microloan_domain::DailyRate;
use microloan_platform::config::{ConfigError, Env};
use microloan_proto::common::v1::RiskGrade;

/// One row of the grade table.
#[derive(Debug, Clone, PartialEq)]
pub struct GradeBand {
    pub grade: RiskGrade,
    /// Lowest score in the band (inclusive).
    pub min_score: i32,
    /// Highest score in the band (inclusive).
    pub max_score: i32,
    pub daily_rate: DailyRate,
}

/// Highest score the top band reports (scores above it are in the top band too).
pub const SCORE_CEILING: i32 = 1000;
/// `SCORING_GRADE_BANDS` default: grade:min_score:daily_rate, best grade first.
pub const GRADE_BANDS_DEFAULT: &str =
    "A:620:0.0002,B:600:0.00025,C:580:0.0003,D:560:0.0004,E:540:0.0005";

/// The decision policy's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// `SCORING_GRADE_BANDS`: best grade first, min scores strictly descending.
    pub grade_bands: Vec<GradeBand>,
    /// `SCORING_LIMIT_EXPECTED_LOSS_MINOR_UNITS` (default 100,000 fen = 1,000 CNY): the
    /// PD-based limit is the one whose expected loss (PD x limit, loss given default 1)
    /// equals this budget.
    pub expected_loss_budget_fen: i64,
    /// `SCORING_THIN_FILE_LIMIT_MAX_MINOR_UNITS` (default 200,000 fen = 2,000 CNY): the
    /// most a thin file, or an applicant without a declared income, is offered.
    pub thin_file_limit_max_fen: i64,
    /// `CREDIT_LINE_LIMIT_MIN_MINOR_UNITS` / `CREDIT_LINE_LIMIT_MAX_MINOR_UNITS`
    /// (DESIGN §4, the ledger's variables: 500 and 200,000 CNY).
    pub line_limit_min_fen: i64,
    pub line_limit_max_fen: i64,
    /// `SCORING_DECISION_TTL_DAYS` (default 30): how long an APPROVED offer or a
    /// MANUAL_REVIEW may be acted on.
    pub decision_ttl: Duration,
    /// `SCORING_PSI_WINDOW_DAYS` (default 30) and `SCORING_PSI_SAMPLE_MIN` (default 100):
    /// the live scores the PSI is computed over, and how many it needs.
    pub psi_window: Duration,
    pub psi_sample_min: u64,
    /// `SCORING_REVIEW_ON_TIME_MIN` (default 3): on-time instalments before a review
    /// may raise a limit or lower a rate (review.rs).
    pub review_on_time_min: i64,
    /// `SCORING_CUT_DAYS_PAST_DUE` (default 30): days past due from which the line
    /// policy cuts the limit to what is drawn.
    pub cut_days_past_due: i32,
    /// `SCORING_DECISION_ASYNC_COMMIT` (default false): store Evaluate's decisions
    /// without waiting for the WAL flush (`synchronous_commit = off` for that one
    /// statement). Evaluate then answers without the flush's milliseconds, but a
    /// Postgres crash may lose the last fraction of a second of answered decisions
    /// (their ExplainDecision is then NOT_FOUND and a retry with the same request_id
    /// decides again). Off: every answered decision is durable.
    pub decision_async_commit: bool,
}

/// Limits are offered in whole hundreds of CNY.
pub const LIMIT_ROUNDING_FEN: i64 = 10_000;
/// DESIGN §4: total limit ≤ one third of the annual income.
pub const INCOME_SHARE_DIVISOR: i64 = 3;
const DAY: Duration = Duration::from_secs(86_400);

impl PolicyConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let bands: String = env.or("SCORING_GRADE_BANDS", GRADE_BANDS_DEFAULT.to_owned())?;
        let amount = |variable: &'static str, default: i64| -> Result<i64, ConfigError> {
            let value = env.bounded(variable, default as u64, 1, 1_000_000_000_000)?;
            Ok(value as i64)
        };
        let config = Self {
            grade_bands: parse_grade_bands(&bands).map_err(|reason| ConfigError {
                variable: "SCORING_GRADE_BANDS",
                reason,
            })?,
            expected_loss_budget_fen: amount("SCORING_LIMIT_EXPECTED_LOSS_MINOR_UNITS", 100_000)?,
            thin_file_limit_max_fen: amount("SCORING_THIN_FILE_LIMIT_MAX_MINOR_UNITS", 200_000)?,
            line_limit_min_fen: amount("CREDIT_LINE_LIMIT_MIN_MINOR_UNITS", 50_000)?,
            line_limit_max_fen: amount("CREDIT_LINE_LIMIT_MAX_MINOR_UNITS", 20_000_000)?,
            decision_ttl: DAY * env.bounded("SCORING_DECISION_TTL_DAYS", 30, 1, 365)? as u32,
            decision_async_commit: env.or("SCORING_DECISION_ASYNC_COMMIT", false)?,
            psi_window: DAY * env.bounded("SCORING_PSI_WINDOW_DAYS", 30, 1, 365)? as u32,
            psi_sample_min: env.bounded("SCORING_PSI_SAMPLE_MIN", 100, 1, 1_000_000)?,
            review_on_time_min: env.bounded("SCORING_REVIEW_ON_TIME_MIN", 3, 1, 1000)? as i64,
            cut_days_past_due: env.bounded("SCORING_CUT_DAYS_PAST_DUE", 30, 1, 180)? as i32,
        };
        if config.line_limit_min_fen > config.line_limit_max_fen {
            return Err(ConfigError {
                variable: "CREDIT_LINE_LIMIT_MAX_MINOR_UNITS",
                reason: "must be at least the minimum".into(),
            });
        }
        Ok(config)
    }

    /// The band of `score`, or `None` below the lowest band's floor (the cut-off).
    pub fn band_of(&self, score: i32) -> Option<&GradeBand> {
        self.grade_bands.iter().find(|band| score >= band.min_score)
    }

    /// The lowest band's floor.
    pub fn cutoff(&self) -> i32 {
        self.grade_bands
            .last()
            .map_or(i32::MIN, |band| band.min_score)
    }
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self::from_env(&Env::from_fn(|_| None)).expect("the defaults are valid")
    }
}

/// `A:620:0.0002,B:600:0.00025,...`: each grade at most once, best first, min scores
/// strictly descending, rates within the product's 0.0002..=0.0005.
pub fn parse_grade_bands(text: &str) -> Result<Vec<GradeBand>, String> {
    let mut bands: Vec<GradeBand> = Vec::new();
    for entry in text.split(',').map(str::trim) {
        let parts: Vec<&str> = entry.split(':').map(str::trim).collect();
        let [grade, min_score, rate] = parts.as_slice() else {
            return Err(format!("`{entry}` is not grade:min_score:daily_rate"));
        };
        let grade = match *grade {
            "A" => RiskGrade::A,
            "B" => RiskGrade::B,
            "C" => RiskGrade::C,
            "D" => RiskGrade::D,
            "E" => RiskGrade::E,
            other => return Err(format!("`{other}` is not a grade A-E")),
        };
        let min_score: i32 = min_score
            .parse()
            .map_err(|_| format!("`{min_score}` is not a whole score"))?;
        let daily_rate = DailyRate::parse(rate).map_err(|err| err.to_string())?;
        if let Some(previous) = bands.last()
            && ((grade as i32) <= (previous.grade as i32) || min_score >= previous.min_score)
        {
            return Err("grades must go from best to worst with descending min scores".into());
        }
        let max_score = bands.last().map_or(SCORE_CEILING, |b| b.min_score - 1);
        bands.push(GradeBand {
            grade,
            min_score,
            max_score,
            daily_rate,
        });
    }
    if bands.is_empty() {
        return Err("at least one band".into());
    }
    Ok(bands)
}

/// What the limit policy offers, with the steps that shaped it (for policy_notes).
#[derive(Debug, Clone, PartialEq)]
pub struct LimitOffer {
    /// fen, a whole number of hundreds of CNY; may be below the line minimum (then the
    /// decision declines with LIMIT_BELOW_MINIMUM).
    pub limit_fen: i64,
    pub notes: Vec<String>,
}

/// The offered limit: min(expected-loss budget / PD, annual income / 3 (or the thin-file
/// maximum without an income), the thin-file maximum for a thin file, the line maximum),
/// rounded down to 100 CNY.
pub fn offer_limit(
    config: &PolicyConfig,
    probability_of_default: f64,
    annual_income_fen: Option<i64>,
    thin_file: bool,
) -> LimitOffer {
    let mut notes = Vec::new();
    let pd = probability_of_default.clamp(1e-6, 1.0);
    let by_pd = (config.expected_loss_budget_fen as f64 / pd).min(1e15) as i64;
    notes.push(format!(
        "PD-based limit {} CNY (expected-loss budget {} CNY / PD {pd:.4})",
        cny(by_pd),
        cny(config.expected_loss_budget_fen)
    ));
    let mut limit = by_pd;
    let mut cap = |limit: &mut i64, cap_fen: i64, why: &str| {
        if cap_fen < *limit {
            *limit = cap_fen;
            notes.push(format!("limit capped by {why}: {} CNY", cny(cap_fen)));
        }
    };
    match annual_income_fen {
        Some(income) => cap(
            &mut limit,
            income / INCOME_SHARE_DIVISOR,
            "income (one third)",
        ),
        None => cap(
            &mut limit,
            config.thin_file_limit_max_fen,
            "no declared income",
        ),
    }
    if thin_file {
        cap(&mut limit, config.thin_file_limit_max_fen, "thin file");
    }
    cap(&mut limit, config.line_limit_max_fen, "the line maximum");
    let rounded = limit.max(0) / LIMIT_ROUNDING_FEN * LIMIT_ROUNDING_FEN;
    notes.push(format!(
        "offered limit rounded down to 100 CNY: {} CNY",
        cny(rounded)
    ));
    LimitOffer {
        limit_fen: rounded,
        notes,
    }
}

/// fen as "1234.56".
pub fn cny(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let fen = fen.unsigned_abs();
    format!("{sign}{}.{:02}", fen / 100, fen % 100)
}

/// The stable reason code of a scorecard feature that cost points, e.g.
/// `on_time_ratio` → `LOW_ON_TIME_RATIO`; a feature this service does not know
/// (a model trained on other columns) gets its name in upper case.
pub fn feature_reason_code(feature: &str) -> String {
    let code = match feature {
        "degree" => "FEW_SOCIAL_CONNECTIONS",
        "weighted_degree_transfer_fen" => "LOW_TRANSFER_ACTIVITY",
        "weighted_degree_red_packet_fen" => "LOW_RED_PACKET_ACTIVITY",
        "weighted_degree_messages" => "LOW_MESSAGING_ACTIVITY",
        "weighted_degree_calls" => "LOW_CALL_ACTIVITY",
        "weighted_degree_contacts" => "FEW_CONTACTS",
        "weighted_degree_group_members" => "FEW_GROUP_CONNECTIONS",
        "one_hop_bad_rate" => "CONTACTS_IN_DEFAULT",
        "two_hop_bad_rate" => "NETWORK_IN_DEFAULT",
        "defaulter_pagerank" => "CLOSE_TO_DEFAULTERS",
        "component_size" => "SHARED_IDENTITY_GROUP",
        "component_bad_rate" => "SHARED_IDENTITY_GROUP_IN_DEFAULT",
        "income_monthly_mean" => "LOW_INCOME",
        "income_stability" => "UNSTABLE_INCOME",
        "spend_volatility" => "HIGH_SPEND_VOLATILITY",
        "risky_spend_share" => "HIGH_RISKY_SPENDING",
        "distinct_lenders" => "MANY_OTHER_LENDERS",
        "on_time_ratio" => "LOW_ON_TIME_RATIO",
        "max_days_past_due" => "PAST_DUE_HISTORY",
        "utilisation" => "HIGH_UTILISATION",
        "customers_per_device" => "SHARED_DEVICE",
        "customers_per_phone" => "SHARED_PHONE",
        other => return other.to_ascii_uppercase(),
    };
    code.to_owned()
}

/// What a feature measures, for GetModelInfo.
pub fn feature_description(feature: &str) -> &'static str {
    match feature {
        "degree" => "distinct parties the customer interacts with",
        "weighted_degree_transfer_fen" => "money transfers with the customer's contacts (fen)",
        "weighted_degree_red_packet_fen" => "red packets exchanged (fen)",
        "weighted_degree_messages" => "direct messages exchanged",
        "weighted_degree_calls" => "calls exchanged",
        "weighted_degree_contacts" => "contact-list relations",
        "weighted_degree_group_members" => "small group-chat relations",
        "one_hop_bad_rate" => "share of direct neighbours who are known defaulters",
        "two_hop_bad_rate" => "share of two-hop neighbours who are known defaulters",
        "defaulter_pagerank" => "personalised PageRank seeded on known defaulters",
        "component_size" => "customers linked by shared identifiers",
        "component_bad_rate" => "share of known defaulters among those linked customers",
        "income_monthly_mean" => "mean monthly income (fen)",
        "income_stability" => "stability of monthly income",
        "spend_volatility" => "month-to-month volatility of spending",
        "risky_spend_share" => "share of spending on gambling, lottery, crypto, lenders, cash-out",
        "distinct_lenders" => "distinct other lenders repaid",
        "on_time_ratio" => "share of instalments paid on time",
        "max_days_past_due" => "worst days past due",
        "utilisation" => "share of the credit line drawn",
        "customers_per_device" => "most customers seen on one of the customer's devices",
        "customers_per_phone" => "most customers seen with one of the customer's phones",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_grade_table_is_contiguous_and_priced_within_the_product() {
        let config = PolicyConfig::default();
        let grades: Vec<_> = config.grade_bands.iter().map(|b| b.grade).collect();
        assert_eq!(
            grades,
            [
                RiskGrade::A,
                RiskGrade::B,
                RiskGrade::C,
                RiskGrade::D,
                RiskGrade::E
            ]
        );
        for pair in config.grade_bands.windows(2) {
            assert_eq!(pair[1].max_score, pair[0].min_score - 1);
            assert!(pair[1].daily_rate > pair[0].daily_rate);
        }
        assert_eq!(config.band_of(620).map(|b| b.grade), Some(RiskGrade::A));
        assert_eq!(config.band_of(619).map(|b| b.grade), Some(RiskGrade::B));
        assert_eq!(config.band_of(540).map(|b| b.grade), Some(RiskGrade::E));
        assert_eq!(config.band_of(539), None);
        assert_eq!(config.cutoff(), 540);
    }

    #[test]
    fn bad_grade_tables_are_refused() {
        for bad in [
            "",
            "A:600",
            "A:600:0.0001",
            "B:600:0.0002,A:580:0.0003",
            "A:600:0.0002,B:600:0.0003",
            "Z:600:0.0002",
        ] {
            assert!(parse_grade_bands(bad).is_err(), "{bad}");
        }
        let bands = parse_grade_bands("A:700:0.0002,C:500:0.0005").unwrap();
        assert_eq!((bands[1].min_score, bands[1].max_score), (500, 699));
    }

    #[test]
    fn the_limit_is_the_expected_loss_budget_over_pd_within_the_caps_in_hundreds() {
        let config = PolicyConfig::default();
        // 1,000 CNY / 0.02 = 50,000 CNY; income 120,000 CNY / 3 = 40,000 CNY.
        let offer = offer_limit(&config, 0.02, Some(12_000_000), false);
        assert_eq!(offer.limit_fen, 4_000_000);
        assert!(offer.notes.iter().any(|n| n.contains("income")));
        // PD-bound: 1,000 / 0.03 = 33,333.33 → 33,300 CNY.
        let offer = offer_limit(&config, 0.03, Some(30_000_000), false);
        assert_eq!(offer.limit_fen, 3_330_000);
        // The line maximum: 200,000 CNY.
        let offer = offer_limit(&config, 0.000_1, Some(100_000_000_000), false);
        assert_eq!(offer.limit_fen, 20_000_000);
        // Thin file and no income: 2,000 CNY.
        assert_eq!(
            offer_limit(&config, 0.02, Some(12_000_000), true).limit_fen,
            200_000
        );
        assert_eq!(offer_limit(&config, 0.02, None, false).limit_fen, 200_000);
        // Tiny income: 1,000 CNY a year / 3 = 333.33 → 300 CNY (below the line minimum).
        assert_eq!(
            offer_limit(&config, 0.02, Some(100_000), false).limit_fen,
            30_000
        );
    }

    #[test]
    fn money_prints_in_yuan_with_fen() {
        assert_eq!(cny(123_456), "1234.56");
        assert_eq!(cny(5), "0.05");
        assert_eq!(cny(-250), "-2.50");
    }
}
