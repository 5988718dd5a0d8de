//! Evaluate, ExplainDecision and GetModelInfo (scoring.proto; docs/scoring-decisions.md).
//!
//! Evaluate, in one transaction: claim the request_id; record the context's identifiers
//! as sightings; read the customer's features; score them; run the anti-fraud rules
//! (FraudFlag order); then the score cut-off and the policy rules in their documented
//! order (KNOWN_DEFAULTER, OVERDUE_INSTALLMENTS, THIN_FILE, the limit steps,
//! LIMIT_BELOW_MINIMUM, NO_LIMIT_INCREASE); store the decision with its explanation and
//! the response. Outcome: DECLINED if a declining rule fired, else MANUAL_REVIEW if a
//! review rule fired, else APPROVED.

use std::sync::Arc;

use chrono::Utc;
use microloan_domain::loan::headline_apr;
use microloan_platform::{
    cache::Cache,
    convert::timestamp,
    idempotency::{self, IdempotencyError, RequestKey},
};
use microloan_proto::{
    common::v1::{DecisionOutcome, DecisionPurpose, Money, ReasonCode, RiskGrade},
    scoring::v1::{
        Decision, EvaluateRequest, EvaluateResponse, ExplainDecisionRequest,
        ExplainDecisionResponse, FeatureContribution, FeatureGroup, FraudCheck,
        GetModelInfoRequest, GetModelInfoResponse, GradeBand as GradeBandProto, IdentifierKind,
        ModelFeature, ModelInfo, PsiStatus, ScorecardBin, ScorecardScaling as ScalingProto,
    },
};
use prost::Message;
use sqlx::PgPool;
use uuid::Uuid;

use crate::{
    error::ScoringError,
    features::{
        FeatureValues, FeatureVector, assemble_local, cache::GraphCache, social::local_features,
    },
    fraud::{self, FraudConfig, Subject},
    group_commit::DecisionWriter,
    model::binning::BinRule,
    policy::{self, PolicyConfig, cny},
    scorer::{ActiveModel, ModelState, Scored, bin_label},
    signals::{Sighting, Signals, is_keyed_hash, parse_uuid},
    store::{
        decisions::{self as store, KeyedDecision, NewDecision},
        features::{CustomerInputs, DrawdownWindows, KeyLookup, customer_inputs, neighbourhood},
        signals::{Locking, apply_signals_locking, has_new_link},
    },
};

/// A decision carries at most this many reasons (credit.proto).
pub const REASONS_MAX: usize = 4;
/// Longest device fingerprint (scoring.proto EvaluationContext).
const DEVICE_CHARS_MAX: usize = 128;
/// Smallest bin share the PSI counts with (an empty band would make it infinite).
const PSI_SHARE_FLOOR: f64 = 1e-4;

/// Everything the decision RPCs need.
#[derive(Debug, Clone)]
pub struct Decisions {
    pool: PgPool,
    counters: fraud::Counters,
    model: ModelState,
    policy: PolicyConfig,
    fraud: FraudConfig,
    /// The neighbourhood features between changes (features::cache).
    graph: GraphCache,
    /// Stores the decisions made without a transaction, in batches (group_commit).
    writer: DecisionWriter,
}

/// An Evaluate request that passed validation.
#[derive(Debug, Clone)]
struct Valid {
    customer_id: Uuid,
    purpose: DecisionPurpose,
    annual_income_fen: Option<i64>,
    requested_limit_fen: Option<i64>,
    current_limit_fen: Option<i64>,
    drawdown_amount_fen: Option<i64>,
}

fn cny_money(fen: i64) -> Money {
    Money {
        currency_code: "CNY".to_owned(),
        minor_units: fen,
    }
}

/// An optional amount: set → CNY and ≥ 0 (> 0 when `positive`).
fn amount(
    violations: &mut Vec<(String, String)>,
    field: &str,
    money: Option<&Money>,
    positive: bool,
) -> Option<i64> {
    let money = money?;
    match microloan_domain::Money::parse(&money.currency_code, money.minor_units) {
        Err(err) => {
            violations.push((field.to_owned(), err.to_string()));
            None
        }
        Ok(_) if positive && money.minor_units == 0 => {
            violations.push((field.to_owned(), "must be greater than 0".to_owned()));
            None
        }
        Ok(_) => Some(money.minor_units),
    }
}

