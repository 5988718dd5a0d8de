//! Dynamic limits and pricing (docs/scoring-decisions.md, "Dynamic limits and
//! pricing"): one pure planner, [`plan`], used by both `RunPortfolioReview` (with a
//! fresh PORTFOLIO_REVIEW decision: may raise and lower the rate) and the event
//! consumer (no rescoring: freezes, cuts and unfreezes only). Every change goes through
//! AccountService.AdjustCreditLine with its reasons.

use std::{collections::VecDeque, time::Duration};

use chrono::Utc;
use futures::{FutureExt as _, StreamExt as _, future::Either, stream::FuturesOrdered};
use microloan_platform::{client::PeerChannel, convert::timestamp, idempotency};
use microloan_proto::{
    account::v1::{
        AdjustCreditLineRequest, CreditLine, GetCreditLineRequest, GetCustomerRequest,
        account_service_client::AccountServiceClient,
    },
    common::v1::{
        CreditLineChangeSource, CreditLineStatus, DecisionOutcome, DecisionPurpose, Money,
        ReasonCode,
    },
    google::r#type::Date,
    ledger::v1::{GetBusinessDateRequest, ledger_service_client::LedgerServiceClient},
    scoring::v1::{
        EvaluateRequest, ReviewAction, ReviewActionKind, RunPortfolioReviewRequest,
        RunPortfolioReviewResponse,
    },
};
use prost::Message as _;
use rust_decimal::Decimal;
use sqlx::PgPool;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;
use uuid::Uuid;

use crate::{
    decision::Decisions,
    error::ScoringError,
    policy::{LIMIT_ROUNDING_FEN, PolicyConfig, cny, offer_limit},
    store::lines::{self, ReviewInputs, Standing},
};

/// RunPortfolioReviewRequest.customer_ids bound (scoring.proto).
pub const REVIEW_CUSTOMERS_MAX: usize = 10_000;
/// Actions listed in a review's response (the rest are only counted).
const ACTIONS_LISTED_MAX: usize = 1000;
/// Customers read per page when the review covers every line.
const POPULATION_PAGE: i64 = 1000;
/// Upper bound on lines one review covers (a runaway table cannot make it endless).
const POPULATION_MAX: usize = 1_000_000;
/// Lines reviewed at once: bounds the calls in flight to account and the review's
/// Evaluates (which the group commit stores together).
const REVIEW_CONCURRENCY: usize = 32;
/// Customers whose standing and baseline score are read in one statement.
const REVIEW_PAGE: usize = 500;
/// Deadline of each call to account or the ledger.
const PEER_CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// One review at a time across replicas (`pg_try_advisory_lock`).
pub const REVIEW_LOCK: i64 = 0x5C0_0003;

/// A raise is at most this factor of the current limit per review: limits grow in
/// steps a payer earns, not in one jump to the model's offer.
const RAISE_FACTOR_MAX: Decimal = Decimal::from_parts(15, 0, 0, false, 1);

/// A line as account reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct LineView {
    pub credit_line_id: String,
    pub status: CreditLineStatus,
    pub limit_fen: i64,
    pub utilised_fen: i64,
    pub daily_rate: String,
}

impl LineView {
    fn of(line: &CreditLine) -> Self {
        let fen = |money: Option<&Money>| money.map_or(0, |money| money.minor_units);
        Self {
            credit_line_id: line.credit_line_id.clone(),
            status: line.status(),
            limit_fen: fen(line.limit.as_ref()),
            utilised_fen: fen(line.utilised.as_ref()),
            daily_rate: line.daily_rate.clone(),
        }
    }
}

/// What a fresh PORTFOLIO_REVIEW decision says (reviews only).
#[derive(Debug, Clone, PartialEq)]
pub struct Rescore {
    pub decision_id: String,
    pub score: i32,
    pub approved: bool,
    /// The score a raise must beat (`store::lines::ReviewInputs::baseline_score`).
    pub baseline_score: Option<i32>,
    /// The grade's daily rate (decimal string) if graded.
    pub grade_rate: Option<String>,
    /// The limit the PD and income support, within the line maximum.
    pub supported_limit_fen: i64,
    /// min(line maximum, annual income / 3): never raised past it.
    pub indebtedness_cap_fen: i64,
}

