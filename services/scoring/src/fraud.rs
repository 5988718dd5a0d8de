//! Anti-fraud (DESIGN §5, docs/scoring-decisions.md): one rule per `FraudFlag`, each
//! with its threshold in the environment, run in FraudFlag number order in the
//! decision's transaction. Rules that do not apply to a purpose do not run (and are not
//! listed in `ExplainDecision.fraud_checks`).
//!
//! Velocity counts live in Redis (one sorted set per identifier under the service's
//! key prefix, scored by time: exact sliding 1 h and 24 h windows in one round trip);
//! with Redis unreachable they are counted from Postgres' identity sightings, which
//! Evaluate records for every identifier of its context, so decisions still come.

use chrono::{DateTime, Utc};
use microloan_platform::{
    cache::Cache,
    config::{ConfigError, Env},
};
use microloan_proto::{
    common::v1::DecisionPurpose,
    scoring::v1::{FraudFlag, IdentifierKind, SightingContext},
};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::policy::cny;
use crate::store::features::FraudFacts;

/// Thresholds of the rules; a rule fires when the observed value reaches its threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct FraudConfig {
    /// `SCORING_FRAUD_DEVICE_VELOCITY_1H` / `_24H` (defaults 5 / 10): applications and
    /// drawdowns from one device.
    pub device_1h: u64,
    pub device_24h: u64,
    /// `SCORING_FRAUD_PHONE_VELOCITY_1H` / `_24H` (defaults 3 / 5): applications for one
    /// phone hash.
    pub phone_1h: u64,
    pub phone_24h: u64,
    /// `SCORING_FRAUD_NATIONAL_ID_VELOCITY_1H` / `_24H` (defaults 3 / 5).
    pub national_id_1h: u64,
    pub national_id_24h: u64,
    /// `SCORING_FRAUD_SHARED_IDENTIFIER_CUSTOMERS` (default 3): customers on one device,
    /// phone or national id.
    pub shared_identifier_customers: u64,
    /// `SCORING_FRAUD_RING_SIZE` (default 50; 0 = off): a component over shared
    /// identifiers this large is a ring even without a confirmed fraud in it.
    pub ring_size: u64,
    /// `SCORING_FRAUD_FULL_DRAWDOWN_PERCENT` (default 90): a drawdown of at least this
    /// share of the limit is "full".
    pub full_drawdown_percent: u64,
    /// `SCORING_FRAUD_INCREASE_WINDOW_HOURS` (default 24).
    pub increase_window_hours: u64,
    /// `SCORING_FRAUD_CYCLING_LOANS` (default 3) loans repaid early within
    /// `SCORING_FRAUD_CYCLING_WINDOW_DAYS` (default 30).
    pub cycling_loans: u64,
    pub cycling_window_days: u64,
}

impl FraudConfig {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let count =
            |variable: &'static str, default: u64| env.bounded(variable, default, 1, 1_000_000);
        Ok(Self {
            device_1h: count("SCORING_FRAUD_DEVICE_VELOCITY_1H", 5)?,
            device_24h: count("SCORING_FRAUD_DEVICE_VELOCITY_24H", 10)?,
            phone_1h: count("SCORING_FRAUD_PHONE_VELOCITY_1H", 3)?,
            phone_24h: count("SCORING_FRAUD_PHONE_VELOCITY_24H", 5)?,
            national_id_1h: count("SCORING_FRAUD_NATIONAL_ID_VELOCITY_1H", 3)?,
            national_id_24h: count("SCORING_FRAUD_NATIONAL_ID_VELOCITY_24H", 5)?,
            shared_identifier_customers: count("SCORING_FRAUD_SHARED_IDENTIFIER_CUSTOMERS", 3)?,
            ring_size: env.bounded("SCORING_FRAUD_RING_SIZE", 50, 0, 1_000_000)?,
            full_drawdown_percent: env.bounded(
                "SCORING_FRAUD_FULL_DRAWDOWN_PERCENT",
                90,
                1,
                100,
            )?,
            increase_window_hours: env.bounded(
                "SCORING_FRAUD_INCREASE_WINDOW_HOURS",
                24,
                1,
                720,
            )?,
            cycling_loans: count("SCORING_FRAUD_CYCLING_LOANS", 3)?,
            cycling_window_days: env.bounded("SCORING_FRAUD_CYCLING_WINDOW_DAYS", 30, 1, 365)?,
        })
    }
}

impl Default for FraudConfig {
    fn default() -> Self {
        Self::from_env(&Env::from_fn(|_| None)).expect("the defaults are valid")
    }
}