fn validate(request: &EvaluateRequest) -> Result<Valid, ScoringError> {
    let mut violations: Vec<(String, String)> = Vec::new();
    if let Some(problem) = idempotency::request_id_problem(&request.request_id) {
        violations.push(("request_id".into(), problem.into()));
    }
    let customer_id = parse_uuid(&request.customer_id);
    if customer_id.is_none() {
        violations.push(("customer_id".into(), "must be a UUID".into()));
    }
    let purpose = DecisionPurpose::try_from(request.purpose)
        .ok()
        .filter(|purpose| *purpose != DecisionPurpose::Unspecified);
    if purpose.is_none() {
        violations.push(("purpose".into(), "must be set to a known purpose".into()));
    }
    let annual_income_fen = amount(
        &mut violations,
        "annual_income",
        request.annual_income.as_ref(),
        true,
    );
    if purpose == Some(DecisionPurpose::CreditLineApplication) && request.annual_income.is_none() {
        violations.push((
            "annual_income".into(),
            "is required for CREDIT_LINE_APPLICATION".into(),
        ));
    }
    let requested_limit_fen = amount(
        &mut violations,
        "requested_limit",
        request.requested_limit.as_ref(),
        false,
    );
    let current_limit_fen = amount(
        &mut violations,
        "current_limit",
        request.current_limit.as_ref(),
        false,
    );
    let drawdown = purpose == Some(DecisionPurpose::Drawdown);
    let drawdown_amount_fen = if drawdown {
        if request.drawdown_amount.is_none() {
            violations.push(("drawdown_amount".into(), "is required for DRAWDOWN".into()));
        }
        amount(
            &mut violations,
            "drawdown_amount",
            request.drawdown_amount.as_ref(),
            true,
        )
    } else {
        None
    };
    if let Some(context) = &request.context {
        if context.device_id.chars().count() > DEVICE_CHARS_MAX {
            violations.push((
                "context.device_id".into(),
                "must be at most 128 characters".into(),
            ));
        }
        for (field, value) in [
            ("context.phone_hash", &context.phone_hash),
            ("context.national_id_hash", &context.national_id_hash),
        ] {
            if !value.is_empty() && !is_keyed_hash(value) {
                violations.push((
                    field.into(),
                    "must be a keyed hash: 64 lowercase hex characters".into(),
                ));
            }
        }
    }
    match (customer_id, purpose) {
        (Some(customer_id), Some(purpose)) if violations.is_empty() => Ok(Valid {
            customer_id,
            purpose,
            annual_income_fen,
            requested_limit_fen,
            current_limit_fen,
            drawdown_amount_fen,
        }),
        _ => Err(ScoringError::InvalidArgument(violations)),
    }
}

/// A customer the service knows nothing about beyond identifiers: no social edge, no
/// behaviour and no repayment history.
pub fn is_thin_file(vector: &FeatureVector) -> bool {
    let missing = |name: &str| vector.get(name).flatten().is_none();
    vector.get("degree").flatten().unwrap_or(0.0) == 0.0
        && missing("income_monthly_mean")
        && missing("spend_volatility")
        && missing("risky_spend_share")
        && missing("on_time_ratio")
        && missing("max_days_past_due")
}

fn policy_reason(code: &str, description: String) -> ReasonCode {
    ReasonCode {
        code: code.to_owned(),
        description: truncate(description),
        points_lost: 0,
        feature: String::new(),
    }
}

/// Reason descriptions are at most 512 characters (credit.proto).
fn truncate(mut text: String) -> String {
    const CHARS_MAX: usize = 512;
    if text.chars().count() > CHARS_MAX {
        text = text.chars().take(CHARS_MAX).collect();
    }
    text
}

fn value_text(value: Option<f64>) -> String {
    value.map_or_else(String::new, |v| {
        let rounded = format!("{v:.4}");
        rounded
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    })
}

/// Scorecard reasons: the features that lost points against their best bin, most
/// first (ties in model order).
fn scorecard_reasons(scored: &Scored) -> Vec<ReasonCode> {
    let mut lost: Vec<_> = scored
        .contributions
        .iter()
        .filter(|c| c.points_lost() > 0)
        .collect();
    lost.sort_by_key(|c| std::cmp::Reverse(c.points_lost()));
    lost.into_iter()
        .map(|c| ReasonCode {
            code: policy::feature_reason_code(&c.feature),
            description: truncate(format!(
                "{} {} is in bin {}: {} points below its best bin",
                c.feature,
                match c.value {
                    Some(_) => value_text(c.value),
                    None => "(missing)".to_owned(),
                },
                c.bin_label,
                c.points_lost()
            )),
            points_lost: c.points_lost(),
            feature: c.feature.clone(),
        })
        .collect()
}

