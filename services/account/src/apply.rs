//! ApplyForCreditLine: scoring's decision (CREDIT_LINE_APPLICATION), then on approval
//! the line opened in the ledger and its terms kept here; declines and reviews recorded
//! for the cooling-off and the operator's resolution.

use chrono::{DateTime, Duration as Days, Utc};
use microloan_domain::{DailyRate, loan::penalty_daily_rate};
use microloan_platform::{
    auth::{Caller, Role},
    idempotency::{self, RequestKey},
};
use microloan_proto::{
    account::v1 as proto,
    common::v1 as common,
    events::v1::{ApplicationDeclined, CreditLineOpened, event::Payload},
    google::r#type::Date,
    ledger::v1::OpenCreditLineRequest,
    scoring::v1::{Decision, EvaluateRequest},
};
use prost::Message;
use uuid::Uuid;

use crate::{
    error::AccountError,
    grpc::{
        AccountApi, OwnedKey, cny, decode_stored, emit, parse_id, push_request_and_customer,
        today_in_shanghai,
    },
    lines::{Balance, derived_id, ensure_customer_active, indebtedness_cap_minor, line_to_proto},
    peers::from_peer,
    store::{
        audit::{AuditEntry, insert_audit_entry},
        lines::{
            ApplicationRow, LineStatus, NewLine, insert_application, insert_line, latest_line,
            lock_application, reapply_after, resolve_application, update_income,
        },
    },
};

const DEVICE_CHARS_MAX: usize = 128;
const NOTE_CHARS_MAX: usize = 512;

/// Outcome numbers kept in credit_applications.
const OUTCOME_DECLINED: i16 = common::DecisionOutcome::Declined as i16;
const OUTCOME_REVIEW: i16 = common::DecisionOutcome::ManualReview as i16;

fn date(date: chrono::NaiveDate) -> Date {
    use chrono::Datelike;
    Date {
        year: date.year(),
        month: i32::try_from(date.month()).unwrap_or(0),
        day: i32::try_from(date.day()).unwrap_or(0),
    }
}

fn reasons_json(reasons: &[common::ReasonCode]) -> serde_json::Value {
    serde_json::Value::Array(
        reasons
            .iter()
            .map(|reason| {
                serde_json::json!({
                    "code": reason.code,
                    "description": reason.description,
                    "points_lost": reason.points_lost,
                    "feature": reason.feature,
                })
            })
            .collect(),
    )
}

