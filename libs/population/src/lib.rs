//! A seeded synthetic population of micro-loan applicants (DESIGN §5, issue #9,
//! docs/scoring-population.md): each person has a hidden default risk; income,
//! spending behaviour, credit history and the application's outcome are drawn from it;
//! a social graph clusters risk in communities (homophily: most contacts are inside
//! one's community, whose members share a risk component); a few fraud rings share
//! devices and phones.
//!
//! Everything is plain data ([`Population`]) and deterministic in the seed: the same
//! [`PopulationConfig`] gives the same population, byte for byte, on every machine (see
//! [`draw`]). [`Population::observed_signals`] expresses what a lender could observe
//! before the application as scoring.proto `Signal`s (for `IngestSignals`);
//! [`Population::future_signals`] the application loan's repayment outcomes, after it.
//! The label — [`Person::defaults`] — is whether the application loan reaches 90 days
//! past due; nothing observed before the application is derived from it.
#![forbid(unsafe_code)]

pub mod draw;
mod rename;
mod signals;

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use microloan_proto::scoring::v1::{
    BehaviourCategory, BehaviourFlow, IdentifierKind, RepaymentOutcomeKind, SightingContext,
    SocialEdgeKind,
};
use uuid::Uuid;

pub use draw::{Draw, logistic};
pub use signals::{batches, to_signal};

/// Every knob of the generator; [`PopulationConfig::new`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct PopulationConfig {
    pub seed: u64,
    pub customers: usize,
    /// Mean members per community (communities are drawn uniformly, so sizes vary).
    pub community_size_mean: usize,
    /// Latent log-odds of default = base + community effect + individual effect.
    pub base_log_odds: f64,
    /// Standard deviation of the community effect (shared by the members: homophily).
    pub community_risk_sd: f64,
    /// Standard deviation of the individual effect.
    pub individual_risk_sd: f64,
    /// How strongly income and spending follow the risk: the standardised latent risk
    /// is multiplied by this before it shifts each behaviour (0: behaviour is noise).
    pub behaviour_risk_weight: f64,
    /// Contacts each person adds inside their community.
    pub contacts_within: usize,
    /// Contacts each person adds anywhere in the population.
    pub contacts_across: usize,
    /// Non-customer (`ext:`) contacts each person adds, from a pool per community.
    pub external_contacts: usize,
    pub fraud_rings: usize,
    pub fraud_ring_size: usize,
    /// Added to a ring member's latent log-odds.
    pub fraud_log_odds_boost: f64,
    /// Share of people sharing a household device with a community member.
    pub household_device_share: f64,
    /// Share of people with earlier loans (the others are thin files).
    pub history_share: f64,
    /// Months of income and spend before the application.
    pub behaviour_months: u32,
    /// When everyone applies: every observed signal is before it, every outcome of the
    /// application loan after it.
    pub application_time: DateTime<Utc>,
}

impl PopulationConfig {
    /// The defaults (docs/scoring-population.md) for `customers` people from `seed`.
    pub fn new(seed: u64, customers: usize) -> Self {
        Self {
            seed,
            customers,
            community_size_mean: 50,
            base_log_odds: -2.9,
            community_risk_sd: 1.6,
            individual_risk_sd: 0.5,
            behaviour_risk_weight: 0.4,
            contacts_within: 8,
            contacts_across: 1,
            external_contacts: 1,
            fraud_rings: customers / 1_000,
            fraud_ring_size: 6,
            fraud_log_odds_boost: 3.0,
            household_device_share: 0.04,
            history_share: 0.6,
            behaviour_months: 12,
            application_time: DateTime::from_timestamp(1_782_864_000, 0)
                .expect("2026-07-01T00:00:00Z"),
        }
    }
}

/// What the loan applied for is for: about 70% consumption, 20% small business, the rest
/// the other purposes. (common/v1/loan.proto has no purpose enum; this is the
/// population's own.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LoanPurpose {
    Consumption,
    SmallBusiness,
    Education,
    Medical,
    HomeImprovement,
    Other,
}

impl LoanPurpose {
    /// Each purpose with its share of applications (summing to 1).
    pub const MIX: [(LoanPurpose, f64); 6] = [
        (LoanPurpose::Consumption, 0.70),
        (LoanPurpose::SmallBusiness, 0.20),
        (LoanPurpose::Education, 0.04),
        (LoanPurpose::Medical, 0.03),
        (LoanPurpose::HomeImprovement, 0.02),
        (LoanPurpose::Other, 0.01),
    ];
}