/// Population stability index of live band counts against the training shares; both
/// floored at [`PSI_SHARE_FLOOR`].
pub fn psi(expected_shares: &[f64], live_counts: &[i64]) -> Option<f64> {
    let total: i64 = live_counts.iter().sum();
    if total <= 0 || expected_shares.len() != live_counts.len() {
        return None;
    }
    Some(
        expected_shares
            .iter()
            .zip(live_counts)
            .map(|(expected, count)| {
                let actual = (*count as f64 / total as f64).max(PSI_SHARE_FLOOR);
                let expected = expected.max(PSI_SHARE_FLOOR);
                (actual - expected) * (actual / expected).ln()
            })
            .sum(),
    )
}

/// The bands: < 0.1 stable, 0.1..=0.25 monitor, > 0.25 shifted.
pub fn psi_status(psi: f64) -> PsiStatus {
    if psi < 0.1 {
        PsiStatus::Stable
    } else if psi <= 0.25 {
        PsiStatus::Monitor
    } else {
        PsiStatus::Shifted
    }
}

fn feature_group(name: &str) -> FeatureGroup {
    FeatureValues::default()
        .into_vector(Uuid::nil())
        .features
        .iter()
        .find(|feature| feature.name == name)
        .map_or(FeatureGroup::Unspecified, |feature| feature.group)
}

impl Decisions {
    pub fn new(
        pool: PgPool,
        cache: Cache,
        model: ModelState,
        policy: PolicyConfig,
        fraud: FraudConfig,
        graph: GraphCache,
    ) -> Self {
        Self {
            writer: DecisionWriter::spawn(pool.clone(), policy.decision_async_commit),
            pool,
            counters: fraud::Counters::new(cache),
            model,
            policy,
            fraud,
            graph,
        }
    }

    /// `Ok` if a verified model is loaded, else MODEL_UNAVAILABLE.
    pub fn require_model(&self) -> Result<(), ScoringError> {
        self.model().map(|_| ())
    }

    fn model(&self) -> Result<&Arc<ActiveModel>, ScoringError> {
        match &self.model {
            ModelState::Active(model) => Ok(model),
            ModelState::Unavailable(why) => Err(ScoringError::ModelUnavailable(why.clone())),
        }
    }