/// The policy's thresholds (docs/scoring-decisions.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineRules {
    /// On-time instalments a good payer has (`SCORING_REVIEW_ON_TIME_MIN`, default 3).
    pub on_time_min: i64,
    /// Days past due from which the limit is cut to what is drawn
    /// (`SCORING_CUT_DAYS_PAST_DUE`, default 30).
    pub cut_days_past_due: i32,
    /// The line minimum (a cut asks for it with clamp_to_utilisation: the limit becomes
    /// the drawn principal, or the minimum if less is drawn).
    pub line_limit_min_fen: i64,
}

impl LineRules {
    pub fn of(policy: &PolicyConfig) -> Self {
        Self {
            on_time_min: policy.review_on_time_min,
            cut_days_past_due: policy.cut_days_past_due,
            line_limit_min_fen: policy.line_limit_min_fen,
        }
    }
}

/// One AdjustCreditLine's worth of changes and the actions it stands for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan {
    pub new_status: Option<CreditLineStatus>,
    pub new_limit_fen: Option<i64>,
    pub clamp_to_utilisation: bool,
    pub new_daily_rate: Option<String>,
    pub kinds: Vec<ReviewActionKind>,
    pub reasons: Vec<ReasonCode>,
    /// Score to remember when a raise is applied.
    pub raise_score: Option<i32>,
}

fn reason(code: &str, description: String) -> ReasonCode {
    ReasonCode {
        code: code.to_owned(),
        description,
        points_lost: 0,
        feature: String::new(),
    }
}

fn rate(text: &str) -> Option<Decimal> {
    text.parse().ok()
}

/// The policy, in order: (1) anything overdue freezes an ACTIVE line, and at
/// `cut_days_past_due`+ days cuts the limit to what is drawn; nothing is raised while
/// overdue; (2) nothing overdue and a line the policy froze: unfrozen (cured);
/// (3) with a rescore (reviews only), nothing overdue and the line ACTIVE or just
/// unfrozen: a good payer (≥ `on_time_min` on-time instalments, the decision APPROVED,
/// the score above the baseline) gets the limit raised towards what the PD and income
/// support (at most ×1.5, within the indebtedness cap), and a grade rate below the
/// line's lowers the rate for new drawdowns. `None`: nothing to change.
pub fn plan(
    rules: &LineRules,
    line: &LineView,
    standing: &Standing,
    rescore: Option<&Rescore>,
) -> Option<Plan> {
    let mut plan = Plan::default();
    match line.status {
        CreditLineStatus::Closed | CreditLineStatus::Unspecified => return None,
        CreditLineStatus::Active | CreditLineStatus::Frozen => {}
    }
    if standing.overdue_installments > 0 {
        let days = standing.overdue_days_max;
        if line.status == CreditLineStatus::Active {
            plan.new_status = Some(CreditLineStatus::Frozen);
            plan.kinds.push(ReviewActionKind::LineFrozen);
            plan.reasons.push(reason(
                "OVERDUE_INSTALLMENTS",
                format!(
                    "{} instalment(s) past due and unpaid, worst {days} days",
                    standing.overdue_installments
                ),
            ));
        }
        let floor_fen = line.utilised_fen.max(rules.line_limit_min_fen);
        if days >= rules.cut_days_past_due && line.limit_fen > floor_fen {
            plan.new_limit_fen = Some(rules.line_limit_min_fen);
            plan.clamp_to_utilisation = true;
            plan.kinds.push(ReviewActionKind::LimitCut);
            plan.reasons.push(reason(
                &format!("DAYS_PAST_DUE_{}", rules.cut_days_past_due),
                format!(
                    "{days} days past due: limit cut to the drawn principal {} CNY",
                    cny(floor_fen)
                ),
            ));
        }
        return (!plan.kinds.is_empty()).then_some(plan);
    }
    let mut active = line.status == CreditLineStatus::Active;
    if line.status == CreditLineStatus::Frozen && standing.frozen_by_policy {
        plan.new_status = Some(CreditLineStatus::Active);
        plan.kinds.push(ReviewActionKind::LineUnfrozen);
        plan.reasons.push(reason(
            "OVERDUE_CURED",
            "every overdue instalment is paid".to_owned(),
        ));
        active = true;
    }
    if let Some(rescore) = rescore.filter(|_| active) {
        let better = rescore
            .baseline_score
            .is_none_or(|baseline| rescore.score > baseline);
        let good_payer = standing.on_time_installments >= rules.on_time_min;
        if good_payer && better && rescore.approved {
            let step_fen = (Decimal::from(line.limit_fen) * RAISE_FACTOR_MAX)
                .try_into()
                .unwrap_or(i64::MAX);
            let target_fen = rescore
                .supported_limit_fen
                .min(rescore.indebtedness_cap_fen)
                .min(step_fen)
                / LIMIT_ROUNDING_FEN
                * LIMIT_ROUNDING_FEN;
            if target_fen > line.limit_fen {
                plan.new_limit_fen = Some(target_fen);
                plan.kinds.push(ReviewActionKind::LimitRaised);
                plan.raise_score = Some(rescore.score);
                plan.reasons.push(reason(
                    "GOOD_REPAYMENT_HISTORY",
                    format!(
                        "{} instalments paid on time, score {} (was {}): limit {} -> {} CNY",
                        standing.on_time_installments,
                        rescore.score,
                        rescore
                            .baseline_score
                            .map_or_else(|| "not scored".to_owned(), |s| s.to_string()),
                        cny(line.limit_fen),
                        cny(target_fen)
                    ),
                ));
            }
            if let (Some(grade_rate), Some(current)) =
                (rescore.grade_rate.as_deref(), rate(&line.daily_rate))
                && rate(grade_rate).is_some_and(|new| new < current)
            {
                plan.new_daily_rate = Some(grade_rate.to_owned());
                plan.kinds.push(ReviewActionKind::RateLowered);
                plan.reasons.push(reason(
                    "IMPROVED_RISK_GRADE",
                    format!(
                        "score {} grades a daily rate of {grade_rate} (was {})",
                        rescore.score, line.daily_rate
                    ),
                ));
            }
        }
    }
    plan.reasons.truncate(4);
    (!plan.kinds.is_empty()).then_some(plan)
}

