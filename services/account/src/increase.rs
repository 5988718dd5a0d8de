//! RequestLimitIncrease: the customer asks, scoring decides (LIMIT_INCREASE), the
//! ledger moves the limit; a decline starts the cooldown again.

use chrono::{FixedOffset, Utc};
use microloan_platform::{auth::Caller, idempotency};
use microloan_proto::{
    account::v1 as proto,
    common::v1 as common,
    events::v1::{ApplicationDeclined, CreditLineChanged, event::Payload},
    google::r#type::Date,
    ledger::v1::ChangeCreditLimitRequest,
    scoring::v1::EvaluateRequest,
};
use prost::Message;
use uuid::Uuid;

use crate::{
    error::AccountError,
    grpc::{AccountApi, OwnedKey, cny, decode_stored, emit, push_request_and_customer},
    lines::{
        Balance, ChangeView, change_to_proto, derived_id, ensure_customer_active, ensure_line_open,
        indebtedness_cap_minor, line_to_proto, next_increase_time,
    },
    peers::from_peer,
    store::lines::{LineUpdate, update_income, update_line},
};

const DEVICE_CHARS_MAX: usize = 128;

fn shanghai_date(time: chrono::DateTime<Utc>) -> chrono::NaiveDate {
    let offset = FixedOffset::east_opt(8 * 3600).expect("valid offset");
    time.with_timezone(&offset).date_naive()
}

fn date(date: chrono::NaiveDate) -> Date {
    use chrono::Datelike;
    Date {
        year: date.year(),
        month: i32::try_from(date.month()).unwrap_or(0),
        day: i32::try_from(date.day()).unwrap_or(0),
    }
}