/// How a person earns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncomeKind {
    /// One monthly salary from one employer, nearly the same every month.
    Salary,
    /// Several business or personal-transfer receipts a month, varying, some months none.
    Irregular,
}

/// One applicant. The risk fields are hidden from the lender: only the signals are seen.
#[derive(Debug, Clone, PartialEq)]
pub struct Person {
    pub customer_id: Uuid,
    pub community: u32,
    /// The community's shared risk effect (hidden).
    pub community_effect: f64,
    /// Latent log-odds of default (hidden): base + community + individual (+ fraud).
    pub latent_log_odds: f64,
    /// logistic(latent_log_odds) (hidden).
    pub default_probability: f64,
    pub income_kind: IncomeKind,
    /// Typical monthly income (fen).
    pub monthly_income_fen: i64,
    pub purpose: LoanPurpose,
    pub fraud_ring: Option<u32>,
    /// Own device fingerprints (a household or ring device appears in the sightings only).
    pub devices: Vec<String>,
    pub phone_hash: String,
    pub national_id_hash: String,
    /// Earlier loans (their outcomes are in [`Population::history`]).
    pub prior_loans: Vec<Uuid>,
    /// Whether the history before the application makes a known defaulter.
    pub known_defaulter: bool,
    /// The loan applied for at the application time.
    pub application_loan_id: Uuid,
    /// The label: the application loan reaches 90 days past due.
    pub defaults: bool,
}

/// A directed interaction (scoring.proto `SocialEdge`); `weight` in the kind's unit.
#[derive(Debug, Clone, PartialEq)]
pub struct SocialEdge {
    pub source_party_id: String,
    pub target_party_id: String,
    pub kind: SocialEdgeKind,
    pub weight: i64,
    pub occur_time: DateTime<Utc>,
}

/// scoring.proto `BehaviourEvent`.
#[derive(Debug, Clone, PartialEq)]
pub struct BehaviourEvent {
    pub customer_id: Uuid,
    pub flow: BehaviourFlow,
    pub category: BehaviourCategory,
    pub amount_fen: i64,
    pub occur_time: DateTime<Utc>,
    /// A 64-hex keyed hash, or `None`.
    pub counterparty_id: Option<String>,
}

/// scoring.proto `IdentitySighting`.
#[derive(Debug, Clone, PartialEq)]
pub struct IdentitySighting {
    pub customer_id: Uuid,
    pub kind: IdentifierKind,
    pub identifier: String,
    pub context: SightingContext,
    pub observe_time: DateTime<Utc>,
}

/// scoring.proto `RepaymentOutcome`.
#[derive(Debug, Clone, PartialEq)]
pub struct RepaymentOutcome {
    pub customer_id: Uuid,
    pub loan_id: Uuid,
    pub installment_sequence: i32,
    pub due_date: NaiveDate,
    pub outcome: RepaymentOutcomeKind,
    pub days_past_due: i32,
    pub amount_due_fen: i64,
    pub amount_paid_fen: i64,
    pub observe_time: DateTime<Utc>,
}

