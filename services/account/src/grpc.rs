//! The gRPC face of the account service: proto ⇄ domain and errors → `Status`. The
//! credit-line and loan journeys live in `lines.rs`, `apply.rs` and `loans.rs`.

use chrono::{FixedOffset, NaiveDate, Utc};
use microloan_events::NewEvent;
use microloan_platform::client::PeerChannel;
use microloan_platform::{
    auth::{Caller, PermissionTable, Role},
    cache::Cache,
    convert,
    idempotency::{self, RequestKey},
};
use microloan_proto::account::v1::account_service_server::{AccountService, SERVICE_NAME};
use microloan_proto::{
    account::v1 as proto,
    common::v1 as common,
    events::v1::{CustomerCreated, event::Payload},
    ledger::v1::ledger_service_client::LedgerServiceClient,
    notification::v1::notification_service_client::NotificationServiceClient,
    scoring::v1::scoring_service_client::ScoringServiceClient,
};
use prost::Message;
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use microloan_domain::ProductRules;

use crate::{
    config::{IDENTITY, LineSettings, RateLimits},
    customers::{CustomerStatus, NewCustomer},
    error::AccountError,
    identity::AgeBand,
    line_cache::LineCache,
    pii::{PiiField, PiiKeys},
    store::lines::{LineStatus, LineUpdate, lock_latest_line, update_line},
    store::{
        audit::{AuditEntry, insert_audit_entry},
        customers::{
            CustomerRow, find_customer, find_sealed_pii, insert_customer, lock_customer,
            update_customer_status,
        },
    },
};

const STAFF: &[Role] = &[Role::Operator, Role::Service];
const OPERATOR: &[Role] = &[Role::Operator];
/// Other microloan services only: the one RPC that returns PII unmasked (notification).
const SERVICE: &[Role] = &[Role::Service];
/// Customers call these for their own data only; the handler checks ownership.
const ANYONE: &[Role] = &[Role::Operator, Role::Service, Role::Customer];

/// Who may call what, exactly as each RPC's `Roles:` comment says (checked by test).
/// A customer token reaches only its own customer's data
/// (checked in each handler with `Caller::ensure_may_access_customer`).
pub fn permissions() -> PermissionTable {
    PermissionTable::new(
        SERVICE_NAME,
        &[
            ("CreateCustomer", STAFF),
            ("GetCustomer", ANYONE),
            ("UpdateCustomerStatus", OPERATOR),
            ("ApplyForCreditLine", ANYONE),
            ("GetCreditLine", ANYONE),
            ("RequestLimitIncrease", ANYONE),
            ("AdjustCreditLine", STAFF),
            ("QuoteLoan", ANYONE),
            ("Borrow", ANYONE),
            ("Repay", ANYONE),
            ("ListLoans", ANYONE),
            ("GetContactPoint", SERVICE),
        ],
    )
}

/// The rules and keys the handlers apply, from the configuration.
#[derive(Debug, Clone)]
pub struct Rules {
    pub pii: PiiKeys,
    pub age_band: AgeBand,
    pub product: ProductRules,
    pub lines: LineSettings,
    pub rate_limits: RateLimits,
}

#[derive(Debug, Clone)]
pub struct AccountApi {
    pub(crate) pool: PgPool,
    pub(crate) rules: Rules,
    pub(crate) cache: Cache,
    pub(crate) line_cache: LineCache,
    pub(crate) peers: Peers,
}

/// Clients for the services this one calls.
#[derive(Debug, Clone)]
pub struct Peers {
    pub scoring: ScoringServiceClient<PeerChannel>,
    pub ledger: LedgerServiceClient<PeerChannel>,
    pub notification: NotificationServiceClient<PeerChannel>,
}

impl AccountApi {
    pub fn new(pool: PgPool, cache: Cache, peers: Peers, rules: Rules) -> Self {
        let line_cache = LineCache::new(cache.clone(), rules.lines.cache_ttl);
        Self {
            pool,
            rules,
            cache,
            line_cache,
            peers,
        }
    }

