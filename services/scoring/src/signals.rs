//! Signals parsed at the edge, once (scoring.proto `Signal`): past [`parse_signal`] no
//! code sees an unvalidated value. A bad signal yields the field path of its first
//! problem, in the proto's field order (e.g. `behaviour_event.amount.minor_units`).

use chrono::{DateTime, Datelike as _, FixedOffset, NaiveDate, Utc};
use microloan_proto::{
    common::v1::Money,
    scoring::v1::{
        self as proto, BehaviourCategory, BehaviourFlow, IdentifierKind, RepaymentOutcomeKind,
        SightingContext, SocialEdgeKind, signal::Kind,
    },
};
use rust_decimal::Decimal;
use uuid::Uuid;

/// Most signals in one IngestSignals batch.
pub const BATCH_SIGNALS_MAX: usize = 1000;
/// Longest party id or device fingerprint.
const OPAQUE_ID_CHARS_MAX: usize = 128;
/// Prefix of a non-customer party id.
const EXTERNAL_PARTY_PREFIX: &str = "ext:";
/// The days past due an InstallmentOverdue (hence a MISSED outcome) carries.
pub const MISSED_DAYS_PAST_DUE: [i32; 7] = [1, 7, 30, 60, 90, 120, 150];
/// MISSED at this many days past due or more makes a known defaulter.
pub const DEFAULTER_DAYS_PAST_DUE: i32 = 90;

/// A social edge, valid by construction. Party ids are normalised (lowercase UUID or
/// `ext:…` as sent).
#[derive(Debug, Clone, PartialEq)]
pub struct Edge {
    pub source: String,
    pub target: String,
    pub kind: SocialEdgeKind,
    /// In the kind's unit; 1 for CONTACT and GROUP_MEMBER.
    pub weight: Decimal,
    pub occur_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Behaviour {
    pub customer_id: Uuid,
    pub flow: BehaviourFlow,
    pub category: BehaviourCategory,
    pub amount_fen: i64,
    pub occur_time: DateTime<Utc>,
    pub counterparty_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sighting {
    pub customer_id: Uuid,
    pub kind: IdentifierKind,
    pub identifier: String,
    /// UNSPECIFIED is stored as OTHER.
    pub context: SightingContext,
    pub observe_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub customer_id: Uuid,
    pub loan_id: Uuid,
    pub installment_sequence: i32,
    /// Always set for IngestSignals; unset for a loan-level outcome derived from an event
    /// that carries no due date (LoanWrittenOff).
    pub due_date: Option<NaiveDate>,
    pub outcome: RepaymentOutcomeKind,
    pub days_past_due: i32,
    pub amount_due_fen: i64,
    pub amount_paid_fen: i64,
    pub observe_time: DateTime<Utc>,
}

impl Outcome {
    /// Whether this outcome makes its customer a known defaulter (scoring.proto header).
    pub fn makes_defaulter(&self) -> bool {
        match self.outcome {
            RepaymentOutcomeKind::WrittenOff => true,
            RepaymentOutcomeKind::Missed => self.days_past_due >= DEFAULTER_DAYS_PAST_DUE,
            _ => false,
        }
    }
}

/// The signals of one batch that passed validation, by kind, in batch order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Signals {
    pub edges: Vec<Edge>,
    pub behaviours: Vec<Behaviour>,
    pub sightings: Vec<Sighting>,
    pub outcomes: Vec<Outcome>,
}

impl Signals {
    pub fn len(&self) -> usize {
        self.edges.len() + self.behaviours.len() + self.sightings.len() + self.outcomes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The graph parties whose neighbourhood features these signals may change: both
    /// ends of each edge, and each party with a repayment outcome (credit history,
    /// known defaulter). Sorted, deduplicated.
    pub fn touched_parties(&self) -> Vec<String> {
        let mut parties: Vec<String> = self
            .edges
            .iter()
            .flat_map(|edge| [edge.source.clone(), edge.target.clone()])
            .chain(self.outcomes.iter().map(|o| o.customer_id.to_string()))
            .collect();
        parties.sort_unstable();
        parties.dedup();
        parties
    }

    pub fn push(&mut self, signal: Parsed) {
        match signal {
            Parsed::Edge(edge) => self.edges.push(edge),
            Parsed::Behaviour(behaviour) => self.behaviours.push(behaviour),
            Parsed::Sighting(sighting) => self.sightings.push(sighting),
            Parsed::Outcome(outcome) => self.outcomes.push(outcome),
        }
    }
}

/// One valid signal.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Edge(Edge),
    Behaviour(Behaviour),
    Sighting(Sighting),
    Outcome(Outcome),
}

/// Why one signal was rejected: the field path and what is wrong (no PII).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub description: String,
}