/// The ErrorInfo reason of a peer's status, else its code's name.
pub fn peer_reason(status: &Status) -> String {
    status
        .get_details_error_info()
        .map(|info| info.reason)
        .unwrap_or_else(|| format!("{:?}", status.code()).to_uppercase())
}

/// Whether a peer's failure may pass with time (the caller retries).
pub fn transient(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::ResourceExhausted
    )
}

fn with_deadline<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.set_timeout(PEER_CALL_TIMEOUT);
    request
}

/// The customer's line from account; `Ok(None)` if the customer has none.
pub async fn fetch_line(
    account: &AccountServiceClient<PeerChannel>,
    customer_id: Uuid,
) -> Result<Option<LineView>, Status> {
    let response = account
        .clone()
        .get_credit_line(with_deadline(GetCreditLineRequest {
            customer_id: customer_id.to_string(),
        }))
        .await;
    match response {
        Ok(response) => Ok(response.into_inner().credit_line.as_ref().map(LineView::of)),
        Err(status) if status.code() == Code::NotFound => Ok(None),
        Err(status) => Err(status),
    }
}

/// Sends a plan to account. `Ok(new limit)` if applied.
pub async fn apply_plan(
    account: &AccountServiceClient<PeerChannel>,
    request_id: String,
    customer_id: Uuid,
    plan: &Plan,
    source: CreditLineChangeSource,
    decision_id: &str,
) -> Result<Option<i64>, Status> {
    let response = account
        .clone()
        .adjust_credit_line(with_deadline(AdjustCreditLineRequest {
            request_id,
            customer_id: customer_id.to_string(),
            new_limit: plan.new_limit_fen.map(|fen| Money {
                currency_code: "CNY".into(),
                minor_units: fen,
            }),
            new_daily_rate: plan.new_daily_rate.clone().unwrap_or_default(),
            new_status: plan.new_status.unwrap_or(CreditLineStatus::Unspecified) as i32,
            clamp_to_utilisation: plan.clamp_to_utilisation,
            source: source as i32,
            reasons: plan.reasons.clone(),
            decision_id: decision_id.to_owned(),
            note: String::new(),
        }))
        .await?
        .into_inner();
    Ok(response
        .change
        .and_then(|change| change.new_limit)
        .map(|money| money.minor_units))
}