    async fn create_customer(
        &self,
        caller: &Caller,
        request: proto::CreateCustomerRequest,
    ) -> Result<proto::CreateCustomerResponse, AccountError> {
        let customer = with_request_id(&request.request_id, NewCustomer::parse(&request))?;
        customer.ensure_eligible(self.rules.age_band, today_in_shanghai())?;
        // Per person (the national id's keyed hash: no PII in Redis) and per device.
        let person = crate::loans::hex(
            &self
                .rules
                .pii
                .lookup_hash(PiiField::NationalId, customer.national_id.expose()),
        );
        crate::rate_limit::check_customer_and_device(
            &self.cache,
            "CreateCustomer",
            &person,
            &customer.device_id,
            self.rules.rate_limits.create_customer,
        )
        .await?;
        let owned_key = OwnedKey::new(caller, "CreateCustomer", &request);
        let key = owned_key.key();
        let mut tx = self.pool.begin().await?;
        if let Some(stored) = idempotency::claim(&mut tx, key).await? {
            return decode_stored(&stored);
        }
        let customer_id = Uuid::now_v7();
        let row = insert_customer(&mut tx, &self.rules.pii, customer_id, &customer)
            .await?
            .map_err(|existing| AccountError::AlreadyExists {
                reason: "CUSTOMER_EXISTS",
                message: "a customer with this national id exists".into(),
                metadata: vec![("customer_id", existing.to_string())],
            })?;
        emit(
            &mut tx,
            customer_id,
            Payload::CustomerCreated(CustomerCreated {
                customer_id: customer_id.to_string(),
                locale: customer.locale.as_str().to_owned(),
                device_id: customer.device_id.clone(),
            }),
        )
        .await?;
        let response = proto::CreateCustomerResponse {
            customer: Some(customer_to_proto(&row)?),
        };
        if caller.role == Role::Operator {
            insert_audit_entry(
                &mut tx,
                AuditEntry {
                    actor: &caller.subject,
                    role: caller.role.as_str(),
                    rpc: "CreateCustomer",
                    request_id: &request.request_id,
                    customer_id: Some(customer_id),
                    before: None,
                    after: Some(audit_view(&row)),
                },
            )
            .await?;
        }
        idempotency::record_response(&mut tx, key, &response.encode_to_vec()).await?;
        tx.commit().await?;
        Ok(response)
    }

    async fn get_customer(
        &self,
        caller: &Caller,
        request: proto::GetCustomerRequest,
    ) -> Result<proto::GetCustomerResponse, AccountError> {
        let customer_id = parse_id("customer_id", &request.customer_id)?;
        let mut conn = self.pool.acquire().await?;
        let row = find_customer(&mut conn, customer_id)
            .await?
            .ok_or_else(|| AccountError::not_found("customer", customer_id.to_string()))?;
        if !caller.may_access_customer(customer_id) {
            return Err(AccountError::NotResourceOwner);
        }
        Ok(proto::GetCustomerResponse {
            customer: Some(customer_to_proto(&row)?),
        })
    }
}

/// Longest status reason (account.proto).
const STATUS_REASON_CHARS_MAX: usize = 512;