/// One signal of the population, before it becomes a proto message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SignalRef<'a> {
    Edge(&'a SocialEdge),
    Behaviour(&'a BehaviourEvent),
    Sighting(&'a IdentitySighting),
    Outcome(&'a RepaymentOutcome),
}

/// The generated population.
#[derive(Debug, Clone, PartialEq)]
pub struct Population {
    pub config: PopulationConfig,
    pub people: Vec<Person>,
    pub edges: Vec<SocialEdge>,
    pub behaviour: Vec<BehaviourEvent>,
    pub sightings: Vec<IdentitySighting>,
    /// Outcomes of the earlier loans, all observed before the application.
    pub history: Vec<RepaymentOutcome>,
    /// Outcomes of the application loans, all after the application.
    pub future: Vec<RepaymentOutcome>,
}

/// The days past due an overdue instalment is reported at (scoring.proto).
const MISSED_DAYS: [i32; 7] = [1, 7, 30, 60, 90, 120, 150];
/// Days past due at write-off.
const WRITE_OFF_DAYS: i32 = 180;
/// Days in a generated month (instalment periods, behaviour months).
const MONTH_DAYS: i64 = 30;
/// Distinct employers and other lenders people deal with.
const EMPLOYERS: usize = 400;
const LENDERS: usize = 24;
/// Non-customer parties per community.
const EXTERNAL_POOL: usize = 4;

/// Generation steps, one random stream each.
#[derive(Clone, Copy)]
enum Step {
    People = 1,
    Graph = 2,
    Identity = 3,
    Behaviour = 4,
    History = 5,
    Future = 6,
}

impl Population {
    /// Generates the population of `config`. Cost: O(customers · (contacts + months +
    /// instalments)); 10,000 people take well under a second in release.
    pub fn generate(config: &PopulationConfig) -> Population {
        let stream = |step: Step| Draw::new(config.seed, step as u64);
        let mut people = people(config, &mut stream(Step::People));
        let edges = graph(config, &people, &mut stream(Step::Graph));
        let sightings = identity(config, &people, &mut stream(Step::Identity));
        let behaviour = behaviour(config, &people, &mut stream(Step::Behaviour));
        let history = history(config, &mut people, &mut stream(Step::History));
        let future = future(config, &mut people, &mut stream(Step::Future));
        Population {
            config: config.clone(),
            people,
            edges,
            behaviour,
            sightings,
            history,
            future,
        }
    }

    /// Everything observable before the application, in a fixed order: sightings,
    /// edges, behaviour, then the earlier loans' outcomes.
    pub fn observed(&self) -> impl Iterator<Item = SignalRef<'_>> {
        self.sightings
            .iter()
            .map(SignalRef::Sighting)
            .chain(self.edges.iter().map(SignalRef::Edge))
            .chain(self.behaviour.iter().map(SignalRef::Behaviour))
            .chain(self.history.iter().map(SignalRef::Outcome))
    }

    /// [`Population::observed`] as scoring.proto signals.
    pub fn observed_signals(&self) -> Vec<microloan_proto::scoring::v1::Signal> {
        self.observed().map(to_signal).collect()
    }

    /// The application loans' outcomes as scoring.proto signals.
    pub fn future_signals(&self) -> Vec<microloan_proto::scoring::v1::Signal> {
        self.future
            .iter()
            .map(|outcome| to_signal(SignalRef::Outcome(outcome)))
            .collect()
    }

    /// Share of people whose application loan defaults.
    pub fn default_rate(&self) -> f64 {
        let bad = self.people.iter().filter(|person| person.defaults).count();
        bad as f64 / self.people.len().max(1) as f64
    }
}

fn people(config: &PopulationConfig, draw: &mut Draw) -> Vec<Person> {
    let count = config.customers;
    let communities = count.div_ceil(config.community_size_mean.max(1)).max(1);
    let effects: Vec<f64> = (0..communities)
        .map(|_| config.community_risk_sd * draw.normal())
        .collect();
    let mut people: Vec<Person> = (0..count)
        .map(|_| {
            let community = draw.below(communities);
            let individual = config.individual_risk_sd * draw.normal();
            let latent = config.base_log_odds + effects[community] + individual;
            let purpose = pick_purpose(draw.unit());
            let devices = (0..if draw.chance(0.3) { 2 } else { 1 })
                .map(|_| format!("dev-{}", draw.hex(12)))
                .collect();
            Person {
                customer_id: draw.uuid(),
                community: community as u32,
                community_effect: effects[community],
                latent_log_odds: latent,
                default_probability: 0.0,
                income_kind: IncomeKind::Salary,
                monthly_income_fen: 0,
                purpose,
                fraud_ring: None,
                devices,
                phone_hash: draw.hex(32),
                national_id_hash: draw.hex(32),
                prior_loans: Vec::new(),
                known_defaulter: false,
                application_loan_id: draw.uuid(),
                defaults: false,
            }
        })
        .collect();
    // Fraud rings: members recruited across communities, riskier than their community.
    let mut taken = BTreeSet::new();
    for ring in 0..config.fraud_rings {
        let mut members = 0;
        let mut attempts = 0;
        while members < config.fraud_ring_size && attempts < 100 * config.fraud_ring_size {
            attempts += 1;
            let index = draw.below(count);
            if taken.insert(index) {
                people[index].fraud_ring = Some(ring as u32);
                people[index].latent_log_odds += config.fraud_log_odds_boost;
                members += 1;
            }
        }
    }
    let spread = (config.community_risk_sd.powi(2) + config.individual_risk_sd.powi(2))
        .sqrt()
        .max(1e-9);
    for person in &mut people {
        person.default_probability = logistic(person.latent_log_odds);
        // Standardised risk: what behaviour is drawn from.
        let risk =
            config.behaviour_risk_weight * (person.latent_log_odds - config.base_log_odds) / spread;
        person.income_kind = if draw.normal() + 0.6 * risk < 0.5 {
            IncomeKind::Salary
        } else {
            IncomeKind::Irregular
        };
        let log_income = (7_000.0f64).ln() - 0.2 * risk + 0.45 * draw.normal();
        person.monthly_income_fen = (log_income.exp() * 100.0).round().max(50_000.0) as i64;
    }
    people
}

fn pick_purpose(unit: f64) -> LoanPurpose {
    let mut cumulative = 0.0;
    for (purpose, share) in LoanPurpose::MIX {
        cumulative += share;
        if unit < cumulative {
            return purpose;
        }
    }
    LoanPurpose::Other
}

/// A time uniformly within the `days` before `end`.
fn before(draw: &mut Draw, end: DateTime<Utc>, days: i64) -> DateTime<Utc> {
    end - Duration::seconds(draw.between(1, days * 86_400))
}

fn graph(config: &PopulationConfig, people: &[Person], draw: &mut Draw) -> Vec<SocialEdge> {
    let communities = people
        .iter()
        .map(|person| person.community as usize + 1)
        .max()
        .unwrap_or(0);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); communities];
    for (index, person) in people.iter().enumerate() {
        members[person.community as usize].push(index);
    }
    let external: Vec<Vec<String>> = (0..communities)
        .map(|_| {
            (0..EXTERNAL_POOL)
                .map(|_| format!("ext:{}", draw.hex(12)))
                .collect()
        })
        .collect();
    let window_days = 180;
    let end = config.application_time;
    let mut edges = Vec::new();
    let id = |index: usize| people[index].customer_id.to_string();
    for (index, person) in people.iter().enumerate() {
        let own = &members[person.community as usize];
        let mut contacts = BTreeSet::new();
        if own.len() > 1 {
            for _ in 0..config.contacts_within {
                let other = own[draw.below(own.len())];
                if other != index {
                    contacts.insert(other);
                }
            }
        }
        for _ in 0..config.contacts_across {
            let other = draw.below(people.len());
            if other != index {
                contacts.insert(other);
            }
        }
        for other in contacts {
            let (source, target) = (id(index), id(other));
            let mut push = |kind, weight, draw: &mut Draw| {
                edges.push(SocialEdge {
                    source_party_id: source.clone(),
                    target_party_id: target.clone(),
                    kind,
                    weight,
                    occur_time: before(draw, end, window_days),
                });
            };
            push(SocialEdgeKind::Contact, 1, draw);
            if draw.chance(0.6) {
                let messages = draw.between(1, 60);
                push(SocialEdgeKind::Message, messages, draw);
            }
            if draw.chance(0.3) {
                let calls = draw.between(1, 10);
                push(SocialEdgeKind::Call, calls, draw);
            }
            if draw.chance(0.15) {
                let fen = draw.between(1_000, 200_000);
                push(SocialEdgeKind::Transfer, fen, draw);
            }
            if draw.chance(0.1) {
                let fen = draw.between(88, 20_000);
                push(SocialEdgeKind::RedPacket, fen, draw);
            }
            if draw.chance(0.2) {
                push(SocialEdgeKind::GroupMember, 1, draw);
            }
        }
        let pool = &external[person.community as usize];
        for _ in 0..config.external_contacts {
            edges.push(SocialEdge {
                source_party_id: id(index),
                target_party_id: pool[draw.below(pool.len())].clone(),
                kind: SocialEdgeKind::Message,
                weight: draw.between(1, 30),
                occur_time: before(draw, end, window_days),
            });
        }
    }
    // Ring members talk to each other.
    let rings = people.iter().filter_map(|p| p.fraud_ring).max();
    for ring in 0..rings.map_or(0, |max| max + 1) {
        let ring_members: Vec<usize> = (0..people.len())
            .filter(|index| people[*index].fraud_ring == Some(ring))
            .collect();
        for pair in ring_members.windows(2) {
            edges.push(SocialEdge {
                source_party_id: id(pair[0]),
                target_party_id: id(pair[1]),
                kind: SocialEdgeKind::Message,
                weight: draw.between(5, 80),
                occur_time: before(draw, end, 60),
            });
        }
    }
    edges
}