/// The result of one rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub flag: FraudFlag,
    pub triggered: bool,
    /// Observed value against the threshold; no PII (identifiers are never echoed).
    pub detail: String,
}

/// Hard rules decline; the others send the decision to MANUAL_REVIEW (a signal worth a
/// human look, not proof).
pub fn declines(flag: FraudFlag) -> bool {
    matches!(flag, FraudFlag::Blacklisted | FraudFlag::FraudRing)
}

/// The policy reason code of a fired rule. The rule itself is internal: notification
/// renders every `FRAUD_*` code with one generic text.
pub fn reason_code(flag: FraudFlag) -> String {
    let name = flag.as_str_name();
    format!("FRAUD_{}", name.trim_start_matches("FRAUD_FLAG_"))
}

/// The Redis velocity counters, with a breaker: after a failure Redis is skipped (and
/// Postgres counts) for [`REDIS_RETRY_AFTER_MS`], so an outage costs one bounded
/// round trip now and then instead of a connection timeout on every decision.
#[derive(Debug, Clone)]
pub struct Counters {
    cache: Cache,
    skip_until_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

/// How long Redis is left alone after a failed velocity round trip.
pub const REDIS_RETRY_AFTER_MS: i64 = 10_000;

impl Counters {
    pub fn new(cache: Cache) -> Self {
        Self {
            cache,
            skip_until_ms: std::sync::Arc::default(),
        }
    }
}

/// What the rules look at.
#[derive(Debug, Clone)]
pub struct Subject<'a> {
    pub customer_id: Uuid,
    pub purpose: DecisionPurpose,
    pub decision_id: Uuid,
    pub device_id: &'a str,
    pub phone_hash: &'a str,
    pub national_id_hash: &'a str,
    pub drawdown_amount_fen: Option<i64>,
    pub current_limit_fen: Option<i64>,
    pub now: DateTime<Utc>,
}

/// The sighting context Evaluate records a purpose's identifiers under.
pub fn sighting_context(purpose: DecisionPurpose) -> SightingContext {
    match purpose {
        DecisionPurpose::CreditLineApplication | DecisionPurpose::LimitIncrease => {
            SightingContext::Application
        }
        DecisionPurpose::Drawdown => SightingContext::Drawdown,
        _ => SightingContext::Other,
    }
}

/// Runs every rule that applies to the subject's purpose, in FraudFlag order, on the
/// `facts` read with the customer's inputs (`store::features::customer_inputs`, after
/// the subject's identifiers were recorded as sightings in `conn`'s transaction); only
/// the velocity rules make round trips (Redis, or Postgres on `conn` without it).
pub async fn run_checks(
    conn: &mut PgConnection,
    counters: &Counters,
    config: &FraudConfig,
    subject: &Subject<'_>,
    facts: &FraudFacts,
) -> Result<Vec<Check>, sqlx::Error> {
    let mut checks = Vec::with_capacity(8);
    let application = matches!(
        subject.purpose,
        DecisionPurpose::CreditLineApplication | DecisionPurpose::LimitIncrease
    );
    let drawdown = subject.purpose == DecisionPurpose::Drawdown;
    let velocity_rules = [
        (
            FraudFlag::DeviceVelocity,
            IdentifierKind::Device,
            subject.device_id,
            application || drawdown,
            (config.device_1h, config.device_24h),
        ),
        (
            FraudFlag::PhoneVelocity,
            IdentifierKind::Phone,
            subject.phone_hash,
            application,
            (config.phone_1h, config.phone_24h),
        ),
        (
            FraudFlag::NationalIdVelocity,
            IdentifierKind::NationalId,
            subject.national_id_hash,
            application,
            (config.national_id_1h, config.national_id_24h),
        ),
    ];
    for (flag, kind, identifier, applies, thresholds) in velocity_rules {
        if applies && !identifier.is_empty() {
            checks
                .push(velocity(conn, counters, subject, flag, kind, identifier, thresholds).await?);
        }
    }
    checks.push(shared_identifier(config, facts.most_shared));
    checks.push(fraud_ring(
        config,
        facts.component_size,
        facts.ring_confirmed,
    ));
    checks.push(blacklisted(&facts.blacklisted));
    if drawdown {
        checks.push(drawdown_after_increase(config, subject, facts.increase));
        checks.push(draw_repay_cycling(config, facts.early_loans));
    }
    Ok(checks)
}

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

fn kind_name(kind: IdentifierKind) -> &'static str {
    match kind {
        IdentifierKind::Device => "device",
        IdentifierKind::Phone => "phone",
        IdentifierKind::NationalId => "national_id",
        IdentifierKind::Unspecified => "identifier",
    }
}