/// What an applied plan means for the policy's memory.
pub fn memory_of(plan: &Plan) -> (Option<bool>, Option<i32>) {
    let frozen = match plan.new_status {
        Some(CreditLineStatus::Frozen) => Some(true),
        Some(CreditLineStatus::Active) => Some(false),
        _ => None,
    };
    (frozen, plan.raise_score)
}

/// The portfolio review (ScoringService.RunPortfolioReview).
#[derive(Debug, Clone)]
pub struct Reviewer {
    pub pool: PgPool,
    pub account: AccountServiceClient<PeerChannel>,
    pub ledger: LedgerServiceClient<PeerChannel>,
    pub policy: PolicyConfig,
}

struct Validated {
    customer_ids: Vec<Uuid>,
    as_of_date: Option<Date>,
}

fn validate(request: &RunPortfolioReviewRequest) -> Result<Validated, ScoringError> {
    let mut violations = Vec::new();
    if let Some(problem) = idempotency::request_id_problem(&request.request_id) {
        violations.push(("request_id".to_owned(), problem.to_owned()));
    }
    if request.customer_ids.len() > REVIEW_CUSTOMERS_MAX {
        violations.push((
            "customer_ids".to_owned(),
            format!("at most {REVIEW_CUSTOMERS_MAX} customer ids"),
        ));
    }
    let mut customer_ids = Vec::with_capacity(request.customer_ids.len().min(REVIEW_CUSTOMERS_MAX));
    for (index, id) in request
        .customer_ids
        .iter()
        .enumerate()
        .take(REVIEW_CUSTOMERS_MAX)
    {
        match crate::signals::parse_uuid(id) {
            Some(id) => customer_ids.push(id),
            None => violations.push((format!("customer_ids[{index}]"), "must be a UUID".into())),
        }
    }
    if let Some(date) = &request.as_of_date
        && chrono::NaiveDate::from_ymd_opt(
            date.year,
            u32::try_from(date.month).unwrap_or(0),
            u32::try_from(date.day).unwrap_or(0),
        )
        .is_none()
    {
        violations.push(("as_of_date".to_owned(), "must be a valid date".into()));
    }
    if !violations.is_empty() {
        return Err(ScoringError::InvalidArgument(violations));
    }
    customer_ids.sort_unstable();
    customer_ids.dedup();
    Ok(Validated {
        customer_ids,
        as_of_date: request.as_of_date,
    })
}

/// One line's outcome in a review.
enum Reviewed {
    /// No line, or a closed one: not counted.
    Skipped,
    Unchanged,
    Changed(Vec<ReviewAction>),
}

fn unavailable(dependency: &str, status: &Status) -> ScoringError {
    ScoringError::DependencyUnavailable {
        dependency: dependency.to_owned(),
        message: format!("{dependency}: {}", status.message()),
    }
}

/// What the review's queue of futures yields: a page's inputs or a line's outcome.
enum Step {
    Page(Result<Vec<(Uuid, ReviewInputs)>, ScoringError>),
    Line(Result<Reviewed, ScoringError>),
}

/// Counts a line's outcome in the response and lists its actions (the first
/// [`ACTIONS_LISTED_MAX`]).
fn tally(response: &mut RunPortfolioReviewResponse, outcome: Reviewed) {
    let actions = match outcome {
        Reviewed::Skipped => return,
        Reviewed::Unchanged => {
            response.lines_reviewed += 1;
            response.lines_unchanged += 1;
            return;
        }
        Reviewed::Changed(actions) => actions,
    };
    response.lines_reviewed += 1;
    for action in actions {
        let counter = match action.kind() {
            ReviewActionKind::LimitRaised => &mut response.limits_raised,
            ReviewActionKind::LimitCut => &mut response.limits_cut,
            ReviewActionKind::RateLowered => &mut response.rates_lowered,
            ReviewActionKind::LineFrozen => &mut response.lines_frozen,
            ReviewActionKind::LineUnfrozen => &mut response.lines_unfrozen,
            ReviewActionKind::Unspecified => continue,
        };
        if action.applied || response.dry_run {
            *counter += 1;
        } else {
            response.actions_failed += 1;
        }
        if response.actions.len() < ACTIONS_LISTED_MAX {
            response.actions.push(action);
        } else {
            response.actions_truncated = true;
        }
    }
}