impl AccountApi {
    async fn update_customer_status(
        &self,
        caller: &Caller,
        request: proto::UpdateCustomerStatusRequest,
    ) -> Result<proto::UpdateCustomerStatusResponse, AccountError> {
        let mut violations: Vec<(&'static str, String)> = Vec::new();
        let customer_id =
            push_request_and_customer(&mut violations, &request.request_id, &request.customer_id);
        let target = match proto::CustomerStatus::try_from(request.status) {
            Ok(proto::CustomerStatus::Active) => Some(CustomerStatus::Active),
            Ok(proto::CustomerStatus::Suspended) => Some(CustomerStatus::Suspended),
            Ok(proto::CustomerStatus::Closed) => Some(CustomerStatus::Closed),
            _ => {
                violations.push(("status", "must be ACTIVE, SUSPENDED or CLOSED".to_owned()));
                None
            }
        };
        let reason_chars = request.reason.trim().chars().count();
        if reason_chars == 0 || reason_chars > STATUS_REASON_CHARS_MAX {
            violations.push(("reason", "must be 1-512 characters".to_owned()));
        }
        if !violations.is_empty() {
            return Err(AccountError::InvalidArgument(violations));
        }
        let (Some(customer_id), Some(target)) = (customer_id, target) else {
            return Err(AccountError::Internal("parsed without a violation".into()));
        };
        let owned_key = OwnedKey::new(caller, "UpdateCustomerStatus", &request);
        let key = owned_key.key();
        let mut tx = self.pool.begin().await?;
        if let Some(stored) = idempotency::claim(&mut tx, key).await? {
            return decode_stored(&stored);
        }
        let before = lock_customer(&mut tx, customer_id)
            .await?
            .ok_or_else(|| AccountError::not_found("customer", customer_id.to_string()))?;
        let current = before.status()?;
        if current == CustomerStatus::Closed && target != CustomerStatus::Closed {
            return Err(AccountError::FailedPrecondition {
                reason: "CUSTOMER_NOT_ACTIVE",
                message: "a closed customer cannot be reopened".into(),
                metadata: vec![("status", current.as_str().to_owned())],
            });
        }
        if target == CustomerStatus::Closed && current != CustomerStatus::Closed {
            self.ensure_nothing_owed(customer_id).await?;
        }
        let after = if target == current {
            before.clone()
        } else {
            update_customer_status(&mut tx, customer_id, target, request.reason.trim()).await?
        };
        insert_audit_entry(
            &mut tx,
            AuditEntry {
                actor: &caller.subject,
                role: caller.role.as_str(),
                rpc: "UpdateCustomerStatus",
                request_id: &request.request_id,
                customer_id: Some(customer_id),
                before: Some(audit_view(&before)),
                after: Some(audit_view(&after)),
            },
        )
        .await?;
        // Suspending freezes the line, closing closes it (reactivating unfreezes nothing).
        let line_change = match target {
            CustomerStatus::Suspended if target != current => Some(LineStatus::Frozen),
            CustomerStatus::Closed if target != current => Some(LineStatus::Closed),
            _ => None,
        };
        let line = match line_change {
            Some(status) => {
                self.line_follows_customer(&mut tx, customer_id, status)
                    .await?
            }
            None => None,
        };
        let response = proto::UpdateCustomerStatusResponse {
            customer: Some(customer_to_proto(&after)?),
            credit_line: line.as_ref().map(|(_, line)| line.clone()),
        };
        idempotency::record_response(&mut tx, key, &response.encode_to_vec()).await?;
        tx.commit().await?;
        if let Some((version, line)) = line {
            self.line_cache.put(customer_id, version, &line).await;
        }
        Ok(response)
    }

    /// Freezes or closes the customer's line with the customer's status change
    /// (CreditLineChanged, source CUSTOMER_STATUS_CHANGE); closing sets its ledger
    /// limit to 0. Returns the line's new cache version and view, if it changed.
    async fn line_follows_customer(
        &self,
        tx: &mut sqlx::PgConnection,
        customer_id: Uuid,
        status: LineStatus,
    ) -> Result<Option<(i64, proto::CreditLine)>, AccountError> {
        use crate::lines::{Balance, ChangeView, change_to_proto, derived_id, line_to_proto};
        let Some(before_row) = lock_latest_line(tx, customer_id).await? else {
            return Ok(None);
        };
        let current = before_row.status();
        if current == LineStatus::Closed || current == status {
            return Ok(None);
        }
        let before = self.ledger_balance(customer_id).await?;
        let after = if status == LineStatus::Closed {
            let mut ledger = self.peers.ledger.clone();
            let changed = ledger
                .change_credit_limit(microloan_proto::ledger::v1::ChangeCreditLimitRequest {
                    request_id: derived_id(&["CloseLine", &before_row.credit_line_id.to_string()])
                        .to_string(),
                    customer_id: customer_id.to_string(),
                    new_limit: Some(cny(0)),
                    clamp_to_utilisation: true,
                })
                .await
                .map_err(|status| crate::peers::from_peer("ledger", &status))?
                .into_inner();
            Balance::of_ledger(changed.credit_line.as_ref())
        } else {
            before
        };
        let reason = if status == LineStatus::Closed {
            "CUSTOMER_CLOSED"
        } else {
            "CUSTOMER_SUSPENDED"
        };
        let after_row = update_line(
            tx,
            before_row.credit_line_id,
            &LineUpdate {
                status: Some((status, reason.to_owned())),
                limit_changed: after.limit_minor != before.limit_minor,
                ..LineUpdate::default()
            },
        )
        .await?;
        let change = change_to_proto(&ChangeView {
            before_row: &before_row,
            before: &before,
            after_row: &after_row,
            after: &after,
            source: common::CreditLineChangeSource::CustomerStatusChange,
            reasons: vec![common::ReasonCode {
                code: reason.to_owned(),
                description: "the customer's status changed".to_owned(),
                points_lost: 0,
                feature: String::new(),
            }],
            decision_id: None,
        });
        emit(
            tx,
            customer_id,
            Payload::CreditLineChanged(microloan_proto::events::v1::CreditLineChanged {
                change: Some(change),
            }),
        )
        .await?;
        let line = line_to_proto(&after_row, &after, &self.rules.product, &self.rules.lines);
        Ok(Some((after_row.cache_version, line)))
    }

    /// OUTSTANDING_BALANCE while the ledger holds an active loan of the customer.
    async fn ensure_nothing_owed(&self, customer_id: Uuid) -> Result<(), AccountError> {
        use microloan_proto::{common::v1::LoanStatus, ledger::v1::ListLoansRequest};
        let mut ledger = self.peers.ledger.clone();
        let active = ledger
            .list_loans(ListLoansRequest {
                customer_id: customer_id.to_string(),
                statuses: vec![LoanStatus::Active as i32],
                page_size: 500,
                ..ListLoansRequest::default()
            })
            .await
            .map_err(|status| match status.code() {
                tonic::Code::Unavailable
                | tonic::Code::DeadlineExceeded
                | tonic::Code::Cancelled => AccountError::DependencyUnavailable {
                    dependency: "ledger",
                    message: status.message().to_owned(),
                },
                _ => AccountError::Internal(format!("ledger ListLoans: {status:?}")),
            })?
            .into_inner();
        let outstanding: i64 = active
            .loans
            .iter()
            .filter_map(|loan| loan.total_outstanding.as_ref())
            .map(|money| money.minor_units)
            .sum();
        if active.loans.is_empty() {
            return Ok(());
        }
        Err(AccountError::FailedPrecondition {
            reason: "OUTSTANDING_BALANCE",
            message: "the customer still owes money".into(),
            metadata: vec![("outstanding_minor_units", outstanding.to_string())],
        })
    }
}

/// Longest `purpose` of a contact-point read.
const PURPOSE_CHARS_MAX: usize = 128;

impl AccountApi {
    async fn get_contact_point(
        &self,
        caller: &Caller,
        request: proto::GetContactPointRequest,
    ) -> Result<proto::GetContactPointResponse, AccountError> {
        let customer_id = parse_id("customer_id", &request.customer_id);
        let purpose_chars = request.purpose.chars().count();
        let purpose_problem = (purpose_chars == 0 || purpose_chars > PURPOSE_CHARS_MAX)
            .then(|| ("purpose", "must be 1-128 characters".to_owned()));
        let customer_id = match (customer_id, purpose_problem) {
            (Ok(id), None) => id,
            (Ok(_), Some(problem)) => return Err(AccountError::InvalidArgument(vec![problem])),
            (Err(AccountError::InvalidArgument(mut violations)), problem) => {
                violations.extend(problem);
                return Err(AccountError::InvalidArgument(violations));
            }
            (Err(other), _) => return Err(other),
        };
        let mut tx = self.pool.begin().await?;
        let row = find_customer(&mut tx, customer_id)
            .await?
            .ok_or_else(|| AccountError::not_found("customer", customer_id.to_string()))?;
        let (_, _, phone_sealed) = find_sealed_pii(&mut tx, customer_id)
            .await?
            .ok_or_else(|| AccountError::not_found("customer", customer_id.to_string()))?;
        let phone = self
            .rules
            .pii
            .open(PiiField::Phone, &customer_id.to_string(), &phone_sealed)
            .map_err(|err| AccountError::Internal(format!("customer {customer_id}: {err}")))?;
        insert_audit_entry(
            &mut tx,
            AuditEntry {
                actor: &caller.subject,
                role: caller.role.as_str(),
                rpc: "GetContactPoint",
                request_id: "",
                customer_id: Some(customer_id),
                before: None,
                after: Some(serde_json::json!({ "purpose": request.purpose })),
            },
        )
        .await?;
        tx.commit().await?;
        Ok(proto::GetContactPointResponse {
            customer_id: customer_id.to_string(),
            phone,
            locale: row.locale.clone(),
            status: row.status()?.to_proto() as i32,
        })
    }
}

/// `parsed`, with a malformed request_id added to its field violations.
fn with_request_id<T>(
    request_id: &str,
    parsed: Result<T, AccountError>,
) -> Result<T, AccountError> {
    let Some(problem) = idempotency::request_id_problem(request_id) else {
        return parsed;
    };
    let mut violations = vec![("request_id", problem.to_owned())];
    if let Err(AccountError::InvalidArgument(more)) = parsed {
        violations.extend(more);
    }
    Err(AccountError::InvalidArgument(violations))
}

/// A mutating request that carries an idempotency key.
pub(crate) trait Idempotent: Message + Clone {
    fn request_id_mut(&mut self) -> &mut String;
}

macro_rules! idempotent_requests {
    ($($request:ident),* $(,)?) => {
        $(impl Idempotent for proto::$request {
            fn request_id_mut(&mut self) -> &mut String {
                &mut self.request_id
            }
        })*
    };
}

idempotent_requests!(
    CreateCustomerRequest,
    UpdateCustomerStatusRequest,
    ApplyForCreditLineRequest,
    RequestLimitIncreaseRequest,
    AdjustCreditLineRequest,
    BorrowRequest,
    RepayRequest,
);

/// A request's idempotency key, owned: the caller's scope, the RPC, the request_id and
/// the body without it (so a retry with the same body matches).
#[derive(Debug)]
pub(crate) struct OwnedKey {
    pub caller: String,
    rpc: &'static str,
    request_id: String,
    body: Vec<u8>,
}

impl OwnedKey {
    pub fn new<R: Idempotent>(caller: &Caller, rpc: &'static str, request: &R) -> Self {
        let mut body = request.clone();
        let request_id = std::mem::take(body.request_id_mut());
        Self {
            caller: caller.idempotency_scope(),
            rpc,
            request_id,
            body: body.encode_to_vec(),
        }
    }