fn identity(
    config: &PopulationConfig,
    people: &[Person],
    draw: &mut Draw,
) -> Vec<IdentitySighting> {
    let end = config.application_time;
    let history_days = i64::from(config.behaviour_months) * MONTH_DAYS;
    let mut sightings = Vec::new();
    let mut see = |customer_id: Uuid, kind, identifier: &str, context, time| {
        sightings.push(IdentitySighting {
            customer_id,
            kind,
            identifier: identifier.to_owned(),
            context,
            observe_time: time,
        });
    };
    for person in people {
        let onboarding = before(draw, end, history_days);
        let id = person.customer_id;
        see(
            id,
            IdentifierKind::NationalId,
            &person.national_id_hash,
            SightingContext::Onboarding,
            onboarding,
        );
        see(
            id,
            IdentifierKind::Phone,
            &person.phone_hash,
            SightingContext::Onboarding,
            onboarding,
        );
        for (index, device) in person.devices.iter().enumerate() {
            let context = if index == 0 {
                SightingContext::Onboarding
            } else {
                SightingContext::Login
            };
            see(id, IdentifierKind::Device, device, context, onboarding);
            see(
                id,
                IdentifierKind::Device,
                device,
                SightingContext::Login,
                before(draw, end, 30),
            );
        }
    }
    // Households: a person logs in on a community member's device.
    let communities = people
        .iter()
        .map(|p| p.community as usize + 1)
        .max()
        .unwrap_or(0);
    let mut members: Vec<Vec<usize>> = vec![Vec::new(); communities];
    for (index, person) in people.iter().enumerate() {
        members[person.community as usize].push(index);
    }
    for (index, person) in people.iter().enumerate() {
        if !draw.chance(config.household_device_share) {
            continue;
        }
        let own = &members[person.community as usize];
        let mate = own[draw.below(own.len())];
        if mate != index {
            let time = before(draw, end, 90);
            see(
                person.customer_id,
                IdentifierKind::Device,
                &people[mate].devices[0],
                SightingContext::Login,
                time,
            );
        }
    }
    // Fraud rings: every member on the ring's devices, about half on its phone.
    let rings = people.iter().filter_map(|p| p.fraud_ring).max();
    for ring in 0..rings.map_or(0, |max| max + 1) {
        let devices = [
            format!("dev-{}", draw.hex(12)),
            format!("dev-{}", draw.hex(12)),
        ];
        let phone = draw.hex(32);
        for person in people.iter().filter(|p| p.fraud_ring == Some(ring)) {
            for device in &devices {
                let time = before(draw, end, 60);
                see(
                    person.customer_id,
                    IdentifierKind::Device,
                    device,
                    SightingContext::Application,
                    time,
                );
            }
            if draw.chance(0.5) {
                let time = before(draw, end, 60);
                see(
                    person.customer_id,
                    IdentifierKind::Phone,
                    &phone,
                    SightingContext::Application,
                    time,
                );
            }
        }
    }
    sightings
}