type Checked<T> = Result<T, Problem>;

fn problem(field: &str, description: impl Into<String>) -> Problem {
    Problem {
        field: field.to_owned(),
        description: description.into(),
    }
}

/// A batch split into its valid signals and its rejections `(signal_index, problem)`.
pub fn parse_batch(signals: &[proto::Signal]) -> (Signals, Vec<(usize, Problem)>) {
    let mut valid = Signals::default();
    let mut rejected = Vec::new();
    for (index, signal) in signals.iter().enumerate() {
        match parse_signal(signal) {
            Ok(parsed) => valid.push(parsed),
            Err(problem) => rejected.push((index, problem)),
        }
    }
    (valid, rejected)
}

pub fn parse_signal(signal: &proto::Signal) -> Checked<Parsed> {
    match &signal.kind {
        None => Err(problem("kind", "exactly one signal kind must be set")),
        Some(Kind::SocialEdge(edge)) => parse_edge(edge).map(Parsed::Edge),
        Some(Kind::BehaviourEvent(event)) => parse_behaviour(event).map(Parsed::Behaviour),
        Some(Kind::IdentitySighting(sighting)) => parse_sighting(sighting).map(Parsed::Sighting),
        Some(Kind::RepaymentOutcome(outcome)) => parse_outcome(outcome).map(Parsed::Outcome),
    }
}

fn parse_edge(edge: &proto::SocialEdge) -> Checked<Edge> {
    let source = party_id(&edge.source_party_id)
        .ok_or_else(|| problem("social_edge.source_party_id", PARTY_ID_RULE))?;
    let target = party_id(&edge.target_party_id)
        .ok_or_else(|| problem("social_edge.target_party_id", PARTY_ID_RULE))?;
    if source == target {
        return Err(problem(
            "social_edge.target_party_id",
            "must differ from source_party_id",
        ));
    }
    let kind = match SocialEdgeKind::try_from(edge.kind) {
        Ok(SocialEdgeKind::Unspecified) | Err(_) => {
            return Err(problem(
                "social_edge.kind",
                "must be a known SocialEdgeKind",
            ));
        }
        Ok(kind) => kind,
    };
    let weight = match kind {
        SocialEdgeKind::Contact | SocialEdgeKind::GroupMember => Decimal::ONE,
        _ => decimal(&edge.weight)
            .filter(|weight| *weight > Decimal::ZERO)
            .ok_or_else(|| problem("social_edge.weight", "must be a decimal string > 0"))?,
    };
    let occur_time = time(edge.occur_time.as_ref(), "social_edge.occur_time")?;
    Ok(Edge {
        source,
        target,
        kind,
        weight,
        occur_time,
    })
}

fn parse_behaviour(event: &proto::BehaviourEvent) -> Checked<Behaviour> {
    let customer_id = uuid(&event.customer_id, "behaviour_event.customer_id")?;
    let flow = match BehaviourFlow::try_from(event.flow) {
        Ok(BehaviourFlow::Unspecified) | Err(_) => {
            return Err(problem("behaviour_event.flow", "must be INCOME or SPEND"));
        }
        Ok(flow) => flow,
    };
    let category = match BehaviourCategory::try_from(event.category) {
        Ok(BehaviourCategory::Unspecified) | Err(_) => {
            return Err(problem(
                "behaviour_event.category",
                "must be a known BehaviourCategory",
            ));
        }
        Ok(category) => category,
    };
    let amount_fen = money(event.amount.as_ref(), "behaviour_event.amount", true)?;
    let occur_time = time(event.occur_time.as_ref(), "behaviour_event.occur_time")?;
    let counterparty_id = match event.counterparty_id.as_str() {
        "" => None,
        hash if is_keyed_hash(hash) => Some(hash.to_owned()),
        _ => {
            return Err(problem(
                "behaviour_event.counterparty_id",
                "must be empty or 64 lowercase hex characters (a keyed hash)",
            ));
        }
    };
    Ok(Behaviour {
        customer_id,
        flow,
        category,
        amount_fen,
        occur_time,
        counterparty_id,
    })
}