/// (last hour, last 24 hours) including this evaluation.
async fn velocity(
    conn: &mut PgConnection,
    counters: &Counters,
    subject: &Subject<'_>,
    flag: FraudFlag,
    kind: IdentifierKind,
    identifier: &str,
    (threshold_1h, threshold_24h): (u64, u64),
) -> Result<Check, sqlx::Error> {
    use std::sync::atomic::Ordering;
    let now_ms = subject.now.timestamp_millis();
    let redis = if counters.skip_until_ms.load(Ordering::Relaxed) > now_ms {
        None
    } else {
        match redis_counts(&counters.cache, subject, kind, identifier).await {
            Ok(counts) => Some(counts),
            Err(err) => {
                tracing::warn!(%err, "velocity counters unavailable in Redis: counting from Postgres");
                counters
                    .skip_until_ms
                    .store(now_ms + REDIS_RETRY_AFTER_MS, Ordering::Relaxed);
                None
            }
        }
    };
    let (counts, source) = match redis {
        Some(counts) => (counts, "redis"),
        None => (
            postgres_counts(conn, subject, kind, identifier).await?,
            "postgres",
        ),
    };
    let (hour, day) = counts;
    let what = if kind == IdentifierKind::Device {
        "applications and drawdowns"
    } else {
        "applications"
    };
    let triggered = hour >= threshold_1h || day >= threshold_24h;
    Ok(Check {
        flag,
        triggered,
        detail: format!(
            "{hour} {what} / 1h (threshold {threshold_1h}), {day} / 24h (threshold \
             {threshold_24h}) for this {}, counted in {source}",
            kind_name(kind)
        ),
    })
}

async fn redis_counts(
    cache: &Cache,
    subject: &Subject<'_>,
    kind: IdentifierKind,
    identifier: &str,
) -> Result<(u64, u64), redis::RedisError> {
    let key = cache.key(&format!("velocity:{}:{identifier}", kind_name(kind)));
    let now_ms = subject.now.timestamp_millis();
    let mut connection = cache.connection().await?;
    redis::pipe()
        .atomic()
        .zadd(&key, subject.decision_id.to_string(), now_ms)
        .ignore()
        .zrembyscore(&key, "-inf", now_ms - DAY_MS)
        .ignore()
        .zcount(&key, now_ms - HOUR_MS, "+inf")
        .zcard(&key)
        .pexpire(&key, DAY_MS)
        .ignore()
        .query_async(&mut connection)
        .await
}

async fn postgres_counts(
    conn: &mut PgConnection,
    subject: &Subject<'_>,
    kind: IdentifierKind,
    identifier: &str,
) -> Result<(u64, u64), sqlx::Error> {
    let contexts: Vec<i16> = if kind == IdentifierKind::Device {
        vec![
            SightingContext::Application as i16,
            SightingContext::Drawdown as i16,
        ]
    } else {
        vec![SightingContext::Application as i16]
    };
    let (hour, day): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE observe_time > $4 - interval '1 hour'), count(*) \
         FROM identity_sightings \
         WHERE kind = $1 AND identifier = $2 AND context = ANY($3) \
           AND observe_time > $4 - interval '24 hours' AND observe_time <= $4",
    )
    .bind(kind as i16)
    .bind(identifier)
    .bind(&contexts)
    .bind(subject.now)
    .fetch_one(conn)
    .await?;
    Ok((hour.max(0) as u64, day.max(0) as u64))
}

fn shared_identifier(config: &FraudConfig, most: Option<(i16, i64)>) -> Check {
    let threshold = config.shared_identifier_customers;
    match most {
        Some((kind, customers)) => {
            let kind =
                IdentifierKind::try_from(i32::from(kind)).unwrap_or(IdentifierKind::Unspecified);
            let customers = customers.max(0) as u64;
            Check {
                flag: FraudFlag::SharedIdentifier,
                triggered: customers >= threshold,
                detail: format!(
                    "most shared identifier: a {} of {customers} customers (threshold {threshold})",
                    kind_name(kind)
                ),
            }
        }
        None => Check {
            flag: FraudFlag::SharedIdentifier,
            triggered: false,
            detail: format!("no identifier known (threshold {threshold} customers)"),
        },
    }
}

/// `size`: the customer's component (1 without one); `confirmed`: confirmed frauds
/// among its other members.
fn fraud_ring(config: &FraudConfig, size: i64, confirmed: i64) -> Check {
    let size = size.max(1) as u64;
    let big = config.ring_size > 0 && size >= config.ring_size;
    Check {
        flag: FraudFlag::FraudRing,
        triggered: confirmed > 0 || big,
        detail: format!(
            "component over shared identifiers: {size} customers ({} size threshold), {confirmed} \
             other confirmed fraud (threshold 1)",
            if config.ring_size == 0 {
                "no".to_owned()
            } else {
                config.ring_size.to_string()
            }
        ),
    }
}