fn behaviour(config: &PopulationConfig, people: &[Person], draw: &mut Draw) -> Vec<BehaviourEvent> {
    use BehaviourCategory as C;
    const ESSENTIALS: [BehaviourCategory; 10] = [
        C::Groceries,
        C::Dining,
        C::Transport,
        C::Utilities,
        C::Housing,
        C::Education,
        C::Healthcare,
        C::Shopping,
        C::Travel,
        C::Entertainment,
    ];
    const RISKY: [BehaviourCategory; 4] = [C::Gambling, C::Lottery, C::Crypto, C::CashOut];
    let employers: Vec<String> = (0..EMPLOYERS).map(|_| draw.hex(32)).collect();
    let lenders: Vec<String> = (0..LENDERS).map(|_| draw.hex(32)).collect();
    let spread = (config.community_risk_sd.powi(2) + config.individual_risk_sd.powi(2))
        .sqrt()
        .max(1e-9);
    let mut events = Vec::new();
    for person in people {
        let risk =
            config.behaviour_risk_weight * (person.latent_log_odds - config.base_log_odds) / spread;
        let customer_id = person.customer_id;
        let employer = employers[draw.below(EMPLOYERS)].clone();
        let spend_ratio = 0.55 + 0.35 * draw.unit();
        let spend_sd = (0.18f64.ln() + 0.35 * risk + 0.3 * draw.normal()).exp();
        let risky_share = logistic(-3.2 + 0.8 * risk + 0.9 * draw.normal());
        let lender_count = (-1.0 + 0.7 * risk + 0.6 * draw.normal()).exp().floor() as usize;
        let own_lenders: Vec<&String> = (0..lender_count.min(LENDERS))
            .map(|_| &lenders[draw.below(LENDERS)])
            .collect();
        let gap_chance = 0.06 + 0.06 * risk.max(0.0);
        let income = person.monthly_income_fen as f64;
        for month in 0..i64::from(config.behaviour_months) {
            let start = config.application_time - Duration::days(MONTH_DAYS * (month + 1));
            let within = |draw: &mut Draw| {
                start + Duration::seconds(draw.between(0, MONTH_DAYS * 86_400 - 1))
            };
            match person.income_kind {
                IncomeKind::Salary => {
                    let amount = income * (1.0 + 0.04 * draw.normal());
                    events.push(BehaviourEvent {
                        customer_id,
                        flow: BehaviourFlow::Income,
                        category: C::Salary,
                        amount_fen: (amount.round() as i64).max(100),
                        occur_time: within(draw),
                        counterparty_id: Some(employer.clone()),
                    });
                }
                IncomeKind::Irregular => {
                    if !draw.chance(gap_chance) {
                        let total = income * (0.45 * draw.normal() - 0.1).exp();
                        for part in [0.6, 0.4] {
                            let category = if draw.chance(0.7) {
                                C::BusinessIncome
                            } else {
                                C::PersonalTransfer
                            };
                            events.push(BehaviourEvent {
                                customer_id,
                                flow: BehaviourFlow::Income,
                                category,
                                amount_fen: ((total * part).round() as i64).max(100),
                                occur_time: within(draw),
                                counterparty_id: None,
                            });
                        }
                    }
                }
            }
            let spend = income * spend_ratio * (spend_sd * draw.normal()).exp();
            let essential = spend * (1.0 - risky_share);
            for part in [0.55, 0.45] {
                events.push(BehaviourEvent {
                    customer_id,
                    flow: BehaviourFlow::Spend,
                    category: ESSENTIALS[draw.below(ESSENTIALS.len())],
                    amount_fen: ((essential * part).round() as i64).max(100),
                    occur_time: within(draw),
                    counterparty_id: None,
                });
            }
            let risky = spend * risky_share;
            if risky >= 1_000.0 {
                let (category, counterparty_id) = if !own_lenders.is_empty() && draw.chance(0.5) {
                    let lender = own_lenders[draw.below(own_lenders.len())];
                    (C::OtherLender, Some(lender.clone()))
                } else {
                    (RISKY[draw.below(RISKY.len())], None)
                };
                events.push(BehaviourEvent {
                    customer_id,
                    flow: BehaviourFlow::Spend,
                    category,
                    amount_fen: risky.round() as i64,
                    occur_time: within(draw),
                    counterparty_id,
                });
            }
        }
    }
    events
}