    /// Decides `request`. Without context identifiers (nothing to record, no velocity
    /// counter) there is no transaction: one statement reads the customer's inputs and
    /// the request key's record, and the group commit stores the key with its response
    /// and the decision together, in one statement with other requests' decisions
    /// (`group_commit`; a concurrent duplicate that wins the key makes this call answer
    /// with the winner's stored response; only one decision is stored). With
    /// identifiers, one transaction claims the key first (so a replay never counts
    /// towards velocity again), records the sightings, reads, decides and stores.
    pub async fn evaluate(
        &self,
        caller_scope: &str,
        request: &EvaluateRequest,
    ) -> Result<EvaluateResponse, ScoringError> {
        let valid = validate(request)?;
        let model = self.model()?;
        let body = EvaluateRequest {
            request_id: String::new(),
            ..request.clone()
        }
        .encode_to_vec();
        let key = RequestKey {
            caller: caller_scope,
            rpc: "Evaluate",
            request_id: &request.request_id,
            body: &body,
        };
        let now = Utc::now();
        let decision_id = Uuid::now_v7();
        let context = request.context.clone().unwrap_or_default();
        let sighting_context = fraud::sighting_context(valid.purpose);
        let sightings: Vec<Sighting> = [
            (IdentifierKind::Device, &context.device_id),
            (IdentifierKind::Phone, &context.phone_hash),
            (IdentifierKind::NationalId, &context.national_id_hash),
        ]
        .into_iter()
        .filter(|(_, identifier)| !identifier.is_empty())
        .map(|(kind, identifier)| Sighting {
            customer_id: valid.customer_id,
            kind,
            identifier: identifier.clone(),
            context: sighting_context,
            observe_time: now,
        })
        .collect();
        let drawdown = (valid.purpose == DecisionPurpose::Drawdown).then(|| DrawdownWindows {
            now,
            increase_hours: i32::try_from(self.fraud.increase_window_hours).unwrap_or(i32::MAX),
            cycling_days: i32::try_from(self.fraud.cycling_window_days).unwrap_or(i32::MAX),
        });
        let subject = Subject {
            customer_id: valid.customer_id,
            purpose: valid.purpose,
            decision_id,
            device_id: &context.device_id,
            phone_hash: &context.phone_hash,
            national_id_hash: &context.national_id_hash,
            drawdown_amount_fen: valid.drawdown_amount_fen,
            current_limit_fen: valid.current_limit_fen,
            now,
        };

        if sightings.is_empty() {
            let mut conn = self.pool.acquire().await?;
            let lookup = KeyLookup {
                caller: key.caller,
                rpc: key.rpc,
                request_id: key.request_id,
                body: key.body,
            };
            let inputs =
                customer_inputs(&mut conn, valid.customer_id, drawdown, Some(lookup)).await?;
            if let Some(stored) = &inputs.stored {
                match (stored.same_body, &stored.response) {
                    (true, Some(response)) => return decode_stored(response),
                    (false, _) => {
                        return Err(IdempotencyError::KeyReused {
                            request_id: request.request_id.clone(),
                        }
                        .into());
                    }
                    // The first attempt is still running: decide; the store below waits
                    // for it and answers with its response.
                    (true, None) => {}
                }
            }
            let decided = self
                .decide(&mut conn, model, &valid, &subject, &inputs)
                .await?;
            // The connection goes back while the decision waits for its batch's commit.
            drop(conn);
            let (row, response) = decided.keyed(model.version(), key);
            return match self.writer.store(row).await? {
                true => Ok(response),
                false => replay(&mut *self.pool.acquire().await?, key).await,
            };
        }

        let mut tx = self.pool.begin().await?;
        if let Some(stored) = idempotency::claim(&mut tx, key).await? {
            return decode_stored(&stored);
        }
        // A first-seen identifier changes the shared components: then the lock comes
        // first, as for IngestSignals; known links only touch this customer's rows.
        let locking = if has_new_link(&mut tx, &sightings).await? {
            Locking::First
        } else {
            Locking::WhenNeeded
        };
        apply_signals_locking(
            &mut tx,
            &Signals {
                sightings,
                ..Signals::default()
            },
            locking,
        )
        .await?;
        let inputs = customer_inputs(&mut tx, valid.customer_id, drawdown, None).await?;
        let decided = self
            .decide(&mut tx, model, &valid, &subject, &inputs)
            .await?;
        let stored = store::store_decision(
            &mut tx,
            &decided.row(model.version()),
            key,
            &decided.response_bytes,
        )
        .await?;
        if !stored {
            return Err(ScoringError::Internal(
                "the claimed request key vanished before its decision was stored".into(),
            ));
        }
        if self.policy.decision_async_commit {
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(decided.response)
    }

    /// Features, score, anti-fraud rules and policy for one request, from its inputs
    /// (the neighbourhood's features from the cache or Postgres).
    async fn decide(
        &self,
        conn: &mut sqlx::PgConnection,
        model: &ActiveModel,
        valid: &Valid,
        subject: &Subject<'_>,
        inputs: &CustomerInputs,
    ) -> Result<Decided, ScoringError> {
        let party = valid.customer_id.to_string();
        let local = match self.graph.get(&party) {
            Ok(local) => local,
            Err(ticket) => {
                let hood = neighbourhood(conn, &party).await?;
                let local = local_features(&hood);
                self.graph.store(ticket, &hood, &local);
                local
            }
        };
        let vector = assemble_local(
            valid.customer_id,
            local,
            &inputs.scalars,
            &inputs.months,
            &inputs.outcomes,
        );
        let scored = model.score(&vector);
        let checks =
            fraud::run_checks(conn, &self.counters, &self.fraud, subject, &inputs.fraud).await?;
        let now = subject.now;
        let facts = Facts {
            valid,
            scored: &scored,
            checks: &checks,
            thin_file: is_thin_file(&vector),
            defaulter: inputs.known_defaulter(),
            overdue: inputs.overdue(),
        };
        let ruled = self.apply_policy(&facts);
        let approved = ruled.outcome == DecisionOutcome::Approved;
        let limit_purpose = matches!(
            valid.purpose,
            DecisionPurpose::CreditLineApplication | DecisionPurpose::LimitIncrease
        );
        let rate = ruled.band_rate.filter(|_| approved);
        let decision = Decision {
            decision_id: subject.decision_id.to_string(),
            customer_id: valid.customer_id.to_string(),
            purpose: valid.purpose as i32,
            outcome: ruled.outcome as i32,
            score: scored.score,
            probability_of_default: format!("{:.4}", scored.probability_of_default),
            risk_grade: ruled.grade as i32,
            model_version: model.version().to_owned(),
            reasons: ruled.reasons,
            fraud_flags: checks
                .iter()
                .filter(|check| check.triggered)
                .map(|check| check.flag as i32)
                .collect(),
            offered_limit: ruled
                .offered_limit_fen
                .filter(|_| approved && limit_purpose)
                .map(cny_money),
            daily_rate: rate.map(|rate| rate.to_string()).unwrap_or_default(),
            apr: rate
                .map(|rate| headline_apr(rate).to_string())
                .unwrap_or_default(),
            requested_limit: valid.requested_limit_fen.map(cny_money),
            drawdown_amount: valid.drawdown_amount_fen.map(cny_money),
            decide_time: Some(timestamp(now)),
            expire_time: matches!(
                ruled.outcome,
                DecisionOutcome::Approved | DecisionOutcome::ManualReview
            )
            .then(|| {
                timestamp(
                    now + chrono::Duration::from_std(self.policy.decision_ttl)
                        .unwrap_or_else(|_| chrono::Duration::days(30)),
                )
            }),
        };
        let mut contributions: Vec<FeatureContribution> = scored
            .contributions
            .iter()
            .map(|c| FeatureContribution {
                feature: c.feature.clone(),
                value: value_text(c.value),
                bin_label: c.bin_label.clone(),
                woe: format!("{:.6}", c.woe),
                points: c.points,
                max_points: c.max_points,
                points_lost: c.points_lost(),
            })
            .collect();
        contributions.sort_by_key(|c| std::cmp::Reverse(c.points_lost));
        let explanation = ExplainDecisionResponse {
            decision: None,
            base_points: scored.base_points,
            contributions,
            fraud_checks: checks
                .iter()
                .map(|check| FraudCheck {
                    flag: check.flag as i32,
                    triggered: check.triggered,
                    detail: check.detail.clone(),
                })
                .collect(),
            policy_notes: ruled.notes,
        };
        let response = EvaluateResponse {
            decision: Some(decision),
        };
        Ok(Decided {
            customer_id: valid.customer_id,
            decision_id: subject.decision_id,
            purpose: valid.purpose as i16,
            outcome: ruled.outcome as i16,
            score: scored.score,
            offered_limit_fen: response
                .decision
                .as_ref()
                .and_then(|d| d.offered_limit.as_ref())
                .map(|m| m.minor_units),
            drawdown_amount_fen: valid.drawdown_amount_fen,
            decide_time: now,
            decision_bytes: response
                .decision
                .as_ref()
                .map(Message::encode_to_vec)
                .unwrap_or_default(),
            explanation_bytes: explanation.encode_to_vec(),
            response_bytes: response.encode_to_vec(),
            response,
        })
    }

    /// The score cut-off and the policy rules, after the anti-fraud rules, in the
    /// documented order.
    fn apply_policy(&self, facts: &Facts<'_>) -> Ruled {
        let Facts {
            valid,
            scored,
            checks,
            ..
        } = facts;
        let mut reasons: Vec<ReasonCode> = Vec::new();
        let mut notes: Vec<String> = Vec::new();
        let (mut declined, mut review) = (false, false);
        for check in checks.iter().filter(|check| check.triggered) {
            reasons.push(policy_reason(
                &fraud::reason_code(check.flag),
                format!(
                    "anti-fraud rule {}: {}",
                    check.flag.as_str_name(),
                    check.detail
                ),
            ));
            if fraud::declines(check.flag) {
                declined = true;
            } else {
                review = true;
            }
        }
        let band = self.policy.band_of(scored.score);
        let grade = band.map_or(RiskGrade::E, |band| band.grade);
        match band {
            Some(band) => notes.push(format!(
                "score {} graded {} (band {}-{}): daily rate {}",
                scored.score,
                grade.as_str_name().trim_start_matches("RISK_GRADE_"),
                band.min_score,
                band.max_score,
                band.daily_rate
            )),
            None => {
                declined = true;
                let text = format!(
                    "score {} is below the cut-off {}: graded E",
                    scored.score,
                    self.policy.cutoff()
                );
                reasons.push(policy_reason("SCORE_BELOW_CUTOFF", text.clone()));
                notes.push(text);
            }
        }
        let credit = valid.purpose != DecisionPurpose::PortfolioReview;
        if credit && facts.defaulter {
            declined = true;
            let text = "known defaulter: an instalment 90+ days past due or a loan written off";
            reasons.push(policy_reason("KNOWN_DEFAULTER", text.to_owned()));
            notes.push(text.to_owned());
        }
        if credit && facts.overdue {
            declined = true;
            let text = "an instalment is past due and unpaid";
            reasons.push(policy_reason("OVERDUE_INSTALLMENTS", text.to_owned()));
            notes.push(text.to_owned());
        }
        let limit_purpose = matches!(
            valid.purpose,
            DecisionPurpose::CreditLineApplication | DecisionPurpose::LimitIncrease
        );
        let mut offered_limit_fen = None;
        if limit_purpose {
            if facts.thin_file {
                let text = format!(
                    "thin file (no social, behaviour or repayment signals): limit at most {} CNY",
                    cny(self.policy.thin_file_limit_max_fen)
                );
                reasons.push(policy_reason("THIN_FILE", text.clone()));
                notes.push(text);
            }
            let offer = policy::offer_limit(
                &self.policy,
                scored.probability_of_default,
                valid.annual_income_fen,
                facts.thin_file,
            );
            notes.extend(offer.notes);
            if offer.limit_fen < self.policy.line_limit_min_fen {
                declined = true;
                let text = format!(
                    "offered limit {} CNY is below the line minimum {} CNY",
                    cny(offer.limit_fen),
                    cny(self.policy.line_limit_min_fen)
                );
                reasons.push(policy_reason("LIMIT_BELOW_MINIMUM", text.clone()));
                notes.push(text);
            } else if valid.purpose == DecisionPurpose::LimitIncrease
                && valid
                    .current_limit_fen
                    .is_some_and(|current| offer.limit_fen <= current)
            {
                declined = true;
                let text = format!(
                    "offered limit {} CNY is not above the current limit {} CNY",
                    cny(offer.limit_fen),
                    cny(valid.current_limit_fen.unwrap_or(0))
                );
                reasons.push(policy_reason("NO_LIMIT_INCREASE", text.clone()));
                notes.push(text);
            }
            offered_limit_fen = Some(offer.limit_fen);
        }
        let outcome = if declined {
            DecisionOutcome::Declined
        } else if review {
            DecisionOutcome::ManualReview
        } else {
            DecisionOutcome::Approved
        };
        notes.push(format!(
            "outcome {}",
            outcome
                .as_str_name()
                .trim_start_matches("DECISION_OUTCOME_")
        ));
        reasons.extend(scorecard_reasons(scored));
        reasons.truncate(REASONS_MAX);
        Ruled {
            outcome,
            grade,
            band_rate: band.map(|band| band.daily_rate),
            offered_limit_fen,
            reasons,
            notes,
        }
    }

    pub async fn explain(
        &self,
        request: &ExplainDecisionRequest,
    ) -> Result<ExplainDecisionResponse, ScoringError> {
        let decision_id = parse_uuid(&request.decision_id)
            .ok_or_else(|| ScoringError::invalid("decision_id", "must be a UUID"))?;
        let mut conn = self.pool.acquire().await?;
        let (decision, explanation) = store::decision_bytes(&mut conn, decision_id)
            .await?
            .ok_or_else(|| ScoringError::NotFound {
                resource_type: "decision",
                name: decision_id.to_string(),
            })?;
        let corrupt =
            |err: prost::DecodeError| ScoringError::Internal(format!("stored decision: {err}"));
        let mut response =
            ExplainDecisionResponse::decode(explanation.as_slice()).map_err(corrupt)?;
        response.decision = Some(Decision::decode(decision.as_slice()).map_err(corrupt)?);
        Ok(response)
    }

    pub async fn model_info(
        &self,
        request: &GetModelInfoRequest,
    ) -> Result<GetModelInfoResponse, ScoringError> {
        let active = match &self.model {
            ModelState::Active(model) => Some(model),
            ModelState::Unavailable(_) => None,
        };
        if !request.model_version.is_empty()
            && active.is_none_or(|model| model.version() != request.model_version)
        {
            return Err(ScoringError::NotFound {
                resource_type: "model",
                name: request.model_version.clone(),
            });
        }
        let model = self.model()?;
        let artefact = &model.artefact;
        let card = &artefact.scorecard;
        let features = card
            .features
            .iter()
            .map(|feature| {
                let total: f64 = feature.bins.iter().map(|b| b.goods + b.bads).sum();
                ModelFeature {
                    name: feature.name.clone(),
                    description: policy::feature_description(&feature.name).to_owned(),
                    group: feature_group(&feature.name) as i32,
                    information_value: format!("{:.6}", feature.iv),
                    coefficient: format!("{:.6}", feature.coefficient),
                    bins: feature
                        .bins
                        .iter()
                        .map(|bin| {
                            let weight = bin.goods + bin.bads;
                            let (lower, upper, categories) = match &bin.rule {
                                BinRule::Range { lower, upper } => (
                                    lower.map(|v| v.to_string()).unwrap_or_default(),
                                    upper.map(|v| v.to_string()).unwrap_or_default(),
                                    Vec::new(),
                                ),
                                BinRule::Levels { levels, .. } => {
                                    (String::new(), String::new(), levels.clone())
                                }
                                BinRule::Special { value } => {
                                    (value.to_string(), value.to_string(), Vec::new())
                                }
                                BinRule::Missing => (String::new(), String::new(), Vec::new()),
                            };
                            ScorecardBin {
                                label: bin_label(&bin.rule),
                                lower_bound: lower,
                                upper_bound: upper,
                                categories,
                                missing: matches!(bin.rule, BinRule::Missing),
                                woe: format!("{:.6}", bin.woe),
                                points: bin.points,
                                population_share: format!(
                                    "{:.4}",
                                    if total > 0.0 { weight / total } else { 0.0 }
                                ),
                                bad_rate: format!(
                                    "{:.4}",
                                    if weight > 0.0 { bin.bads / weight } else { 0.0 }
                                ),
                            }
                        })
                        .collect(),
                }
            })
            .collect();
        let discrimination = artefact
            .metrics
            .holdout
            .as_ref()
            .unwrap_or(&artefact.metrics.train);
        let to = Utc::now();
        let from = to
            - chrono::Duration::from_std(self.policy.psi_window)
                .unwrap_or_else(|_| chrono::Duration::days(30));
        let mut info = ModelInfo {
            model_version: artefact.model_version.clone(),
            active: true,
            artefact_sha256: model.sha256.clone(),
            train_time: None,
            training_rows: artefact.created_from.train_rows as i64,
            holdout_rows: artefact.created_from.holdout_rows as i64,
            scaling: Some(ScalingProto {
                base_score: card.scaling.base_score,
                base_odds: card.scaling.base_odds.to_string(),
                points_to_double_odds: card.scaling.points_to_double_odds,
            }),
            features,
            grade_bands: self
                .policy
                .grade_bands
                .iter()
                .map(|band| GradeBandProto {
                    risk_grade: band.grade as i32,
                    min_score: band.min_score,
                    max_score: band.max_score,
                    daily_rate: band.daily_rate.to_string(),
                })
                .collect(),
            auc: format!("{:.4}", discrimination.auc),
            ks: format!("{:.4}", discrimination.ks),
            psi: String::new(),
            psi_status: PsiStatus::Unspecified as i32,
            psi_sample_size: 0,
            psi_window_start_time: Some(timestamp(from)),
            psi_window_end_time: Some(timestamp(to)),
        };
        if let Some(reference) = &artefact.training_scores {
            let mut conn = self.pool.acquire().await?;
            let counts = store::live_score_counts(
                &mut conn,
                &artefact.model_version,
                &reference.edges,
                from,
                to,
                DecisionPurpose::Drawdown as i16,
            )
            .await?;
            let sample: i64 = counts.iter().sum();
            info.psi_sample_size = sample;
            if sample >= self.policy.psi_sample_min as i64
                && let Some(value) = psi(&reference.shares, &counts)
            {
                info.psi = format!("{value:.4}");
                info.psi_status = psi_status(value) as i32;
            }
        }
        Ok(GetModelInfoResponse { model: Some(info) })
    }
}

/// One decided request, ready to store.
struct Decided {
    customer_id: Uuid,
    decision_id: Uuid,
    purpose: i16,
    outcome: i16,
    score: i32,
    offered_limit_fen: Option<i64>,
    drawdown_amount_fen: Option<i64>,
    decide_time: chrono::DateTime<Utc>,
    decision_bytes: Vec<u8>,
    explanation_bytes: Vec<u8>,
    response_bytes: Vec<u8>,
    response: EvaluateResponse,
}

impl Decided {
    fn row<'a>(&'a self, model_version: &'a str) -> NewDecision<'a> {
        NewDecision {
            decision_id: self.decision_id,
            customer_id: self.customer_id,
            purpose: self.purpose,
            outcome: self.outcome,
            score: self.score,
            model_version,
            offered_limit_fen: self.offered_limit_fen,
            drawdown_amount_fen: self.drawdown_amount_fen,
            decide_time: self.decide_time,
            decision: &self.decision_bytes,
            explanation: &self.explanation_bytes,
        }
    }
}

impl Decided {
    /// The decision with its request key, for the group commit, and the answer.
    fn keyed(self, model_version: &str, key: RequestKey<'_>) -> (KeyedDecision, EvaluateResponse) {
        let row = KeyedDecision {
            decision_id: self.decision_id,
            customer_id: self.customer_id,
            purpose: self.purpose,
            outcome: self.outcome,
            score: self.score,
            model_version: model_version.to_owned(),
            offered_limit_fen: self.offered_limit_fen,
            drawdown_amount_fen: self.drawdown_amount_fen,
            decide_time: self.decide_time,
            decision: self.decision_bytes,
            explanation: self.explanation_bytes,
            caller: key.caller.to_owned(),
            rpc: key.rpc.to_owned(),
            request_id: key.request_id.to_owned(),
            body: key.body.to_owned(),
            response: self.response_bytes,
        };
        (row, self.response)
    }
}

fn decode_stored(stored: &[u8]) -> Result<EvaluateResponse, ScoringError> {
    EvaluateResponse::decode(stored)
        .map_err(|err| ScoringError::Internal(format!("stored response: {err}")))
}

/// The answer of a concurrent duplicate that stored its key first.
async fn replay(
    conn: &mut sqlx::PgConnection,
    key: RequestKey<'_>,
) -> Result<EvaluateResponse, ScoringError> {
    decode_stored(&idempotency::replay(conn, key).await?)
}

/// What the policy rules look at.
struct Facts<'a> {
    valid: &'a Valid,
    scored: &'a Scored,
    checks: &'a [fraud::Check],
    thin_file: bool,
    defaulter: bool,
    overdue: bool,
}