fn parse_sighting(sighting: &proto::IdentitySighting) -> Checked<Sighting> {
    let customer_id = uuid(&sighting.customer_id, "identity_sighting.customer_id")?;
    let kind = match IdentifierKind::try_from(sighting.kind) {
        Ok(IdentifierKind::Unspecified) | Err(_) => {
            return Err(problem(
                "identity_sighting.kind",
                "must be DEVICE, PHONE or NATIONAL_ID",
            ));
        }
        Ok(kind) => kind,
    };
    let identifier = &sighting.identifier;
    let identifier_ok = match kind {
        IdentifierKind::Device => is_opaque_id(identifier),
        _ => is_keyed_hash(identifier),
    };
    if !identifier_ok {
        let rule = match kind {
            IdentifierKind::Device => "a device fingerprint must be 1-128 characters",
            _ => "must be the keyed hash: 64 lowercase hex characters",
        };
        return Err(problem("identity_sighting.identifier", rule));
    }
    let context = match SightingContext::try_from(sighting.context) {
        Ok(SightingContext::Unspecified) => SightingContext::Other,
        Ok(context) => context,
        Err(_) => {
            return Err(problem(
                "identity_sighting.context",
                "must be a known SightingContext",
            ));
        }
    };
    let observe_time = time(
        sighting.observe_time.as_ref(),
        "identity_sighting.observe_time",
    )?;
    Ok(Sighting {
        customer_id,
        kind,
        identifier: identifier.clone(),
        context,
        observe_time,
    })
}

fn parse_outcome(outcome: &proto::RepaymentOutcome) -> Checked<Outcome> {
    let customer_id = uuid(&outcome.customer_id, "repayment_outcome.customer_id")?;
    let loan_id = uuid(&outcome.loan_id, "repayment_outcome.loan_id")?;
    if outcome.installment_sequence < 1 {
        return Err(problem(
            "repayment_outcome.installment_sequence",
            "must be 1 or more",
        ));
    }
    let due_date = date(outcome.due_date.as_ref(), "repayment_outcome.due_date")?;
    let kind = match RepaymentOutcomeKind::try_from(outcome.outcome) {
        Ok(RepaymentOutcomeKind::Unspecified) | Err(_) => {
            return Err(problem(
                "repayment_outcome.outcome",
                "must be a known RepaymentOutcomeKind",
            ));
        }
        Ok(kind) => kind,
    };
    let days = outcome.days_past_due;
    let days_problem = match kind {
        RepaymentOutcomeKind::Early | RepaymentOutcomeKind::OnTime => {
            (days != 0).then_some("must be 0 for EARLY and ON_TIME")
        }
        RepaymentOutcomeKind::Late => (days < 1).then_some("must be 1 or more for LATE"),
        RepaymentOutcomeKind::Missed => (!MISSED_DAYS_PAST_DUE.contains(&days))
            .then_some("must be 1, 7, 30, 60, 90, 120 or 150 for MISSED"),
        _ => (days < 0).then_some("must not be negative"),
    };
    if let Some(rule) = days_problem {
        return Err(problem("repayment_outcome.days_past_due", rule));
    }
    let amount_due_fen = money(
        outcome.amount_due.as_ref(),
        "repayment_outcome.amount_due",
        false,
    )?;
    let amount_paid_fen = money(
        outcome.amount_paid.as_ref(),
        "repayment_outcome.amount_paid",
        false,
    )?;
    let observe_time = time(
        outcome.observe_time.as_ref(),
        "repayment_outcome.observe_time",
    )?;
    Ok(Outcome {
        customer_id,
        loan_id,
        installment_sequence: outcome.installment_sequence,
        due_date: Some(due_date),
        outcome: kind,
        days_past_due: days,
        amount_due_fen,
        amount_paid_fen,
        observe_time,
    })
}

const PARTY_ID_RULE: &str =
    "must be a customer UUID or \"ext:\" followed by an opaque id, at most 128 characters";