impl Reviewer {
    pub async fn run(
        &self,
        decisions: &Decisions,
        caller_scope: &str,
        request: &RunPortfolioReviewRequest,
    ) -> Result<RunPortfolioReviewResponse, ScoringError> {
        let valid = validate(request)?;
        decisions.require_model()?;
        let body = RunPortfolioReviewRequest {
            request_id: String::new(),
            ..request.clone()
        }
        .encode_to_vec();
        let key = idempotency::RequestKey {
            caller: caller_scope,
            rpc: "RunPortfolioReview",
            request_id: &request.request_id,
            body: &body,
        };
        // The session lock: one review at a time; released by the explicit unlock below,
        // or by the connection closing.
        let mut lock = self.pool.acquire().await?;
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
            .bind(REVIEW_LOCK)
            .fetch_one(&mut *lock)
            .await?;
        if !locked {
            // A retry of a finished review still gets its answer.
            if let Some(stored) = self.stored(key).await? {
                return Ok(stored);
            }
            return Err(ScoringError::Aborted {
                reason: "CONCURRENT_MODIFICATION",
                message: "another portfolio review is running".into(),
            });
        }
        // Closed, not pooled, once dropped: if this future is dropped before the unlock
        // (the call's deadline passed, or the caller cancelled it), a pooled connection
        // would keep the lock and every later review would be ABORTED.
        lock.close_on_drop();
        let outcome = self
            .run_locked(decisions, caller_scope, key, &valid, request)
            .await;
        let _ = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(REVIEW_LOCK)
            .execute(&mut *lock)
            .await;
        outcome
    }

    /// The stored response of `key`, if its review finished; the claim is not kept.
    async fn stored(
        &self,
        key: idempotency::RequestKey<'_>,
    ) -> Result<Option<RunPortfolioReviewResponse>, ScoringError> {
        let mut tx = self.pool.begin().await?;
        let stored = idempotency::claim(&mut tx, key).await?;
        tx.rollback().await?;
        stored
            .map(|bytes| {
                RunPortfolioReviewResponse::decode(bytes.as_slice())
                    .map_err(|err| ScoringError::Internal(format!("stored response: {err}")))
            })
            .transpose()
    }