impl AccountApi {
    pub(crate) async fn request_limit_increase(
        &self,
        caller: &Caller,
        request: proto::RequestLimitIncreaseRequest,
    ) -> Result<proto::RequestLimitIncreaseResponse, AccountError> {
        let product = &self.rules.product;
        let mut violations: Vec<(&'static str, String)> = Vec::new();
        let customer_id =
            push_request_and_customer(&mut violations, &request.request_id, &request.customer_id);
        let requested_minor = match request.requested_limit.as_ref() {
            Some(money)
                if money.currency_code == "CNY"
                    && (1..=product.line_limit_max_minor).contains(&money.minor_units) =>
            {
                Some(money.minor_units)
            }
            _ => {
                violations.push((
                    "requested_limit",
                    format!(
                        "must be CNY, above the current limit and at most {} fen",
                        product.line_limit_max_minor
                    ),
                ));
                None
            }
        };
        let income_minor = match request.annual_income.as_ref() {
            None => None,
            Some(money) if money.currency_code == "CNY" && money.minor_units >= 0 => {
                Some(money.minor_units)
            }
            Some(_) => {
                violations.push(("annual_income", "must be a CNY amount >= 0".into()));
                None
            }
        };
        if request.device_id.chars().count() > DEVICE_CHARS_MAX {
            violations.push(("device_id", "must be at most 128 characters".into()));
        }
        let (Some(customer_id), Some(requested_minor), true) =
            (customer_id, requested_minor, violations.is_empty())
        else {
            return Err(AccountError::InvalidArgument(violations));
        };
        let owned_key = OwnedKey::new(caller, "RequestLimitIncrease", &request);
        let (key, caller_key) = (owned_key.key(), owned_key.caller.as_str());
        let (customer, line) = self.owned_customer_and_line(caller, customer_id).await?;
        if let Some(stored) = self.replayed(key).await? {
            return Ok(stored);
        }
        ensure_customer_active(&customer)?;
        ensure_line_open(&line)?;
        let before = self.ledger_balance(customer_id).await?;
        if requested_minor <= before.limit_minor {
            return Err(AccountError::InvalidArgument(vec![(
                "requested_limit",
                format!(
                    "must be above the current limit ({} fen)",
                    before.limit_minor
                ),
            )]));
        }
        if before.days_past_due > 0 {
            return Err(AccountError::FailedPrecondition {
                reason: "OVERDUE_INSTALLMENTS",
                message: "an instalment is overdue".into(),
                metadata: vec![("days_past_due", before.days_past_due.to_string())],
            });
        }
        let next_time = next_increase_time(&line, &self.rules.lines);
        if Utc::now() < next_time {
            return Err(AccountError::FailedPrecondition {
                reason: "LIMIT_INCREASE_COOLDOWN",
                message: "a limit increase may not be requested yet".into(),
                metadata: vec![("retry_after", shanghai_date(next_time).to_string())],
            });
        }
        let income = income_minor.unwrap_or(customer.annual_income_minor);
        let cap_minor = indebtedness_cap_minor(product, income);
        if requested_minor > cap_minor {
            return Err(AccountError::FailedPrecondition {
                reason: "INDEBTEDNESS_CAP_EXCEEDED",
                message: "the limit would exceed the over-indebtedness cap".into(),
                metadata: vec![("cap_minor_units", cap_minor.to_string())],
            });
        }
        let mut scoring = self.peers.scoring.clone();
        let decision = scoring
            .evaluate(EvaluateRequest {
                request_id: derived_id(&[
                    "RequestLimitIncrease",
                    &customer_id.to_string(),
                    caller_key,
                    &request.request_id,
                ])
                .to_string(),
                customer_id: customer_id.to_string(),
                purpose: common::DecisionPurpose::LimitIncrease as i32,
                annual_income: Some(cny(income)),
                requested_limit: request.requested_limit.clone(),
                current_limit: Some(cny(before.limit_minor)),
                drawdown_amount: None,
                context: Some(
                    self.evaluation_context(customer_id, &request.device_id)
                        .await?,
                ),
            })
            .await
            .map_err(|status| from_peer("scoring", &status))?
            .into_inner()
            .decision
            .ok_or_else(|| AccountError::Internal("scoring returned no decision".into()))?;
        let decision_id = Uuid::try_parse(&decision.decision_id)
            .map_err(|_| AccountError::Internal("scoring decision id".into()))?;
        let outcome = common::DecisionOutcome::try_from(decision.outcome)
            .unwrap_or(common::DecisionOutcome::Declined);
        let offered_minor = decision
            .offered_limit
            .as_ref()
            .map_or(0, |money| money.minor_units);
        let granted_minor = requested_minor.min(offered_minor).min(cap_minor);
        let approved =
            outcome == common::DecisionOutcome::Approved && granted_minor > before.limit_minor;
        let after = if approved {
            let mut ledger = self.peers.ledger.clone();
            let changed = ledger
                .change_credit_limit(ChangeCreditLimitRequest {
                    request_id: derived_id(&["RequestLimitIncrease", &decision_id.to_string()])
                        .to_string(),
                    customer_id: customer_id.to_string(),
                    new_limit: Some(cny(granted_minor)),
                    clamp_to_utilisation: false,
                })
                .await
                .map_err(|status| from_peer("ledger", &status))?
                .into_inner();
            Balance::of_ledger(changed.credit_line.as_ref())
        } else {
            before
        };
        let mut tx = self.pool.begin().await?;
        if let Some(stored) = idempotency::claim(&mut tx, key).await? {
            return decode_stored(&stored);
        }
        if let Some(income) = income_minor {
            update_income(&mut tx, customer_id, income).await?;
        }
        let declined = outcome != common::DecisionOutcome::Approved || !approved;
        let review = outcome == common::DecisionOutcome::ManualReview;
        let after_row = update_line(
            &mut tx,
            line.credit_line_id,
            &LineUpdate {
                limit_changed: approved,
                increase_declined: declined && !review,
                decision_id: approved.then_some(decision_id),
                ..LineUpdate::default()
            },
        )
        .await?;
        let mut change = None;
        if approved {
            let reasons = if decision.reasons.is_empty() {
                vec![common::ReasonCode {
                    code: "LIMIT_INCREASE_APPROVED".into(),
                    description: "limit increase requested by the customer".into(),
                    points_lost: 0,
                    feature: String::new(),
                }]
            } else {
                decision.reasons.clone()
            };
            let view = change_to_proto(&ChangeView {
                before_row: &line,
                before: &before,
                after_row: &after_row,
                after: &after,
                source: common::CreditLineChangeSource::CustomerRequest,
                reasons,
                decision_id: Some(decision_id),
            });
            emit(
                &mut tx,
                customer_id,
                Payload::CreditLineChanged(CreditLineChanged {
                    change: Some(view.clone()),
                }),
            )
            .await?;
            change = Some(view);
        } else if !review {
            emit(
                &mut tx,
                customer_id,
                Payload::ApplicationDeclined(ApplicationDeclined {
                    decision_id: decision_id.to_string(),
                    purpose: common::DecisionPurpose::LimitIncrease as i32,
                    reasons: decision.reasons.clone(),
                    reapply_after_date: Some(date(shanghai_date(next_increase_time(
                        &after_row,
                        &self.rules.lines,
                    )))),
                }),
            )
            .await?;
        }
        let credit_line = line_to_proto(&after_row, &after, product, &self.rules.lines);
        let response = proto::RequestLimitIncreaseResponse {
            outcome: if approved {
                common::DecisionOutcome::Approved
            } else if review {
                common::DecisionOutcome::ManualReview
            } else {
                common::DecisionOutcome::Declined
            } as i32,
            credit_line: Some(credit_line.clone()),
            change,
            decision_id: decision_id.to_string(),
            reasons: if approved && granted_minor >= requested_minor || review {
                Vec::new()
            } else {
                decision.reasons.clone()
            },
        };
        idempotency::record_response(&mut tx, key, &response.encode_to_vec()).await?;
        tx.commit().await?;
        self.line_cache
            .put(customer_id, after_row.cache_version, &credit_line)
            .await;
        Ok(response)
    }
}