/// A customer UUID (normalised to lowercase) or `ext:<opaque>` (at most 128 characters).
pub fn party_id(text: &str) -> Option<String> {
    if let Some(rest) = text.strip_prefix(EXTERNAL_PARTY_PREFIX) {
        return (!rest.is_empty() && text.chars().count() <= OPAQUE_ID_CHARS_MAX)
            .then(|| text.to_owned());
    }
    parse_uuid(text).map(|id| id.to_string())
}

/// A canonical hyphenated UUID (either case).
pub fn parse_uuid(text: &str) -> Option<Uuid> {
    Uuid::try_parse(text).ok().filter(|_| text.len() == 36)
}

fn uuid(text: &str, field: &str) -> Checked<Uuid> {
    parse_uuid(text).ok_or_else(|| problem(field, "must be a UUID"))
}

fn is_opaque_id(text: &str) -> bool {
    !text.is_empty() && text.chars().count() <= OPAQUE_ID_CHARS_MAX
}

/// 64 lowercase hex characters: an HMAC-SHA256 keyed hash.
pub fn is_keyed_hash(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|byte| byte.is_ascii_digit() || (b'a'..=b'f').contains(&byte))
}

/// A decimal string in money.proto's grammar: optional "-", digits, optionally "." and
/// digits; at most 28 significant and 20 fraction digits.
pub fn decimal(text: &str) -> Option<Decimal> {
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    if !digits(whole) || fraction.is_some_and(|fraction| !digits(fraction) || fraction.len() > 20) {
        return None;
    }
    Decimal::from_str_exact(text).ok()
}

fn money(amount: Option<&Money>, field: &str, positive: bool) -> Checked<i64> {
    let amount = amount.ok_or_else(|| problem(field, "is required"))?;
    if amount.currency_code != "CNY" {
        return Err(problem(
            &format!("{field}.currency_code"),
            "must be \"CNY\"",
        ));
    }
    let bad = if positive {
        amount.minor_units <= 0
    } else {
        amount.minor_units < 0
    };
    if bad {
        let rule = if positive {
            "must be positive"
        } else {
            "must not be negative"
        };
        return Err(problem(&format!("{field}.minor_units"), rule));
    }
    Ok(amount.minor_units)
}

fn time(value: Option<&prost_types::Timestamp>, field: &str) -> Checked<DateTime<Utc>> {
    let value = value.ok_or_else(|| problem(field, "is required"))?;
    u32::try_from(value.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000)
        .and_then(|nanos| DateTime::from_timestamp(value.seconds, nanos))
        .ok_or_else(|| problem(field, "must be a valid timestamp"))
}

fn date(value: Option<&microloan_proto::google::r#type::Date>, field: &str) -> Checked<NaiveDate> {
    let value = value.ok_or_else(|| problem(field, "is required"))?;
    let month = u32::try_from(value.month).ok();
    let day = u32::try_from(value.day).ok();
    month
        .zip(day)
        .and_then(|(month, day)| NaiveDate::from_ymd_opt(value.year, month, day))
        .ok_or_else(|| problem(field, "must be a full, valid date"))
}