/// A loan's schedule: `term` monthly instalments of `instalment_fen` from `first_due`.
struct Schedule {
    customer_id: Uuid,
    loan_id: Uuid,
    first_due: NaiveDate,
    term: i32,
    instalment_fen: i64,
}

/// The outcomes of one loan: paid (each instalment on time, early or late by the
/// `late_chance`) or defaulting from instalment `default_from` on (each overdue one
/// reported at 1, 7, 30, 60, 90, 120, 150 days, then written off at 180). Only what
/// happens before `until` is reported.
fn loan_outcomes(
    schedule: &Schedule,
    default_from: Option<i32>,
    late_chance: f64,
    until: DateTime<Utc>,
    draw: &mut Draw,
    out: &mut Vec<RepaymentOutcome>,
) {
    let noon = |date: NaiveDate| date.and_hms_opt(12, 0, 0).expect("noon").and_utc();
    for sequence in 1..=schedule.term {
        let due_date = schedule.first_due + Duration::days(MONTH_DAYS * i64::from(sequence - 1));
        let due_time = noon(due_date);
        let report = |outcome, days: i32, paid: i64, out: &mut Vec<RepaymentOutcome>| {
            let observe_time = due_time + Duration::days(i64::from(days))
                - Duration::days(i64::from(outcome == RepaymentOutcomeKind::Early) * 3);
            if observe_time < until {
                out.push(RepaymentOutcome {
                    customer_id: schedule.customer_id,
                    loan_id: schedule.loan_id,
                    installment_sequence: sequence,
                    due_date,
                    outcome,
                    days_past_due: days,
                    amount_due_fen: schedule.instalment_fen,
                    amount_paid_fen: paid,
                    observe_time,
                });
            }
        };
        if default_from.is_some_and(|from| sequence >= from) {
            for days in MISSED_DAYS {
                report(RepaymentOutcomeKind::Missed, days, 0, out);
            }
            report(RepaymentOutcomeKind::WrittenOff, WRITE_OFF_DAYS, 0, out);
        } else if draw.chance(late_chance) {
            let late_days = draw.between(2, 40) as i32;
            for days in MISSED_DAYS.iter().copied().filter(|days| *days < late_days) {
                report(RepaymentOutcomeKind::Missed, days, 0, out);
            }
            report(
                RepaymentOutcomeKind::Late,
                late_days,
                schedule.instalment_fen,
                out,
            );
        } else if draw.chance(0.2) {
            report(RepaymentOutcomeKind::Early, 0, schedule.instalment_fen, out);
        } else {
            report(
                RepaymentOutcomeKind::OnTime,
                0,
                schedule.instalment_fen,
                out,
            );
        }
    }
}