/// What they decided.
struct Ruled {
    outcome: DecisionOutcome,
    grade: RiskGrade,
    band_rate: Option<microloan_domain::DailyRate>,
    offered_limit_fen: Option<i64>,
    reasons: Vec<ReasonCode>,
    notes: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_is_zero_on_the_same_distribution_and_grows_with_the_shift() {
        let expected = [0.25, 0.25, 0.25, 0.25];
        assert!(psi(&expected, &[25, 25, 25, 25]).unwrap().abs() < 1e-12);
        // (0.4-0.25)ln(0.4/0.25)·2 + (0.1-0.25)ln(0.1/0.25)·2 = 0.1410 + 0.2749 = 0.4159
        let shifted = psi(&expected, &[40, 40, 10, 10]).unwrap();
        assert!((shifted - 0.415_888).abs() < 1e-5, "{shifted}");
        assert_eq!(psi_status(shifted), PsiStatus::Shifted);
        assert_eq!(psi_status(0.05), PsiStatus::Stable);
        assert_eq!(psi_status(0.1), PsiStatus::Monitor);
        assert_eq!(psi_status(0.25), PsiStatus::Monitor);
        assert_eq!(psi(&expected, &[0, 0, 0, 0]), None);
    }

    #[test]
    fn values_print_without_trailing_zeros() {
        assert_eq!(value_text(Some(0.5)), "0.5");
        assert_eq!(value_text(Some(3.0)), "3");
        assert_eq!(value_text(Some(0.123_456)), "0.1235");
        assert_eq!(value_text(None), "");
    }
}