fn reasons_of_json(value: &serde_json::Value) -> Vec<common::ReasonCode> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|item| common::ReasonCode {
                    code: item["code"].as_str().unwrap_or_default().to_owned(),
                    description: item["description"].as_str().unwrap_or_default().to_owned(),
                    points_lost: item["points_lost"]
                        .as_i64()
                        .and_then(|points| i32::try_from(points).ok())
                        .unwrap_or(0),
                    feature: item["feature"].as_str().unwrap_or_default().to_owned(),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn timestamp_of(time: Option<&prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let time = time?;
    DateTime::from_timestamp(time.seconds, u32::try_from(time.nanos).unwrap_or(0))
}

/// The request, parsed.
struct Application {
    customer_id: Uuid,
    requested_limit_minor: Option<i64>,
    annual_income_minor: Option<i64>,
}

fn optional_cny(
    violations: &mut Vec<(&'static str, String)>,
    field: &'static str,
    money: Option<&common::Money>,
    range: std::ops::RangeInclusive<i64>,
) -> Option<i64> {
    let money = money?;
    if money.currency_code != "CNY" || !range.contains(&money.minor_units) {
        violations.push((
            field,
            format!("must be CNY within {}-{} fen", range.start(), range.end()),
        ));
        return None;
    }
    Some(money.minor_units)
}

impl AccountApi {
    fn parse_application(
        &self,
        request: &proto::ApplyForCreditLineRequest,
    ) -> Result<Application, AccountError> {
        let product = &self.rules.product;
        let mut violations: Vec<(&'static str, String)> = Vec::new();
        let customer_id =
            push_request_and_customer(&mut violations, &request.request_id, &request.customer_id);
        let requested_limit_minor = optional_cny(
            &mut violations,
            "requested_limit",
            request.requested_limit.as_ref(),
            product.line_limit_min_minor..=product.line_limit_max_minor,
        );
        let annual_income_minor = optional_cny(
            &mut violations,
            "annual_income",
            request.annual_income.as_ref(),
            0..=i64::MAX,
        );
        if request.device_id.chars().count() > DEVICE_CHARS_MAX {
            violations.push(("device_id", "must be at most 128 characters".into()));
        }
        if !request.data_consent {
            violations.push(("data_consent", "must be true".into()));
        }
        if let Some(resolution) = &request.review_resolution {
            if parse_id("review_resolution.decision_id", &resolution.decision_id).is_err() {
                violations.push(("review_resolution.decision_id", "must be a UUID".into()));
            }
            let note_chars = resolution.note.trim().chars().count();
            if note_chars == 0 || note_chars > NOTE_CHARS_MAX {
                violations.push(("review_resolution.note", "must be 1-512 characters".into()));
            }
            optional_cny(
                &mut violations,
                "review_resolution.limit",
                resolution.limit.as_ref(),
                product.line_limit_min_minor..=product.line_limit_max_minor,
            );
        }
        match (customer_id, violations.is_empty()) {
            (Some(customer_id), true) => Ok(Application {
                customer_id,
                requested_limit_minor,
                annual_income_minor,
            }),
            _ => Err(AccountError::InvalidArgument(violations)),
        }
    }

    pub(crate) async fn apply_for_credit_line(
        &self,
        caller: &Caller,
        request: proto::ApplyForCreditLineRequest,
    ) -> Result<proto::ApplyForCreditLineResponse, AccountError> {
        let application = self.parse_application(&request)?;
        let customer_id = application.customer_id;
        let owned_key = OwnedKey::new(caller, "ApplyForCreditLine", &request);
        let (key, caller_key) = (owned_key.key(), owned_key.caller.as_str());
        let customer = self.owned_customer(caller, customer_id).await?;
        if request.review_resolution.is_some() && caller.role != Role::Operator {
            return Err(AccountError::RoleNotAllowed {
                role: caller.role.as_str(),
            });
        }
        if let Some(stored) = self.replayed(key).await? {
            return Ok(stored);
        }
        ensure_customer_active(&customer)?;
        {
            let mut conn = self.pool.acquire().await?;
            if let Some(line) = latest_line(&mut conn, customer_id).await?
                && line.status() != LineStatus::Closed
            {
                return Err(AccountError::AlreadyExists {
                    reason: "CREDIT_LINE_EXISTS",
                    message: "the customer already has an open credit line".into(),
                    metadata: vec![("credit_line_id", line.credit_line_id.to_string())],
                });
            }
        }
        let income_minor = application
            .annual_income_minor
            .unwrap_or(customer.annual_income_minor);
        let cap_minor = indebtedness_cap_minor(&self.rules.product, income_minor);
        if let Some(resolution) = &request.review_resolution {
            return self
                .resolve_review(caller, &request, resolution, key, cap_minor, &application)
                .await;
        }
        {
            let mut conn = self.pool.acquire().await?;
            let today = today_in_shanghai();
            if let Some(after) = reapply_after(&mut conn, customer_id).await?
                && after > today
            {
                return Err(AccountError::FailedPrecondition {
                    reason: "REAPPLY_COOLDOWN",
                    message: "a new application is not accepted yet".into(),
                    metadata: vec![("reapply_after", after.to_string())],
                });
            }
        }
        if let Some(requested) = application.requested_limit_minor
            && requested > cap_minor
        {
            return Err(indebtedness(cap_minor));
        }
        let customer_text = customer_id.to_string();
        crate::rate_limit::check_customer_and_device(
            &self.cache,
            "ApplyForCreditLine",
            &customer_text,
            &request.device_id,
            self.rules.rate_limits.apply,
        )
        .await?;
        let decision = self
            .evaluate_application(customer_id, caller_key, &request, income_minor)
            .await?;
        let decision_id = Uuid::try_parse(&decision.decision_id)
            .map_err(|_| AccountError::Internal("scoring decision id".into()))?;
        match common::DecisionOutcome::try_from(decision.outcome) {
            Ok(common::DecisionOutcome::Approved) => {
                let offered = decision
                    .offered_limit
                    .as_ref()
                    .map_or(0, |money| money.minor_units);
                let granted = application
                    .requested_limit_minor
                    .unwrap_or(offered)
                    .min(offered)
                    .min(cap_minor);
                let rate = DailyRate::parse(&decision.daily_rate)
                    .map_err(|err| AccountError::Internal(format!("decision rate: {err}")))?;
                self.open_line(
                    caller,
                    key,
                    &request,
                    &application,
                    OpenTerms {
                        decision_id,
                        limit_minor: granted,
                        rate,
                        risk_grade: decision.risk_grade,
                    },
                    None,
                )
                .await
            }
            Ok(common::DecisionOutcome::ManualReview) => {
                let mut tx = self.pool.begin().await?;
                if let Some(stored) = idempotency::claim(&mut tx, key).await? {
                    return decode_stored(&stored);
                }
                if let Some(income) = application.annual_income_minor {
                    update_income(&mut tx, customer_id, income).await?;
                }
                insert_application(
                    &mut tx,
                    &ApplicationRow {
                        decision_id,
                        customer_id,
                        outcome: OUTCOME_REVIEW,
                        reasons: reasons_json(&decision.reasons),
                        offered_limit_minor: decision.offered_limit.as_ref().map(|m| m.minor_units),
                        requested_limit_minor: application.requested_limit_minor,
                        daily_rate: DailyRate::parse(&decision.daily_rate)
                            .ok()
                            .map(|rate| rate.as_decimal()),
                        risk_grade: i16::try_from(decision.risk_grade).unwrap_or(0),
                        reapply_after_date: None,
                        expire_time: timestamp_of(decision.expire_time.as_ref()),
                        resolved: false,
                    },
                )
                .await?;
                let response = proto::ApplyForCreditLineResponse {
                    outcome: common::DecisionOutcome::ManualReview as i32,
                    credit_line: None,
                    decision_id: decision_id.to_string(),
                    reasons: Vec::new(),
                    reapply_after_date: None,
                };
                idempotency::record_response(&mut tx, key, &response.encode_to_vec()).await?;
                tx.commit().await?;
                Ok(response)
            }
            _ => {
                self.decline(
                    key,
                    &application,
                    decision_id,
                    decision.reasons.clone(),
                    None,
                )
                .await
            }
        }
    }

    async fn evaluate_application(
        &self,
        customer_id: Uuid,
        caller_key: &str,
        request: &proto::ApplyForCreditLineRequest,
        income_minor: i64,
    ) -> Result<Decision, AccountError> {
        let mut scoring = self.peers.scoring.clone();
        scoring
            .evaluate(EvaluateRequest {
                request_id: derived_id(&[
                    "ApplyForCreditLine",
                    &customer_id.to_string(),
                    caller_key,
                    &request.request_id,
                ])
                .to_string(),
                customer_id: customer_id.to_string(),
                purpose: common::DecisionPurpose::CreditLineApplication as i32,
                annual_income: Some(cny(income_minor)),
                requested_limit: request.requested_limit.clone(),
                context: Some(
                    self.evaluation_context(customer_id, &request.device_id)
                        .await?,
                ),
                ..EvaluateRequest::default()
            })
            .await
            .map_err(|status| from_peer("scoring", &status))?
            .into_inner()
            .decision
            .ok_or_else(|| AccountError::Internal("scoring returned no decision".into()))
    }

    /// Opens the line in the ledger, then records it (CreditLineOpened) with the
    /// response. The line id derives from the decision, so a retry opens nothing twice.
    async fn open_line(
        &self,
        caller: &Caller,
        key: RequestKey<'_>,
        request: &proto::ApplyForCreditLineRequest,
        application: &Application,
        terms: OpenTerms,
        resolved: Option<(&proto::ReviewResolution, &str)>,
    ) -> Result<proto::ApplyForCreditLineResponse, AccountError> {
        let customer_id = application.customer_id;
        if terms.limit_minor < self.rules.product.line_limit_min_minor {
            return Err(indebtedness(terms.limit_minor));
        }
        let credit_line_id = derived_id(&["CreditLine", &terms.decision_id.to_string()]);
        let mut ledger = self.peers.ledger.clone();
        let opened = ledger
            .open_credit_line(OpenCreditLineRequest {
                request_id: credit_line_id.to_string(),
                customer_id: customer_id.to_string(),
                credit_line_id: credit_line_id.to_string(),
                limit: Some(cny(terms.limit_minor)),
            })
            .await
            .map_err(|status| from_peer("ledger", &status))?
            .into_inner();
        let balance = Balance::of_ledger(opened.credit_line.as_ref());
        let mut tx = self.pool.begin().await?;
        if let Some(stored) = idempotency::claim(&mut tx, key).await? {
            return decode_stored(&stored);
        }
        if let Some(income) = application.annual_income_minor {
            update_income(&mut tx, customer_id, income).await?;
        }
        let rate = terms.rate.as_decimal();
        let row = insert_line(
            &mut tx,
            &NewLine {
                credit_line_id,
                customer_id,
                daily_rate: rate,
                penalty_daily_rate: penalty_daily_rate(rate, self.rules.product.penalty_multiplier),
                risk_grade: i16::try_from(terms.risk_grade).unwrap_or(0),
                decision_id: Some(terms.decision_id),
            },
        )
        .await?;
        let line = line_to_proto(&row, &balance, &self.rules.product, &self.rules.lines);
        emit(
            &mut tx,
            customer_id,
            Payload::CreditLineOpened(CreditLineOpened {
                credit_line_id: credit_line_id.to_string(),
                limit: Some(cny(balance.limit_minor)),
                daily_rate: line.daily_rate.clone(),
                apr: line.apr.clone(),
                risk_grade: terms.risk_grade,
                decision_id: terms.decision_id.to_string(),
            }),
        )
        .await?;
        if let Some((resolution, _)) = resolved {
            resolve_application(&mut tx, terms.decision_id, None).await?;
            insert_audit_entry(
                &mut tx,
                AuditEntry {
                    actor: &caller.subject,
                    role: caller.role.as_str(),
                    rpc: "ApplyForCreditLine",
                    request_id: &request.request_id,
                    customer_id: Some(customer_id),
                    before: None,
                    after: Some(serde_json::json!({
                        "decision_id": terms.decision_id,
                        "approve": true,
                        "limit_minor": balance.limit_minor,
                        "note": resolution.note,
                    })),
                },
            )
            .await?;
        }
        let response = proto::ApplyForCreditLineResponse {
            outcome: common::DecisionOutcome::Approved as i32,
            credit_line: Some(line.clone()),
            decision_id: terms.decision_id.to_string(),
            reasons: Vec::new(),
            reapply_after_date: None,
        };
        idempotency::record_response(&mut tx, key, &response.encode_to_vec()).await?;
        tx.commit().await?;
        self.line_cache
            .put(customer_id, row.cache_version, &line)
            .await;
        Ok(response)
    }

    /// Records a decline (ApplicationDeclined, the cooling-off date) with the response.
    async fn decline(
        &self,
        key: RequestKey<'_>,
        application: &Application,
        decision_id: Uuid,
        reasons: Vec<common::ReasonCode>,
        audit: Option<(&Caller, &str, &str)>,
    ) -> Result<proto::ApplyForCreditLineResponse, AccountError> {
        let customer_id = application.customer_id;
        let reapply_after_date =
            today_in_shanghai() + Days::days(i64::from(self.rules.lines.reapply_cooldown_days));
        let mut tx = self.pool.begin().await?;
        if let Some(stored) = idempotency::claim(&mut tx, key).await? {
            return decode_stored(&stored);
        }
        if let Some(income) = application.annual_income_minor {
            update_income(&mut tx, customer_id, income).await?;
        }
        if let Some((caller, request_id, note)) = audit {
            resolve_application(&mut tx, decision_id, Some(reapply_after_date)).await?;
            insert_audit_entry(
                &mut tx,
                AuditEntry {
                    actor: &caller.subject,
                    role: caller.role.as_str(),
                    rpc: "ApplyForCreditLine",
                    request_id,
                    customer_id: Some(customer_id),
                    before: None,
                    after: Some(serde_json::json!({
                        "decision_id": decision_id,
                        "approve": false,
                        "note": note,
                    })),
                },
            )
            .await?;
        } else {
            insert_application(
                &mut tx,
                &ApplicationRow {
                    decision_id,
                    customer_id,
                    outcome: OUTCOME_DECLINED,
                    reasons: reasons_json(&reasons),
                    offered_limit_minor: None,
                    requested_limit_minor: application.requested_limit_minor,
                    daily_rate: None,
                    risk_grade: 0,
                    reapply_after_date: Some(reapply_after_date),
                    expire_time: None,
                    resolved: true,
                },
            )
            .await?;
        }
        emit(
            &mut tx,
            customer_id,
            Payload::ApplicationDeclined(ApplicationDeclined {
                decision_id: decision_id.to_string(),
                purpose: common::DecisionPurpose::CreditLineApplication as i32,
                reasons: reasons.clone(),
                reapply_after_date: Some(date(reapply_after_date)),
            }),
        )
        .await?;
        let response = proto::ApplyForCreditLineResponse {
            outcome: common::DecisionOutcome::Declined as i32,
            credit_line: None,
            decision_id: decision_id.to_string(),
            reasons,
            reapply_after_date: Some(date(reapply_after_date)),
        };
        idempotency::record_response(&mut tx, key, &response.encode_to_vec()).await?;
        tx.commit().await?;
        Ok(response)
    }

    /// An operator's resolution of a MANUAL_REVIEW application.
    async fn resolve_review(
        &self,
        caller: &Caller,
        request: &proto::ApplyForCreditLineRequest,
        resolution: &proto::ReviewResolution,
        key: RequestKey<'_>,
        cap_minor: i64,
        application: &Application,
    ) -> Result<proto::ApplyForCreditLineResponse, AccountError> {
        let decision_id = parse_id("review_resolution.decision_id", &resolution.decision_id)?;
        let review = {
            let mut conn = self.pool.acquire().await?;
            lock_application(&mut conn, decision_id).await?
        };
        let expired = || AccountError::FailedPrecondition {
            reason: "DECISION_EXPIRED",
            message: "the decision has expired or belongs to another customer".into(),
            metadata: vec![("decision_id", decision_id.to_string())],
        };
        let review = match review {
            Some(review) if review.customer_id != application.customer_id => return Err(expired()),
            Some(review) if review.outcome == OUTCOME_REVIEW && !review.resolved => review,
            _ => {
                return Err(AccountError::FailedPrecondition {
                    reason: "DECISION_NOT_IN_REVIEW",
                    message: "the decision is not awaiting manual review".into(),
                    metadata: vec![("decision_id", decision_id.to_string())],
                });
            }
        };
        if review.expire_time.is_some_and(|expire| expire < Utc::now()) {
            return Err(expired());
        }
        if !resolution.approve {
            return self
                .decline(
                    key,
                    application,
                    decision_id,
                    reasons_of_json(&review.reasons),
                    Some((caller, &request.request_id, &resolution.note)),
                )
                .await;
        }
        let limit_minor = resolution
            .limit
            .as_ref()
            .map(|money| money.minor_units)
            .or(review.offered_limit_minor)
            .unwrap_or(0);
        if limit_minor > cap_minor {
            return Err(indebtedness(cap_minor));
        }
        let rate = review
            .daily_rate
            .and_then(|rate| DailyRate::from_decimal(rate).ok())
            .ok_or_else(|| AccountError::Internal("review without a rate".into()))?;
        self.open_line(
            caller,
            key,
            request,
            application,
            OpenTerms {
                decision_id,
                limit_minor,
                rate,
                risk_grade: i32::from(review.risk_grade),
            },
            Some((resolution, &request.request_id)),
        )
        .await
    }
}

/// What a new line opens with.
struct OpenTerms {
    decision_id: Uuid,
    limit_minor: i64,
    rate: DailyRate,
    risk_grade: i32,
}

fn indebtedness(cap_minor: i64) -> AccountError {
    AccountError::FailedPrecondition {
        reason: "INDEBTEDNESS_CAP_EXCEEDED",
        message: "the limit would exceed the over-indebtedness cap".into(),
        metadata: vec![("cap_minor_units", cap_minor.to_string())],
    }
}