fn new_schedule(person: &Person, loan_id: Uuid, first_due: NaiveDate, draw: &mut Draw) -> Schedule {
    let term = [3, 6, 6, 12][draw.below(4)];
    // 1,000–20,000 CNY at 0.05%/day: principal / term plus a month's interest.
    let principal_fen = draw.between(1_000, 20_000) * 100;
    let instalment_fen = principal_fen / i64::from(term) + principal_fen * 15 / 1_000;
    Schedule {
        customer_id: person.customer_id,
        loan_id,
        first_due,
        term,
        instalment_fen,
    }
}

/// Earlier loans, started 6 to 24 months before the application, with the person's
/// risk; their outcomes up to the application are observed.
fn history(
    config: &PopulationConfig,
    people: &mut [Person],
    draw: &mut Draw,
) -> Vec<RepaymentOutcome> {
    let mut outcomes = Vec::new();
    let application = config.application_time;
    for person in people.iter_mut() {
        if !draw.chance(config.history_share) {
            continue;
        }
        let loans = draw.between(1, 3);
        for _ in 0..loans {
            let loan_id = draw.uuid();
            let start_days = draw.between(6 * MONTH_DAYS, 24 * MONTH_DAYS);
            let first_due = (application - Duration::days(start_days - MONTH_DAYS)).date_naive();
            let schedule = new_schedule(person, loan_id, first_due, draw);
            let default_from = draw
                .chance(person.default_probability)
                .then(|| draw.between(1, i64::from(schedule.term)) as i32);
            let late_chance = (0.6 * person.default_probability).min(0.5);
            let start = outcomes.len();
            loan_outcomes(
                &schedule,
                default_from,
                late_chance,
                application,
                draw,
                &mut outcomes,
            );
            person.known_defaulter |= outcomes[start..].iter().any(|outcome| {
                outcome.outcome == RepaymentOutcomeKind::WrittenOff
                    || (outcome.outcome == RepaymentOutcomeKind::Missed
                        && outcome.days_past_due >= 90)
            });
            person.prior_loans.push(loan_id);
        }
    }
    outcomes
}

/// The application loans: the first instalment falls due a month after the
/// application; the label is whether the loan defaults, drawn from the hidden risk.
fn future(
    config: &PopulationConfig,
    people: &mut [Person],
    draw: &mut Draw,
) -> Vec<RepaymentOutcome> {
    let mut outcomes = Vec::new();
    let application = config.application_time;
    let first_due = (application + Duration::days(MONTH_DAYS)).date_naive();
    let horizon = application + Duration::days(MONTH_DAYS * 24);
    for person in people.iter_mut() {
        let schedule = new_schedule(person, person.application_loan_id, first_due, draw);
        person.defaults = draw.chance(person.default_probability);
        let default_from = person
            .defaults
            .then(|| draw.between(1, i64::from(schedule.term)) as i32);
        let late_chance = (0.6 * person.default_probability).min(0.5);
        loan_outcomes(
            &schedule,
            default_from,
            late_chance,
            horizon,
            draw,
            &mut outcomes,
        );
    }
    outcomes
}

#[cfg(test)]
mod tests;