/// `hits`: the blacklisted kinds (0 = the customer id), ascending.
fn blacklisted(hits: &[i16]) -> Check {
    let names: Vec<&str> = hits
        .iter()
        .map(|kind| match IdentifierKind::try_from(i32::from(*kind)) {
            Ok(kind) if kind != IdentifierKind::Unspecified => kind_name(kind),
            _ => "customer",
        })
        .collect();
    Check {
        flag: FraudFlag::Blacklisted,
        triggered: !hits.is_empty(),
        detail: if hits.is_empty() {
            "no identifier of the customer is blacklisted".to_owned()
        } else {
            format!("blacklisted: {}", names.join(", "))
        },
    }
}

/// `increase`: the latest approved LIMIT_INCREASE in the window (decide time, offered
/// limit).
fn drawdown_after_increase(
    config: &FraudConfig,
    subject: &Subject<'_>,
    increase: Option<(DateTime<Utc>, Option<i64>)>,
) -> Check {
    let amount = subject.drawdown_amount_fen.unwrap_or(0);
    let window = config.increase_window_hours;
    let percent = config.full_drawdown_percent;
    let Some((increase_time, offered)) = increase else {
        return Check {
            flag: FraudFlag::DrawdownAfterIncrease,
            triggered: false,
            detail: format!("no approved limit increase in the last {window} h"),
        };
    };
    let limit = subject.current_limit_fen.or(offered).unwrap_or(0);
    let share = if limit > 0 {
        (i128::from(amount) * 100 / i128::from(limit)) as i64
    } else {
        0
    };
    let hours = (subject.now - increase_time).num_minutes() as f64 / 60.0;
    Check {
        flag: FraudFlag::DrawdownAfterIncrease,
        triggered: limit > 0 && i128::from(amount) * 100 >= i128::from(limit) * i128::from(percent),
        detail: format!(
            "drawdown {} CNY = {share}% of the {} CNY limit, {hours:.1} h after an approved \
             increase (threshold {percent}% within {window} h)",
            cny(amount),
            cny(limit)
        ),
    }
}

/// `loans`: distinct loans with an EARLY outcome in the window.
fn draw_repay_cycling(config: &FraudConfig, loans: i64) -> Check {
    let loans = loans.max(0) as u64;
    Check {
        flag: FraudFlag::DrawRepayCycling,
        triggered: loans >= config.cycling_loans,
        detail: format!(
            "{loans} loans repaid early in {} days (threshold {})",
            config.cycling_window_days, config.cycling_loans
        ),
    }
}

/// Records a confirmed fraud (a loan written off with reason FRAUD, or an operator):
/// the customer seeds the fraud-ring rule, and the customer and every identifier linked
/// to it so far are blacklisted.
pub async fn confirm_fraud(
    conn: &mut PgConnection,
    customer_id: Uuid,
    source: &str,
    time: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO fraud_confirmations (customer_id, source, confirm_time) \
         VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(customer_id)
    .bind(source)
    .bind(time)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO fraud_blacklist (kind, identifier, source, add_time) \
         SELECT 0, $1::text, $2, $3 \
         UNION ALL \
         SELECT kind, identifier, $2, $3 FROM identity_links WHERE customer_id = $1 \
         ON CONFLICT DO NOTHING",
    )
    .bind(customer_id)
    .bind(source)
    .bind(time)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_name_the_rule_under_one_prefix() {
        assert_eq!(
            reason_code(FraudFlag::DeviceVelocity),
            "FRAUD_DEVICE_VELOCITY"
        );
        assert_eq!(reason_code(FraudFlag::Blacklisted), "FRAUD_BLACKLISTED");
        assert!(declines(FraudFlag::FraudRing));
        assert!(!declines(FraudFlag::SharedIdentifier));
    }

    #[test]
    fn thresholds_come_from_the_environment_naming_the_variable() {
        let config = FraudConfig::default();
        assert_eq!(config.shared_identifier_customers, 3);
        let err = FraudConfig::from_env(&Env::from_fn(|name| {
            (name == "SCORING_FRAUD_FULL_DRAWDOWN_PERCENT").then(|| "150".to_owned())
        }))
        .unwrap_err();
        assert_eq!(err.variable, "SCORING_FRAUD_FULL_DRAWDOWN_PERCENT");
    }
}