    pub fn key(&self) -> RequestKey<'_> {
        RequestKey {
            caller: &self.caller,
            rpc: self.rpc,
            request_id: &self.request_id,
            body: &self.body,
        }
    }
}

pub(crate) fn decode_stored<T: Message + Default>(stored: &[u8]) -> Result<T, AccountError> {
    T::decode(stored).map_err(|err| AccountError::Internal(format!("stored response: {err}")))
}

/// A UUID field parsed into `violations`: the id, or `None` with a violation naming it.
pub(crate) fn push_id(
    violations: &mut Vec<(&'static str, String)>,
    field: &'static str,
    text: &str,
) -> Option<Uuid> {
    match parse_id(field, text) {
        Ok(id) => Some(id),
        Err(AccountError::InvalidArgument(more)) => {
            violations.extend(more);
            None
        }
        Err(_) => None,
    }
}

/// A mutating request's `request_id` and `customer_id`, parsed into `violations`.
pub(crate) fn push_request_and_customer(
    violations: &mut Vec<(&'static str, String)>,
    request_id: &str,
    customer_id: &str,
) -> Option<Uuid> {
    if let Some(problem) = idempotency::request_id_problem(request_id) {
        violations.push(("request_id", problem.to_owned()));
    }
    push_id(violations, "customer_id", customer_id)
}

/// Appends `payload` to account's outbox, in the caller's transaction.
pub(crate) async fn emit(
    conn: &mut sqlx::PgConnection,
    customer_id: Uuid,
    payload: Payload,
) -> Result<(), sqlx::Error> {
    microloan_events::append(
        conn,
        IDENTITY.name,
        NewEvent {
            customer_id,
            business_date: None,
            payload,
        },
    )
    .await?;
    Ok(())
}

/// A UUID request field, normalised; INVALID_ARGUMENT naming `field` otherwise.
pub(crate) fn parse_id(field: &'static str, text: &str) -> Result<Uuid, AccountError> {
    Uuid::parse_str(text)
        .ok()
        .filter(|_| text.len() == 36)
        .ok_or_else(|| AccountError::InvalidArgument(vec![(field, "must be a UUID".to_owned())]))
}

/// Business dates are in Asia/Shanghai, which has been UTC+8 all year since 1991.
pub(crate) fn today_in_shanghai() -> NaiveDate {
    const SHANGHAI_OFFSET_SECONDS: i32 = 8 * 60 * 60;
    let offset = FixedOffset::east_opt(SHANGHAI_OFFSET_SECONDS).expect("valid offset");
    Utc::now().with_timezone(&offset).date_naive()
}

pub(crate) fn cny(minor_units: i64) -> common::Money {
    common::Money {
        currency_code: "CNY".into(),
        minor_units,
    }
}

fn customer_to_proto(row: &CustomerRow) -> Result<proto::Customer, AccountError> {
    Ok(proto::Customer {
        customer_id: row.customer_id.to_string(),
        status: row.status()?.to_proto() as i32,
        status_reason: row.status_reason.clone(),
        name_masked: row.name_masked.clone(),
        national_id_masked: row.national_id_masked.clone(),
        phone_masked: row.phone_masked.clone(),
        annual_income: Some(cny(row.annual_income_minor)),
        locale: row.locale.clone(),
        create_time: Some(convert::timestamp(row.create_time)),
        update_time: Some(convert::timestamp(row.update_time)),
    })
}

/// What the audit log keeps of a customer: the id, status and masked fields only.
fn audit_view(row: &CustomerRow) -> serde_json::Value {
    serde_json::json!({
        "customer_id": row.customer_id,
        "status": row.status,
        "status_reason": row.status_reason,
        "name_masked": row.name_masked,
        "national_id_masked": row.national_id_masked,
        "phone_masked": row.phone_masked,
        "annual_income_minor": row.annual_income_minor,
        "locale": row.locale,
    })
}

#[tonic::async_trait]
impl AccountService for AccountApi {
    async fn create_customer(
        &self,
        request: Request<proto::CreateCustomerRequest>,
    ) -> Result<Response<proto::CreateCustomerResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.create_customer(&caller, request.into_inner()).await?,
        ))
    }

    async fn update_customer_status(
        &self,
        request: Request<proto::UpdateCustomerStatusRequest>,
    ) -> Result<Response<proto::UpdateCustomerStatusResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.update_customer_status(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn get_contact_point(
        &self,
        request: Request<proto::GetContactPointRequest>,
    ) -> Result<Response<proto::GetContactPointResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.get_contact_point(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn apply_for_credit_line(
        &self,
        request: Request<proto::ApplyForCreditLineRequest>,
    ) -> Result<Response<proto::ApplyForCreditLineResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.apply_for_credit_line(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn get_credit_line(
        &self,
        request: Request<proto::GetCreditLineRequest>,
    ) -> Result<Response<proto::GetCreditLineResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.get_credit_line(&caller, request.into_inner()).await?,
        ))
    }

    async fn adjust_credit_line(
        &self,
        request: Request<proto::AdjustCreditLineRequest>,
    ) -> Result<Response<proto::AdjustCreditLineResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.adjust_credit_line(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn quote_loan(
        &self,
        request: Request<proto::QuoteLoanRequest>,
    ) -> Result<Response<proto::QuoteLoanResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.quote_loan(&caller, request.into_inner()).await?,
        ))
    }

    async fn borrow(
        &self,
        request: Request<proto::BorrowRequest>,
    ) -> Result<Response<proto::BorrowResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.borrow(&caller, request.into_inner()).await?,
        ))
    }

    async fn repay(
        &self,
        request: Request<proto::RepayRequest>,
    ) -> Result<Response<proto::RepayResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.repay(&caller, request.into_inner()).await?,
        ))
    }

    async fn list_loans(
        &self,
        request: Request<proto::ListLoansRequest>,
    ) -> Result<Response<proto::ListLoansResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.list_loans(&caller, request.into_inner()).await?,
        ))
    }

    async fn request_limit_increase(
        &self,
        request: Request<proto::RequestLimitIncreaseRequest>,
    ) -> Result<Response<proto::RequestLimitIncreaseResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.request_limit_increase(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn get_customer(
        &self,
        request: Request<proto::GetCustomerRequest>,
    ) -> Result<Response<proto::GetCustomerResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        Ok(Response::new(
            self.get_customer(&caller, request.into_inner()).await?,
        ))
    }
}

#[cfg(test)]
mod tests {
    /// Every RPC has exactly one entry, granting exactly its documented `Roles:`.
    #[test]
    fn the_permission_table_matches_the_proto() {
        microloan_platform::auth::assert_table_matches_proto(
            &super::permissions(),
            microloan_proto::FILE_DESCRIPTOR_SET,
            super::SERVICE_NAME,
        );
    }
}
