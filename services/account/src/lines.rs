//! Credit lines: GetCreditLine (cache-aside over Postgres and the ledger),
//! AdjustCreditLine, and what every journey shares — the line as the proto shows it,
//! its live balances from the ledger, and the cache refresh after a change.

use chrono::{DateTime, Duration as Days, Utc};
use microloan_domain::{DailyRate, ProductRules, loan::headline_apr, loan::penalty_daily_rate};
use microloan_platform::{
    auth::{Caller, Role},
    convert,
    idempotency::{self, RequestKey},
};
use microloan_proto::{
    account::v1 as proto,
    common::v1 as common,
    events::v1::{CreditLineChanged, event::Payload},
    ledger::v1::{
        AccountCode, AccountKey, ChangeCreditLimitRequest, CreditLineBalance, GetAccountRequest,
        ListLoansRequest, get_account_request::Lookup,
    },
    scoring::v1::EvaluationContext,
};
use prost::Message;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{
    config::LineSettings,
    error::AccountError,
    grpc::{AccountApi, OwnedKey, cny, decode_stored, emit, parse_id, push_request_and_customer},
    peers::from_peer,
    store::{
        audit::{AuditEntry, insert_audit_entry},
        customers::{CustomerRow, find_customer},
        lines::{
            CustomerAndLine, LineRow, LineStatus, LineUpdate, customer_hashes,
            find_customer_and_latest_line, find_replay_customer_and_latest_line, lock_latest_line,
            update_line,
        },
    },
};

/// A line's balances in the ledger (fen).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Balance {
    pub limit_minor: i64,
    pub available_minor: i64,
    pub utilised_minor: i64,
    /// Most days past due over the customer's active loans (0 = none overdue).
    pub days_past_due: i32,
}

impl Balance {
    pub fn of_ledger(line: Option<&CreditLineBalance>) -> Self {
        let fen = |money: Option<&common::Money>| money.map_or(0, |money| money.minor_units);
        line.map_or_else(Self::default, |line| Self {
            limit_minor: fen(line.limit.as_ref()),
            available_minor: fen(line.available.as_ref()),
            utilised_minor: fen(line.utilised.as_ref()),
            days_past_due: 0,
        })
    }
}

/// Most pages of active loans read to total a customer's utilisation (500 each).
const ACTIVE_LOAN_PAGES_MAX: u32 = 20;