    async fn run_locked(
        &self,
        decisions: &Decisions,
        caller_scope: &str,
        key: idempotency::RequestKey<'_>,
        valid: &Validated,
        request: &RunPortfolioReviewRequest,
    ) -> Result<RunPortfolioReviewResponse, ScoringError> {
        if let Some(stored) = self.stored(key).await? {
            return Ok(stored);
        }
        let start = Utc::now();
        let as_of_date = match valid.as_of_date {
            Some(date) => date,
            None => self
                .ledger
                .clone()
                .get_business_date(with_deadline(GetBusinessDateRequest::default()))
                .await
                .map_err(|status| unavailable("ledger", &status))?
                .into_inner()
                .business_date
                .unwrap_or_default(),
        };
        let customer_ids = if valid.customer_ids.is_empty() {
            self.population().await?
        } else {
            valid.customer_ids.clone()
        };
        let review_id = Uuid::now_v7();
        let mut response = RunPortfolioReviewResponse {
            review_id: review_id.to_string(),
            as_of_date: Some(as_of_date),
            dry_run: request.dry_run,
            start_time: Some(timestamp(start)),
            ..Default::default()
        };
        // Up to REVIEW_CONCURRENCY lines at once, answered in customer order (the listed
        // actions are). A page's standings and baselines are read in one statement,
        // queued among the lines when fewer than REVIEW_CONCURRENCY are left to start:
        // every future is polled together, so the read never waits for a pooled
        // connection that an unpolled line holds, and the next page is there in time.
        let mut pages = customer_ids.chunks(REVIEW_PAGE);
        let mut due: VecDeque<(Uuid, ReviewInputs)> = VecDeque::new();
        let (mut reading, mut lines_in_flight) = (false, 0);
        let mut in_flight = FuturesOrdered::new();
        loop {
            if !reading
                && due.len() < REVIEW_CONCURRENCY
                && let Some(page) = pages.next()
            {
                in_flight.push_back(Either::Left(self.page_inputs(page).map(Step::Page)));
                reading = true;
            }
            while lines_in_flight < REVIEW_CONCURRENCY
                && let Some((customer_id, inputs)) = due.pop_front()
            {
                let line = self.review_one(
                    decisions,
                    caller_scope,
                    customer_id,
                    inputs,
                    request.dry_run,
                );
                in_flight.push_back(Either::Right(line.map(Step::Line)));
                lines_in_flight += 1;
            }
            match in_flight.next().await {
                Some(Step::Page(inputs)) => {
                    reading = false;
                    due.extend(inputs?);
                }
                Some(Step::Line(outcome)) => {
                    lines_in_flight -= 1;
                    tally(&mut response, outcome?);
                }
                None => break,
            }
        }
        response.finish_time = Some(timestamp(Utc::now()));
        let mut tx = self.pool.begin().await?;
        if let Some(stored) = idempotency::claim(&mut tx, key).await? {
            return RunPortfolioReviewResponse::decode(stored.as_slice())
                .map_err(|err| ScoringError::Internal(format!("stored response: {err}")));
        }
        idempotency::record_response(&mut tx, key, &response.encode_to_vec()).await?;
        tx.commit().await?;
        Ok(response)
    }

    /// The review's inputs from scoring's own tables for a page of customers.
    async fn page_inputs(&self, page: &[Uuid]) -> Result<Vec<(Uuid, ReviewInputs)>, ScoringError> {
        let mut conn = self.pool.acquire().await?;
        let inputs = lines::review_inputs(&mut conn, page).await?;
        Ok(page.iter().copied().zip(inputs).collect())
    }

    async fn population(&self) -> Result<Vec<Uuid>, ScoringError> {
        let mut conn = self.pool.acquire().await?;
        let mut all = Vec::new();
        let mut after = None;
        while all.len() < POPULATION_MAX {
            let page = lines::customers_with_lines(&mut conn, after, POPULATION_PAGE).await?;
            let Some(last) = page.last().copied() else {
                break;
            };
            all.extend(page);
            after = Some(last);
        }
        all.truncate(POPULATION_MAX);
        Ok(all)
    }