/// The first day of the Asia/Shanghai (UTC+8) month of `time`: behaviour's month key.
pub fn shanghai_month(time: DateTime<Utc>) -> NaiveDate {
    const SHANGHAI_OFFSET_SECONDS: i32 = 8 * 60 * 60;
    let offset = FixedOffset::east_opt(SHANGHAI_OFFSET_SECONDS).expect("valid offset");
    let local = time.with_timezone(&offset).date_naive();
    local.with_day0(0).unwrap_or(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use microloan_proto::{google::r#type::Date, scoring::v1::Signal};
    use prost_types::Timestamp;

    const CUSTOMER: &str = "0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f";
    const HASH: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn at() -> Option<Timestamp> {
        Some(Timestamp {
            seconds: 1_750_000_000,
            nanos: 0,
        })
    }

    fn cny(minor_units: i64) -> Option<Money> {
        Some(Money {
            currency_code: "CNY".into(),
            minor_units,
        })
    }

    fn edge() -> proto::SocialEdge {
        proto::SocialEdge {
            source_party_id: CUSTOMER.into(),
            target_party_id: "ext:wx-123".into(),
            kind: SocialEdgeKind::Transfer as i32,
            weight: "1250".into(),
            occur_time: at(),
        }
    }

    fn behaviour() -> proto::BehaviourEvent {
        proto::BehaviourEvent {
            customer_id: CUSTOMER.into(),
            flow: BehaviourFlow::Spend as i32,
            category: BehaviourCategory::Gambling as i32,
            amount: cny(500),
            occur_time: at(),
            counterparty_id: String::new(),
        }
    }

    fn sighting() -> proto::IdentitySighting {
        proto::IdentitySighting {
            customer_id: CUSTOMER.into(),
            kind: IdentifierKind::Phone as i32,
            identifier: HASH.into(),
            context: SightingContext::Unspecified as i32,
            observe_time: at(),
        }
    }

    fn outcome() -> proto::RepaymentOutcome {
        proto::RepaymentOutcome {
            customer_id: CUSTOMER.into(),
            loan_id: CUSTOMER.into(),
            installment_sequence: 1,
            due_date: Some(Date {
                year: 2026,
                month: 3,
                day: 15,
            }),
            outcome: RepaymentOutcomeKind::Missed as i32,
            days_past_due: 90,
            amount_due: cny(10_000),
            amount_paid: cny(0),
            observe_time: at(),
        }
    }

    fn field_of(kind: Kind) -> Option<String> {
        parse_signal(&Signal { kind: Some(kind) })
            .err()
            .map(|problem| problem.field)
    }

    #[test]
    fn valid_signals_of_each_kind_parse() {
        for kind in [
            Kind::SocialEdge(edge()),
            Kind::BehaviourEvent(behaviour()),
            Kind::IdentitySighting(sighting()),
            Kind::RepaymentOutcome(outcome()),
        ] {
            assert_eq!(field_of(kind.clone()), None, "{kind:?}");
        }
    }

    /// One row per bad input, with the field it must name.
    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(Kind, &str)> = vec![
            (
                Kind::SocialEdge(proto::SocialEdge {
                    source_party_id: "someone".into(),
                    ..edge()
                }),
                "social_edge.source_party_id",
            ),
            (
                Kind::SocialEdge(proto::SocialEdge {
                    target_party_id: format!("ext:{}", "x".repeat(125)),
                    ..edge()
                }),
                "social_edge.target_party_id",
            ),
            (
                Kind::SocialEdge(proto::SocialEdge {
                    target_party_id: CUSTOMER.to_uppercase(),
                    ..edge()
                }),
                "social_edge.target_party_id",
            ),
            (
                Kind::SocialEdge(proto::SocialEdge { kind: 0, ..edge() }),
                "social_edge.kind",
            ),
            (
                Kind::SocialEdge(proto::SocialEdge {
                    weight: "0".into(),
                    ..edge()
                }),
                "social_edge.weight",
            ),
            (
                Kind::SocialEdge(proto::SocialEdge {
                    weight: "1e3".into(),
                    ..edge()
                }),
                "social_edge.weight",
            ),
            (
                Kind::SocialEdge(proto::SocialEdge {
                    occur_time: None,
                    ..edge()
                }),
                "social_edge.occur_time",
            ),
            (
                Kind::BehaviourEvent(proto::BehaviourEvent {
                    customer_id: "nope".into(),
                    ..behaviour()
                }),
                "behaviour_event.customer_id",
            ),
            (
                Kind::BehaviourEvent(proto::BehaviourEvent {
                    flow: 0,
                    ..behaviour()
                }),
                "behaviour_event.flow",
            ),
            (
                Kind::BehaviourEvent(proto::BehaviourEvent {
                    category: 77,
                    ..behaviour()
                }),
                "behaviour_event.category",
            ),
            (
                Kind::BehaviourEvent(proto::BehaviourEvent {
                    amount: None,
                    ..behaviour()
                }),
                "behaviour_event.amount",
            ),
            (
                Kind::BehaviourEvent(proto::BehaviourEvent {
                    amount: cny(0),
                    ..behaviour()
                }),
                "behaviour_event.amount.minor_units",
            ),
            (
                Kind::BehaviourEvent(proto::BehaviourEvent {
                    amount: Some(Money {
                        currency_code: "USD".into(),
                        minor_units: 5,
                    }),
                    ..behaviour()
                }),
                "behaviour_event.amount.currency_code",
            ),
            (
                Kind::BehaviourEvent(proto::BehaviourEvent {
                    counterparty_id: HASH.to_uppercase(),
                    ..behaviour()
                }),
                "behaviour_event.counterparty_id",
            ),
            (
                Kind::IdentitySighting(proto::IdentitySighting {
                    kind: 0,
                    ..sighting()
                }),
                "identity_sighting.kind",
            ),
            (
                Kind::IdentitySighting(proto::IdentitySighting {
                    identifier: "+8613800000000".into(),
                    ..sighting()
                }),
                "identity_sighting.identifier",
            ),
            (
                Kind::IdentitySighting(proto::IdentitySighting {
                    kind: IdentifierKind::Device as i32,
                    identifier: String::new(),
                    ..sighting()
                }),
                "identity_sighting.identifier",
            ),
            (
                Kind::IdentitySighting(proto::IdentitySighting {
                    context: 42,
                    ..sighting()
                }),
                "identity_sighting.context",
            ),
            (
                Kind::RepaymentOutcome(proto::RepaymentOutcome {
                    loan_id: String::new(),
                    ..outcome()
                }),
                "repayment_outcome.loan_id",
            ),
            (
                Kind::RepaymentOutcome(proto::RepaymentOutcome {
                    installment_sequence: 0,
                    ..outcome()
                }),
                "repayment_outcome.installment_sequence",
            ),
            (
                Kind::RepaymentOutcome(proto::RepaymentOutcome {
                    due_date: Some(Date {
                        year: 2026,
                        month: 2,
                        day: 30,
                    }),
                    ..outcome()
                }),
                "repayment_outcome.due_date",
            ),
            (
                Kind::RepaymentOutcome(proto::RepaymentOutcome {
                    days_past_due: 45,
                    ..outcome()
                }),
                "repayment_outcome.days_past_due",
            ),
            (
                Kind::RepaymentOutcome(proto::RepaymentOutcome {
                    outcome: RepaymentOutcomeKind::OnTime as i32,
                    ..outcome()
                }),
                "repayment_outcome.days_past_due",
            ),
            (
                Kind::RepaymentOutcome(proto::RepaymentOutcome {
                    amount_paid: cny(-1),
                    ..outcome()
                }),
                "repayment_outcome.amount_paid.minor_units",
            ),
        ];
        for (kind, field) in cases {
            assert_eq!(field_of(kind.clone()).as_deref(), Some(field), "{kind:?}");
        }
        assert_eq!(
            parse_signal(&Signal { kind: None }).map_err(|p| p.field),
            Err("kind".to_owned())
        );
    }

    #[test]
    fn standing_relations_ignore_the_weight_and_ids_are_normalised() {
        let parsed = parse_signal(&Signal {
            kind: Some(Kind::SocialEdge(proto::SocialEdge {
                kind: SocialEdgeKind::Contact as i32,
                weight: "garbage".into(),
                source_party_id: CUSTOMER.to_uppercase(),
                ..edge()
            })),
        });
        let Ok(Parsed::Edge(edge)) = parsed else {
            panic!("{parsed:?}")
        };
        assert_eq!(edge.weight, Decimal::ONE);
        assert_eq!(edge.source, CUSTOMER);
    }

    #[test]
    fn missed_at_90_days_and_write_offs_make_defaulters() {
        let Ok(Parsed::Outcome(mut outcome)) = parse_signal(&Signal {
            kind: Some(Kind::RepaymentOutcome(outcome())),
        }) else {
            panic!("valid")
        };
        assert!(outcome.makes_defaulter());
        outcome.days_past_due = 60;
        assert!(!outcome.makes_defaulter());
        outcome.outcome = RepaymentOutcomeKind::WrittenOff;
        assert!(outcome.makes_defaulter());
    }

    #[test]
    fn months_are_shanghai_months() {
        // 2026-01-31T16:30Z is 2026-02-01 00:30 in Shanghai.
        let time = DateTime::parse_from_rfc3339("2026-01-31T16:30:00Z")
            .expect("time")
            .with_timezone(&Utc);
        assert_eq!(
            shanghai_month(time),
            NaiveDate::from_ymd_opt(2026, 2, 1).expect("date")
        );
    }
}