/// A UUID (version 8) derived from `parts`: the same request always names the same
/// ledger loan, line or request, so a retry after a timeout can never act twice.
pub fn derived_id(parts: &[&str]) -> Uuid {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    let digest = hasher.finalize();
    let mut bytes = [0_u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

fn rate_text(rate: Decimal) -> String {
    rate.normalize().to_string()
}

/// daily_rate x 365, exactly (CreditLine.apr).
pub fn line_apr(rate: Decimal) -> Decimal {
    DailyRate::from_decimal(rate)
        .map_or_else(|_| (rate * Decimal::from(365)).normalize(), headline_apr)
}

/// When a limit increase may next be requested (CreditLine.next_increase_time).
pub fn next_increase_time(row: &LineRow, settings: &LineSettings) -> DateTime<Utc> {
    let start = [
        Some(row.open_time),
        Some(row.limit_change_time),
        row.increase_declined_time,
    ]
    .into_iter()
    .flatten()
    .max()
    .unwrap_or(row.open_time);
    start + Days::days(i64::from(settings.increase_cooldown_days))
}

/// The line as the proto shows it.
pub fn line_to_proto(
    row: &LineRow,
    balance: &Balance,
    product: &ProductRules,
    settings: &LineSettings,
) -> proto::CreditLine {
    let status = row.status();
    let max_drawdown = if status == LineStatus::Active {
        balance
            .available_minor
            .min(product.drawdown_max_minor)
            .max(0)
    } else {
        0
    };
    proto::CreditLine {
        credit_line_id: row.credit_line_id.to_string(),
        customer_id: row.customer_id.to_string(),
        status: status_to_proto(status) as i32,
        status_reason: row.status_reason.clone(),
        limit: Some(cny(balance.limit_minor)),
        available: Some(cny(balance.available_minor)),
        utilised: Some(cny(balance.utilised_minor)),
        max_drawdown: Some(cny(max_drawdown)),
        daily_rate: rate_text(row.daily_rate),
        apr: rate_text(line_apr(row.daily_rate)),
        penalty_daily_rate: rate_text(row.penalty_daily_rate),
        risk_grade: i32::from(row.risk_grade),
        allowed_term_months: product
            .offered_terms
            .iter()
            .map(|months| i32::try_from(*months).unwrap_or(i32::MAX))
            .collect(),
        decision_id: row.decision_id.map(|id| id.to_string()).unwrap_or_default(),
        open_time: Some(convert::timestamp(row.open_time)),
        update_time: Some(convert::timestamp(row.update_time)),
        next_increase_time: Some(convert::timestamp(next_increase_time(row, settings))),
    }
}

pub fn status_to_proto(status: LineStatus) -> common::CreditLineStatus {
    match status {
        LineStatus::Active => common::CreditLineStatus::Active,
        LineStatus::Frozen => common::CreditLineStatus::Frozen,
        LineStatus::Closed => common::CreditLineStatus::Closed,
    }
}

/// CUSTOMER_NOT_ACTIVE unless the customer is ACTIVE (checked before the line).
pub fn ensure_customer_active(customer: &CustomerRow) -> Result<(), AccountError> {
    let status = customer.status()?;
    if status != crate::customers::CustomerStatus::Active {
        return Err(AccountError::FailedPrecondition {
            reason: "CUSTOMER_NOT_ACTIVE",
            message: "the customer is not active".into(),
            metadata: vec![("status", status.as_str().to_owned())],
        });
    }
    Ok(())
}

/// LINE_CLOSED, then LINE_FROZEN, from the status account keeps.
pub fn ensure_line_open(line: &LineRow) -> Result<(), AccountError> {
    match line.status() {
        LineStatus::Active => Ok(()),
        LineStatus::Closed => Err(AccountError::precondition(
            "LINE_CLOSED",
            "the credit line is closed",
        )),
        LineStatus::Frozen => Err(AccountError::precondition(
            "LINE_FROZEN",
            "the credit line is frozen",
        )),
    }
}

/// The over-indebtedness cap: min(the product's maximum line, annual income / 3).
pub fn indebtedness_cap_minor(product: &ProductRules, annual_income_minor: i64) -> i64 {
    product.line_limit_max_minor.min(annual_income_minor / 3)
}

/// A customer's keyed lookup hashes (national id, phone); empty when unknown.
#[derive(Debug, Clone, Default)]
pub(crate) struct CustomerHashes {
    pub national_id_hash: Vec<u8>,
    pub phone_hash: Vec<u8>,
}

/// What scoring is told of the session: the device and the customer's keyed hashes
/// (never the PII itself).
pub(crate) fn evaluation_context(device_id: &str, hashes: &CustomerHashes) -> EvaluationContext {
    EvaluationContext {
        device_id: device_id.to_owned(),
        phone_hash: crate::loans::hex(&hashes.phone_hash),
        national_id_hash: crate::loans::hex(&hashes.national_id_hash),
    }
}

impl AccountApi {
    /// The customer, or NOT_FOUND; then NOT_RESOURCE_OWNER for another customer's token.
    pub(crate) async fn owned_customer(
        &self,
        caller: &Caller,
        customer_id: Uuid,
    ) -> Result<CustomerRow, AccountError> {
        let mut conn = self.pool.acquire().await?;
        let row = find_customer(&mut conn, customer_id)
            .await?
            .ok_or_else(|| AccountError::not_found("customer", customer_id.to_string()))?;
        if !caller.may_access_customer(customer_id) {
            return Err(AccountError::NotResourceOwner);
        }
        Ok(row)
    }

    /// The customer and its latest line: NOT_FOUND for either (customer first), then
    /// NOT_RESOURCE_OWNER (the documented precedence: NOT_FOUND before PERMISSION_DENIED).
    pub(crate) async fn owned_customer_and_line(
        &self,
        caller: &Caller,
        customer_id: Uuid,
    ) -> Result<(CustomerRow, LineRow), AccountError> {
        self.owned_customer_line_and_hashes(caller, customer_id)
            .await
            .map(|(customer, line, _)| (customer, line))
    }

    /// [`Self::owned_customer_and_line`] plus the customer's keyed hashes, for the
    /// [`evaluation_context`] of a drawdown, all read in one statement.
    pub(crate) async fn owned_customer_line_and_hashes(
        &self,
        caller: &Caller,
        customer_id: Uuid,
    ) -> Result<(CustomerRow, LineRow, CustomerHashes), AccountError> {
        let mut conn = self.pool.acquire().await?;
        let found = find_customer_and_latest_line(&mut conn, customer_id).await?;
        drop(conn);
        owned_line_and_hashes(caller, customer_id, found)
    }

    /// The stored answer of a finished earlier request with `key` (another body under
    /// the key is IDEMPOTENCY_KEY_REUSED), else the customer with its latest line and
    /// keyed hashes: Borrow's and Repay's first read, one statement (issue 10: it was a
    /// replay lookup and a customer read). Claims nothing: they claim at the end, in
    /// the statement that records their outcome, and a duplicate still in flight is
    /// caught there. The caller applies NOT_FOUND and ownership after a replay
    /// ([`owned_line_and_hashes`]).
    pub(crate) async fn replayed_or_customer<T: Message + Default>(
        &self,
        key: RequestKey<'_>,
        customer_id: Uuid,
    ) -> Result<Replayed<T>, AccountError> {
        let mut conn = self.pool.acquire().await?;
        let (stored, found) =
            find_replay_customer_and_latest_line(&mut conn, key, customer_id).await?;
        drop(conn);
        match stored {
            Some((true, Some(response))) => decode_stored(&response).map(Replayed::Answer),
            Some((false, _)) => Err(idempotency::IdempotencyError::KeyReused {
                request_id: key.request_id.to_owned(),
            }
            .into()),
            // Not taken, or taken by a request still in flight (caught at the close).
            Some((true, None)) | None => Ok(Replayed::Customer(Box::new(found))),
        }
    }

    /// What scoring is told of the session: the device and the customer's keyed hashes
    /// (never the PII itself).
    pub(crate) async fn evaluation_context(
        &self,
        customer_id: Uuid,
        device_id: &str,
    ) -> Result<EvaluationContext, AccountError> {
        let mut conn = self.pool.acquire().await?;
        let (national_id_hash, phone_hash) = customer_hashes(&mut conn, customer_id)
            .await?
            .unwrap_or_default();
        Ok(evaluation_context(
            device_id,
            &CustomerHashes {
                national_id_hash,
                phone_hash,
            },
        ))
    }

    /// The line's live balances: the headroom account's balance and the principal
    /// outstanding on the customer's active loans (limit = available + utilised).
    pub(crate) async fn ledger_balance(&self, customer_id: Uuid) -> Result<Balance, AccountError> {
        let mut ledger = self.peers.ledger.clone();
        let available_minor = match ledger
            .get_account(GetAccountRequest {
                lookup: Some(Lookup::Key(AccountKey {
                    code: AccountCode::CreditLineAvailable as i32,
                    currency_code: "CNY".into(),
                    customer_id: customer_id.to_string(),
                    loan_id: String::new(),
                    sub_account: 0,
                })),
            })
            .await
        {
            Ok(response) => response.into_inner().account.map_or(0, |account| {
                let fen = |money: Option<common::Money>| money.map_or(0, |money| money.minor_units);
                fen(account.credits_posted) - fen(account.debits_posted)
            }),
            Err(status) if status.code() == tonic::Code::NotFound => 0,
            Err(status) => return Err(from_peer("ledger", &status)),
        };
        let mut balance = Balance {
            available_minor,
            ..Balance::default()
        };
        let mut page_token = String::new();
        for _ in 0..ACTIVE_LOAN_PAGES_MAX {
            let page = ledger
                .list_loans(ListLoansRequest {
                    customer_id: customer_id.to_string(),
                    statuses: vec![common::LoanStatus::Active as i32],
                    page_size: 500,
                    page_token: page_token.clone(),
                    ..ListLoansRequest::default()
                })
                .await
                .map_err(|status| from_peer("ledger", &status))?
                .into_inner();
            for loan in &page.loans {
                balance.utilised_minor += loan
                    .outstanding_principal
                    .as_ref()
                    .map_or(0, |money| money.minor_units);
                balance.days_past_due = balance.days_past_due.max(loan.days_past_due);
            }
            if page.next_page_token.is_empty() {
                break;
            }
            page_token = page.next_page_token;
        }
        balance.limit_minor = balance.available_minor + balance.utilised_minor;
        Ok(balance)
    }

    /// The line built from `row` and `balance`, stored in the cache at the row's version.
    pub(crate) async fn refresh_cache(
        &self,
        row: &LineRow,
        balance: &Balance,
    ) -> proto::CreditLine {
        let line = line_to_proto(row, balance, &self.rules.product, &self.rules.lines);
        self.line_cache
            .put(row.customer_id, row.cache_version, &line)
            .await;
        line
    }

    /// The line of `row` with live balances: the cache's if it holds this version or a
    /// newer one, else Postgres and the ledger (and the cache refilled).
    pub(crate) async fn line_view(&self, row: &LineRow) -> Result<proto::CreditLine, AccountError> {
        if let Some((version, line)) = self.line_cache.get(row.customer_id).await
            && version >= row.cache_version
        {
            return Ok(line);
        }
        let balance = self.ledger_balance(row.customer_id).await?;
        Ok(self.refresh_cache(row, &balance).await)
    }

    pub(crate) async fn get_credit_line(
        &self,
        caller: &Caller,
        request: proto::GetCreditLineRequest,
    ) -> Result<proto::GetCreditLineResponse, AccountError> {
        let customer_id = parse_id("customer_id", &request.customer_id)?;
        // A hit answers without Postgres: a cached line means the customer exists, and
        // ownership is the token's alone.
        if caller.may_access_customer(customer_id)
            && let Some((_, line)) = self.line_cache.get(customer_id).await
        {
            return Ok(proto::GetCreditLineResponse {
                credit_line: Some(line),
            });
        }
        // The version is read before the ledger, so a value built from older balances
        // carries an older version and never overwrites a newer one.
        let (_, row) = self.owned_customer_and_line(caller, customer_id).await?;
        let balance = self.ledger_balance(customer_id).await?;
        Ok(proto::GetCreditLineResponse {
            credit_line: Some(self.refresh_cache(&row, &balance).await),
        })
    }
}

/// What [`AccountApi::replayed_or_customer`] found.
#[derive(Debug)]
pub(crate) enum Replayed<T> {
    /// The stored answer of the same request.
    Answer(T),
    /// No answer stored: the customer with its latest line, if the customer exists.
    Customer(Box<Option<CustomerAndLine>>),
}

/// The customer, NOT_FOUND without it.
pub(crate) fn found_customer(
    customer_id: Uuid,
    found: Option<CustomerAndLine>,
) -> Result<CustomerAndLine, AccountError> {
    found.ok_or_else(|| AccountError::not_found("customer", customer_id.to_string()))
}

/// The customer, its latest line and its keyed hashes: NOT_FOUND for the customer, then
/// for the line, then NOT_RESOURCE_OWNER (the documented precedence: NOT_FOUND before
/// PERMISSION_DENIED).
pub(crate) fn owned_line_and_hashes(
    caller: &Caller,
    customer_id: Uuid,
    found: Option<CustomerAndLine>,
) -> Result<(CustomerRow, LineRow, CustomerHashes), AccountError> {
    let found = found_customer(customer_id, found)?;
    let line = found
        .line
        .ok_or_else(|| AccountError::not_found("credit_line", customer_id.to_string()))?;
    if !caller.may_access_customer(customer_id) {
        return Err(AccountError::NotResourceOwner);
    }
    let hashes = CustomerHashes {
        national_id_hash: found.national_id_hash,
        phone_hash: found.phone_hash,
    };
    Ok((found.customer, line, hashes))
}

/// AdjustCreditLine's request, parsed.
struct Adjustment {
    customer_id: Uuid,
    new_limit_minor: Option<i64>,
    new_rate: Option<DailyRate>,
    new_status: Option<LineStatus>,
    source: common::CreditLineChangeSource,
    decision_id: Option<Uuid>,
}

/// Longest operator note.
const NOTE_CHARS_MAX: usize = 512;
/// Most reasons on a change.
const REASONS_MAX: usize = 4;

fn parse_adjustment(
    request: &proto::AdjustCreditLineRequest,
    product: &ProductRules,
) -> Result<Adjustment, AccountError> {
    let mut violations: Vec<(&'static str, String)> = Vec::new();
    let customer_id =
        push_request_and_customer(&mut violations, &request.request_id, &request.customer_id);
    let new_status = match common::CreditLineStatus::try_from(request.new_status) {
        Ok(common::CreditLineStatus::Unspecified) => None,
        Ok(common::CreditLineStatus::Active) => Some(LineStatus::Active),
        Ok(common::CreditLineStatus::Frozen) => Some(LineStatus::Frozen),
        Ok(common::CreditLineStatus::Closed) => Some(LineStatus::Closed),
        Err(_) => {
            violations.push(("new_status", "is not a CreditLineStatus".into()));
            None
        }
    };
    let new_limit_minor = match request.new_limit.as_ref() {
        None => None,
        Some(money) if money.currency_code != "CNY" => {
            violations.push(("new_limit", "must be CNY".into()));
            None
        }
        Some(money) if money.minor_units == 0 && new_status == Some(LineStatus::Closed) => Some(0),
        Some(money)
            if !(product.line_limit_min_minor..=product.line_limit_max_minor)
                .contains(&money.minor_units) =>
        {
            violations.push((
                "new_limit",
                format!(
                    "must be {}-{} fen (0 only when closing)",
                    product.line_limit_min_minor, product.line_limit_max_minor
                ),
            ));
            None
        }
        Some(money) => Some(money.minor_units),
    };
    let new_rate = if request.new_daily_rate.is_empty() {
        None
    } else {
        match DailyRate::parse(&request.new_daily_rate) {
            Ok(rate) => Some(rate),
            Err(err) => {
                violations.push(("new_daily_rate", err.to_string()));
                None
            }
        }
    };
    if request.new_limit.is_none() && request.new_daily_rate.is_empty() && request.new_status == 0 {
        violations.push((
            "new_limit",
            "at least one of new_limit, new_daily_rate, new_status must be set".into(),
        ));
    }
    let source = match common::CreditLineChangeSource::try_from(request.source) {
        Ok(common::CreditLineChangeSource::Unspecified) | Err(_) => {
            violations.push(("source", "is required".into()));
            common::CreditLineChangeSource::Unspecified
        }
        Ok(source) => source,
    };
    check_reasons(&mut violations, "reasons", &request.reasons);
    let decision_id = if request.decision_id.is_empty() {
        None
    } else {
        match parse_id("decision_id", &request.decision_id) {
            Ok(id) => Some(id),
            Err(AccountError::InvalidArgument(more)) => {
                violations.extend(more);
                None
            }
            Err(other) => return Err(other),
        }
    };
    if request.note.chars().count() > NOTE_CHARS_MAX {
        violations.push(("note", "must be at most 512 characters".into()));
    }
    match (customer_id, violations.is_empty()) {
        (Some(customer_id), true) => Ok(Adjustment {
            customer_id,
            new_limit_minor,
            new_rate,
            new_status,
            source,
            decision_id,
        }),
        _ => Err(AccountError::InvalidArgument(violations)),
    }
}

/// 1 to 4 reasons, each with a code.
pub fn check_reasons(
    violations: &mut Vec<(&'static str, String)>,
    field: &'static str,
    reasons: &[common::ReasonCode],
) {
    if reasons.is_empty() || reasons.len() > REASONS_MAX {
        violations.push((field, "must hold 1 to 4 reasons".into()));
    } else if reasons.iter().any(|reason| reason.code.trim().is_empty()) {
        violations.push((field, "every reason needs a code".into()));
    }
}

/// The sources a role may send on AdjustCreditLine.
fn source_allowed(role: Role, source: common::CreditLineChangeSource) -> bool {
    use common::CreditLineChangeSource as Source;
    matches!(
        (role, source),
        (Role::Operator, Source::Operator)
            | (Role::Service, Source::RiskPolicy | Source::PortfolioReview)
    )
}

/// A change as the proto and the event show it.
#[derive(Debug)]
pub struct ChangeView<'a> {
    pub before_row: &'a LineRow,
    pub before: &'a Balance,
    pub after_row: &'a LineRow,
    pub after: &'a Balance,
    pub source: common::CreditLineChangeSource,
    pub reasons: Vec<common::ReasonCode>,
    pub decision_id: Option<Uuid>,
}

pub fn change_to_proto(view: &ChangeView<'_>) -> common::CreditLineChange {
    common::CreditLineChange {
        credit_line_id: view.after_row.credit_line_id.to_string(),
        previous_limit: Some(cny(view.before.limit_minor)),
        new_limit: Some(cny(view.after.limit_minor)),
        previous_daily_rate: rate_text(view.before_row.daily_rate),
        new_daily_rate: rate_text(view.after_row.daily_rate),
        previous_status: status_to_proto(view.before_row.status()) as i32,
        new_status: status_to_proto(view.after_row.status()) as i32,
        previous_apr: rate_text(line_apr(view.before_row.daily_rate)),
        new_apr: rate_text(line_apr(view.after_row.daily_rate)),
        source: view.source as i32,
        reasons: view.reasons.clone(),
        decision_id: view
            .decision_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        change_time: Some(convert::timestamp(view.after_row.update_time)),
    }
}

impl AccountApi {
    pub(crate) async fn adjust_credit_line(
        &self,
        caller: &Caller,
        request: proto::AdjustCreditLineRequest,
    ) -> Result<proto::AdjustCreditLineResponse, AccountError> {
        let adjustment = parse_adjustment(&request, &self.rules.product)?;
        let customer_id = adjustment.customer_id;
        let owned_key = OwnedKey::new(caller, "AdjustCreditLine", &request);
        let (key, caller_key) = (owned_key.key(), owned_key.caller.as_str());
        let mut tx = self.pool.begin().await?;
        if let Some(stored) = idempotency::claim(&mut tx, key).await? {
            return decode_stored(&stored);
        }
        let customer = find_customer(&mut tx, customer_id)
            .await?
            .ok_or_else(|| AccountError::not_found("customer", customer_id.to_string()))?;
        let before_row = lock_latest_line(&mut tx, customer_id)
            .await?
            .ok_or_else(|| AccountError::not_found("credit_line", customer_id.to_string()))?;
        if !source_allowed(caller.role, adjustment.source) {
            return Err(AccountError::RoleNotAllowed {
                role: caller.role.as_str(),
            });
        }
        if before_row.status() == LineStatus::Closed {
            return Err(AccountError::precondition(
                "LINE_CLOSED",
                "a closed line cannot be changed",
            ));
        }
        let before = self.ledger_balance(customer_id).await?;
        if let Some(new_limit) = adjustment.new_limit_minor
            && new_limit > before.limit_minor
        {
            if before.days_past_due > 0 {
                return Err(AccountError::FailedPrecondition {
                    reason: "OVERDUE_INSTALLMENTS",
                    message: "the limit cannot be raised while an instalment is overdue".into(),
                    metadata: vec![("days_past_due", before.days_past_due.to_string())],
                });
            }
            let cap = indebtedness_cap_minor(&self.rules.product, customer.annual_income_minor);
            if new_limit > cap {
                return Err(AccountError::FailedPrecondition {
                    reason: "INDEBTEDNESS_CAP_EXCEEDED",
                    message: "the limit would exceed the over-indebtedness cap".into(),
                    metadata: vec![("cap_minor_units", cap.to_string())],
                });
            }
        }
        if let Some(rate) = adjustment.new_rate {
            let apr = headline_apr(rate);
            if apr > self.rules.product.apr_cap {
                return Err(AccountError::FailedPrecondition {
                    reason: "APR_CAP_EXCEEDED",
                    message: "the rate's APR is above the cap".into(),
                    metadata: vec![
                        ("apr", apr.to_string()),
                        ("cap", self.rules.product.apr_cap.normalize().to_string()),
                    ],
                });
            }
        }
        // Closing sets the ledger limit to the principal still drawn (0 if none).
        let ledger_limit = if adjustment.new_status == Some(LineStatus::Closed) {
            Some((0, true))
        } else {
            adjustment
                .new_limit_minor
                .map(|limit| (limit, request.clamp_to_utilisation))
        };
        let after = match ledger_limit {
            Some((new_limit, clamp)) if new_limit != before.limit_minor || new_limit == 0 => {
                let mut ledger = self.peers.ledger.clone();
                let response = ledger
                    .change_credit_limit(ChangeCreditLimitRequest {
                        request_id: derived_id(&[
                            "AdjustCreditLine",
                            &before_row.credit_line_id.to_string(),
                            caller_key,
                            &request.request_id,
                        ])
                        .to_string(),
                        customer_id: customer_id.to_string(),
                        new_limit: Some(cny(new_limit)),
                        clamp_to_utilisation: clamp,
                    })
                    .await
                    .map_err(|status| from_peer("ledger", &status))?
                    .into_inner();
                Balance {
                    days_past_due: before.days_past_due,
                    ..Balance::of_ledger(response.credit_line.as_ref())
                }
            }
            _ => before,
        };
        let reason_text = request
            .reasons
            .first()
            .map(|reason| reason.code.clone())
            .unwrap_or_default();
        let update = LineUpdate {
            status: adjustment
                .new_status
                .filter(|status| *status != before_row.status())
                .map(|status| (status, reason_text)),
            daily_rate: adjustment.new_rate.map(|rate| {
                (
                    rate.as_decimal(),
                    penalty_daily_rate(rate.as_decimal(), self.rules.product.penalty_multiplier),
                )
            }),
            limit_changed: after.limit_minor != before.limit_minor,
            increase_declined: false,
            decision_id: adjustment.decision_id,
        };
        let after_row = update_line(&mut tx, before_row.credit_line_id, &update).await?;
        let change = change_to_proto(&ChangeView {
            before_row: &before_row,
            before: &before,
            after_row: &after_row,
            after: &after,
            source: adjustment.source,
            reasons: request.reasons.clone(),
            decision_id: adjustment.decision_id,
        });
        emit(
            &mut tx,
            customer_id,
            Payload::CreditLineChanged(CreditLineChanged {
                change: Some(change.clone()),
            }),
        )
        .await?;
        if caller.role == Role::Operator {
            insert_audit_entry(
                &mut tx,
                AuditEntry {
                    actor: &caller.subject,
                    role: caller.role.as_str(),
                    rpc: "AdjustCreditLine",
                    request_id: &request.request_id,
                    customer_id: Some(customer_id),
                    before: Some(line_audit(&before_row, &before)),
                    after: Some(serde_json::json!({
                        "line": line_audit(&after_row, &after),
                        "note": request.note,
                    })),
                },
            )
            .await?;
        }
        let line = line_to_proto(&after_row, &after, &self.rules.product, &self.rules.lines);
        let response = proto::AdjustCreditLineResponse {
            credit_line: Some(line.clone()),
            change: Some(change),
        };
        idempotency::record_response(&mut tx, key, &response.encode_to_vec()).await?;
        tx.commit().await?;
        self.line_cache
            .put(customer_id, after_row.cache_version, &line)
            .await;
        Ok(response)
    }
}

/// What the audit log keeps of a line.
pub fn line_audit(row: &LineRow, balance: &Balance) -> serde_json::Value {
    serde_json::json!({
        "credit_line_id": row.credit_line_id,
        "status": row.status,
        "status_reason": row.status_reason,
        "daily_rate": rate_text(row.daily_rate),
        "limit_minor": balance.limit_minor,
    })
}