    async fn review_one(
        &self,
        decisions: &Decisions,
        caller_scope: &str,
        customer_id: Uuid,
        inputs: ReviewInputs,
        dry_run: bool,
    ) -> Result<Reviewed, ScoringError> {
        // The line and the income are independent: asked at once.
        let mut account = self.account.clone();
        let (line, customer) = tokio::join!(
            fetch_line(&self.account, customer_id),
            account.get_customer(with_deadline(GetCustomerRequest {
                customer_id: customer_id.to_string(),
            }))
        );
        let line = match line {
            Ok(Some(line)) if line.status != CreditLineStatus::Closed => line,
            Ok(_) => return Ok(Reviewed::Skipped),
            Err(status) if transient(&status) => return Err(unavailable("account", &status)),
            Err(status) => {
                tracing::warn!(%customer_id, reason = peer_reason(&status), "review skips a line");
                return Ok(Reviewed::Skipped);
            }
        };
        let income_fen = match customer {
            Ok(response) => response
                .into_inner()
                .customer
                .and_then(|customer| customer.annual_income)
                .map(|money| money.minor_units),
            Err(status) if transient(&status) => return Err(unavailable("account", &status)),
            Err(_) => None,
        };
        let decision = decisions
            .evaluate(
                caller_scope,
                &EvaluateRequest {
                    request_id: Uuid::now_v7().to_string(),
                    customer_id: customer_id.to_string(),
                    purpose: DecisionPurpose::PortfolioReview as i32,
                    annual_income: income_fen.map(|fen| Money {
                        currency_code: "CNY".into(),
                        minor_units: fen,
                    }),
                    current_limit: Some(Money {
                        currency_code: "CNY".into(),
                        minor_units: line.limit_fen,
                    }),
                    ..Default::default()
                },
            )
            .await?
            .decision
            .ok_or_else(|| ScoringError::Internal("evaluate returned no decision".into()))?;
        let ReviewInputs {
            standing,
            baseline_score,
        } = inputs;
        let pd: f64 = decision.probability_of_default.parse().unwrap_or(1.0);
        let offer = offer_limit(&self.policy, pd, income_fen, false);
        let cap_fen = income_fen.map_or(self.policy.thin_file_limit_max_fen, |income| {
            income / crate::policy::INCOME_SHARE_DIVISOR
        });
        let rescore = Rescore {
            decision_id: decision.decision_id.clone(),
            score: decision.score,
            approved: decision.outcome == DecisionOutcome::Approved as i32,
            baseline_score,
            grade_rate: self
                .policy
                .band_of(decision.score)
                .map(|band| band.daily_rate.to_string()),
            supported_limit_fen: offer.limit_fen,
            indebtedness_cap_fen: cap_fen.min(self.policy.line_limit_max_fen),
        };
        let Some(plan) = plan(
            &LineRules::of(&self.policy),
            &line,
            &standing,
            Some(&rescore),
        ) else {
            return Ok(Reviewed::Unchanged);
        };
        let (applied, failure_reason, new_limit_fen) = if dry_run {
            (false, String::new(), plan.new_limit_fen)
        } else {
            match apply_plan(
                &self.account,
                Uuid::now_v7().to_string(),
                customer_id,
                &plan,
                CreditLineChangeSource::PortfolioReview,
                &rescore.decision_id,
            )
            .await
            {
                Ok(new_limit) => {
                    let (frozen, raise_score) = memory_of(&plan);
                    let mut conn = self.pool.acquire().await?;
                    lines::remember(&mut conn, customer_id, frozen, raise_score).await?;
                    (true, String::new(), new_limit)
                }
                Err(status) => (false, peer_reason(&status), plan.new_limit_fen),
            }
        };
        let cny_money = |fen: i64| Money {
            currency_code: "CNY".into(),
            minor_units: fen,
        };
        let limit_changed = plan.new_limit_fen.is_some();
        let actions = plan
            .kinds
            .iter()
            .map(|kind| ReviewAction {
                customer_id: customer_id.to_string(),
                credit_line_id: line.credit_line_id.clone(),
                kind: *kind as i32,
                previous_limit: Some(cny_money(line.limit_fen)),
                new_limit: Some(cny_money(
                    new_limit_fen
                        .filter(|_| limit_changed)
                        .unwrap_or(line.limit_fen),
                )),
                previous_daily_rate: line.daily_rate.clone(),
                new_daily_rate: plan
                    .new_daily_rate
                    .clone()
                    .unwrap_or_else(|| line.daily_rate.clone()),
                reasons: plan.reasons.clone(),
                decision_id: rescore.decision_id.clone(),
                applied,
                failure_reason: failure_reason.clone(),
            })
            .collect();
        Ok(Reviewed::Changed(actions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: LineRules = LineRules {
        on_time_min: 3,
        cut_days_past_due: 30,
        line_limit_min_fen: 50_000,
    };

    fn line(status: CreditLineStatus, limit_fen: i64, utilised_fen: i64) -> LineView {
        LineView {
            credit_line_id: "line".into(),
            status,
            limit_fen,
            utilised_fen,
            daily_rate: "0.0005".into(),
        }
    }

    fn rescore(score: i32, baseline: Option<i32>) -> Rescore {
        Rescore {
            decision_id: "d".into(),
            score,
            approved: true,
            baseline_score: baseline,
            grade_rate: Some("0.0003".into()),
            supported_limit_fen: 1_000_000,
            indebtedness_cap_fen: 20_000_000,
        }
    }

    fn good() -> Standing {
        Standing {
            on_time_installments: 3,
            ..Standing::default()
        }
    }

    #[test]
    fn a_good_payer_with_a_better_score_is_raised_by_half_and_repriced() {
        let active = line(CreditLineStatus::Active, 200_000, 50_000);
        let plan = plan(&RULES, &active, &good(), Some(&rescore(600, Some(580)))).expect("plan");
        assert_eq!(plan.new_limit_fen, Some(300_000));
        assert_eq!(plan.new_daily_rate.as_deref(), Some("0.0003"));
        assert_eq!(
            plan.kinds,
            [ReviewActionKind::LimitRaised, ReviewActionKind::RateLowered]
        );
        // The indebtedness cap bounds the raise; rounded down to 100 CNY.
        let capped = Rescore {
            indebtedness_cap_fen: 254_321,
            ..rescore(600, None)
        };
        let plan = plan_of(&active, &good(), &capped);
        assert_eq!(plan.new_limit_fen, Some(250_000));
    }

    fn plan_of(line: &LineView, standing: &Standing, rescore: &Rescore) -> Plan {
        plan(&RULES, line, standing, Some(rescore)).expect("plan")
    }

    #[test]
    fn no_raise_without_history_a_better_score_an_approval_or_room() {
        let active = line(CreditLineStatus::Active, 200_000, 0);
        let two = Standing {
            on_time_installments: 2,
            ..Standing::default()
        };
        assert_eq!(plan(&RULES, &active, &two, Some(&rescore(600, None))), None);
        assert_eq!(
            plan(&RULES, &active, &good(), Some(&rescore(580, Some(580)))),
            None
        );
        let declined = Rescore {
            approved: false,
            ..rescore(600, None)
        };
        assert_eq!(plan(&RULES, &active, &good(), Some(&declined)), None);
        let at_cap = Rescore {
            indebtedness_cap_fen: 200_000,
            grade_rate: Some("0.0005".into()),
            ..rescore(600, None)
        };
        assert_eq!(plan(&RULES, &active, &good(), Some(&at_cap)), None);
    }

    #[test]
    fn overdue_freezes_cuts_at_30_days_and_never_raises() {
        let active = line(CreditLineStatus::Active, 300_000, 120_000);
        let overdue = Standing {
            overdue_installments: 1,
            overdue_days_max: 7,
            on_time_installments: 10,
            frozen_by_policy: false,
        };
        let frozen = plan_of(&active, &overdue, &rescore(700, None));
        assert_eq!(frozen.kinds, [ReviewActionKind::LineFrozen]);
        assert_eq!(frozen.new_status, Some(CreditLineStatus::Frozen));
        assert_eq!(frozen.new_limit_fen, None);
        let thirty = Standing {
            overdue_days_max: 30,
            ..overdue
        };
        let cut = plan(&RULES, &active, &thirty, None).expect("plan");
        assert_eq!(
            cut.kinds,
            [ReviewActionKind::LineFrozen, ReviewActionKind::LimitCut]
        );
        assert!(cut.clamp_to_utilisation);
        // Already frozen and cut to what is drawn: nothing more.
        let done = line(CreditLineStatus::Frozen, 120_000, 120_000);
        assert_eq!(
            plan(&RULES, &done, &thirty, Some(&rescore(700, None))),
            None
        );
    }

    #[test]
    fn a_cure_unfreezes_only_the_policys_own_freeze() {
        let frozen = line(CreditLineStatus::Frozen, 200_000, 0);
        let cured = Standing {
            frozen_by_policy: true,
            ..Standing::default()
        };
        let plan_cured = plan(&RULES, &frozen, &cured, None).expect("plan");
        assert_eq!(plan_cured.kinds, [ReviewActionKind::LineUnfrozen]);
        assert_eq!(plan_cured.new_status, Some(CreditLineStatus::Active));
        assert_eq!(plan(&RULES, &frozen, &Standing::default(), None), None);
        let closed = line(CreditLineStatus::Closed, 0, 0);
        assert_eq!(plan(&RULES, &closed, &cured, None), None);
    }
}
