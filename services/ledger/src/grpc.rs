//! The gRPC face of the ledger service: proto ⇄ domain and errors → `Status`, nothing
//! else (rules live in `gl`, SQL in `store`). RPCs of the loan book not yet implemented
//! answer UNIMPLEMENTED (generated default methods).

mod book;
mod convert;
mod portfolio;

use microloan_platform::{
    auth::{Caller, PermissionTable, Role},
    cache::Cache,
    idempotency::RequestKey,
};
use microloan_proto::ledger::v1::{
    self as proto,
    ledger_service_server::{LedgerService, SERVICE_NAME},
};
use prost::Message;
use sqlx::PgPool;
use tonic::{Request, Response, Status};
use uuid::Uuid;

use crate::{
    error::LedgerError,
    gl::{
        CURRENCY_CNY, TIME_ZONE,
        accounts::AccountKey,
        ids::IdField,
        requests::{self, PageToken},
        transfers::Poster,
    },
    store::{self, transfers::TransferFilter},
};

/// Services only: money moves on a loan or credit line only through account's journeys
/// (operators post corrections as MANUAL_ADJUSTMENT transfers instead).
const SERVICE: &[Role] = &[Role::Service];
const INTERNAL: &[Role] = &[Role::Operator, Role::Service];

/// Who may call what, exactly as each RPC's `Roles:` comment says (checked by test).
/// Customers never reach the ledger directly: account checks their ownership and calls
/// on their behalf with a service token.
pub fn permissions() -> PermissionTable {
    PermissionTable::new(
        SERVICE_NAME,
        &[
            ("CreateAccounts", INTERNAL),
            ("CreateTransfers", INTERNAL),
            ("GetAccount", INTERNAL),
            ("ListTransfers", INTERNAL),
            ("GetTrialBalance", INTERNAL),
            ("OpenCreditLine", SERVICE),
            ("ChangeCreditLimit", SERVICE),
            ("Disburse", SERVICE),
            ("Repay", SERVICE),
            ("GetLoan", INTERNAL),
            ("ListLoans", INTERNAL),
            ("QuotePayoff", INTERNAL),
            ("WriteOff", INTERNAL),
            ("RunEndOfDay", INTERNAL),
            ("GetBusinessDate", INTERNAL),
            ("GetPortfolioReport", INTERNAL),
            ("VerifyIntegrity", INTERNAL),
        ],
    )
}

#[derive(Debug, Clone)]
pub struct LedgerApi {
    pool: PgPool,
    #[allow(dead_code, reason = "used by the loan-book RPCs as they land")]
    cache: Cache,
    rules: crate::book::BookRules,
}

impl LedgerApi {
    pub fn new(pool: PgPool, cache: Cache, rules: crate::book::BookRules) -> Self {
        Self { pool, cache, rules }
    }
}

/// Reservations GetAccount expires on the account it reads, at most.
const LAZY_EXPIRY_LIMIT: i64 = 1000;

/// The idempotency scope of a caller: role and subject.
fn caller_scope<T>(request: &Request<T>) -> Result<(String, Poster), Status> {
    let caller = Caller::of(request)?;
    let poster = match caller.role {
        Role::Operator => Poster::Operator,
        Role::Service | Role::Customer => Poster::Service,
    };
    Ok((caller.idempotency_scope(), poster))
}

fn decode<M: Message + Default>(bytes: &[u8]) -> Result<M, LedgerError> {
    M::decode(bytes).map_err(|err| LedgerError::Internal(format!("stored response: {err}")))
}

/// An optional UUID request field: empty = None; malformed = a field violation.
fn optional_uuid(
    field: &'static str,
    text: &str,
    violations: &mut Vec<requests::Violation>,
) -> Option<Uuid> {
    match IdField::parse(text) {
        IdField::Empty => None,
        IdField::Valid(id) => Some(id),
        IdField::Malformed => {
            violations.push((field, "must be a UUID".to_owned()));
            None
        }
    }
}

fn optional_date(
    field: &'static str,
    date: Option<&microloan_proto::google::r#type::Date>,
    violations: &mut Vec<requests::Violation>,
) -> Option<chrono::NaiveDate> {
    let date = date?;
    let parsed = convert::naive_date(date);
    if parsed.is_none() {
        violations.push((field, "must be a full, existing calendar date".to_owned()));
    }
    parsed
}

fn check(violations: Vec<requests::Violation>) -> Result<(), LedgerError> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(LedgerError::InvalidArgument(violations))
    }
}

/// currency_code of a report: empty = CNY, anything else but CNY is refused.
fn report_currency(currency_code: &str) -> Result<&'static str, LedgerError> {
    match currency_code {
        "" | CURRENCY_CNY => Ok(CURRENCY_CNY),
        _ => Err(LedgerError::invalid(
            "currency_code",
            "must be empty or CNY",
        )),
    }
}

impl LedgerApi {
    async fn create_accounts(
        &self,
        caller: &str,
        request: proto::CreateAccountsRequest,
    ) -> Result<proto::CreateAccountsResponse, LedgerError> {
        check(requests::check_batch(
            &request.request_id,
            "accounts",
            request.accounts.len(),
        ))?;
        let items: Vec<_> = request.accounts.iter().map(convert::account_item).collect();
        let body = proto::CreateAccountsRequest {
            request_id: String::new(),
            accounts: request.accounts.clone(),
        }
        .encode_to_vec();
        let key = RequestKey {
            caller,
            rpc: "CreateAccounts",
            request_id: &request.request_id,
            body: &body,
        };
        let response = store::accounts::create_accounts(&self.pool, key, &items, |plan| {
            convert::create_accounts_response(&request.accounts, plan).encode_to_vec()
        })
        .await?;
        decode(&response)
    }

    async fn create_transfers(
        &self,
        caller: &str,
        poster: Poster,
        request: proto::CreateTransfersRequest,
    ) -> Result<proto::CreateTransfersResponse, LedgerError> {
        check(requests::check_batch(
            &request.request_id,
            "transfers",
            request.transfers.len(),
        ))?;
        let items: Vec<_> = request
            .transfers
            .iter()
            .map(convert::transfer_item)
            .collect();
        // The body as hashed: the request with request_id cleared, encoded in place
        // rather than from a copy of up to 1,000 transfers.
        let mut request = request;
        let request_id = std::mem::take(&mut request.request_id);
        let body = request.encode_to_vec();
        let key = RequestKey {
            caller,
            rpc: "CreateTransfers",
            request_id: &request_id,
            body: &body,
        };
        let response =
            store::transfers::create_transfers(&self.pool, key, &items, poster, |plan| {
                convert::create_transfers_response(&request.transfers, plan).encode_to_vec()
            })
            .await?;
        decode(&response)
    }

    async fn get_account(
        &self,
        request: proto::GetAccountRequest,
    ) -> Result<proto::GetAccountResponse, LedgerError> {
        use proto::get_account_request::Lookup;
        let (id, key) = match &request.lookup {
            None => {
                return Err(LedgerError::invalid("account_id", "set account_id or key"));
            }
            Some(Lookup::AccountId(text)) => {
                let id = crate::gl::ids::parse_uuid(text)
                    .ok_or_else(|| LedgerError::invalid("account_id", "must be a UUID"))?;
                (Some(id), None)
            }
            Some(Lookup::Key(key)) => {
                let key = AccountKey::parse(
                    key.code,
                    &key.currency_code,
                    &key.customer_id,
                    &key.loan_id,
                    key.sub_account,
                )
                .map_err(|violations| {
                    LedgerError::InvalidArgument(
                        violations
                            .into_iter()
                            .map(|(field, description)| (field, description.to_owned()))
                            .collect(),
                    )
                })?;
                (None, Some(key))
            }
        };
        let found = match (id, &key) {
            (Some(id), _) => store::accounts::find_account_by_id(&self.pool, id).await?,
            (None, Some(key)) => store::accounts::find_account_by_key(&self.pool, key).await?,
            (None, None) => None,
        };
        let not_found = || LedgerError::NotFound {
            resource_type: "account",
            name: match &request.lookup {
                Some(Lookup::AccountId(id)) => id.to_ascii_lowercase(),
                _ => key.as_ref().map_or_else(String::new, |key| {
                    let id = |id: Option<Uuid>| id.map(|id| id.to_string()).unwrap_or_default();
                    format!(
                        "code={} currency={} customer_id={} loan_id={} sub_account={}",
                        key.code.as_i32(),
                        key.currency,
                        id(key.customer_id),
                        id(key.loan_id),
                        key.sub_account
                    )
                }),
            },
        };
        let mut account = found.ok_or_else(not_found)?;
        // Reading an account touches it: expire its reservations past their timeout first.
        if store::transfers::expire_due_reservations(
            &self.pool,
            Some(account.id),
            LAZY_EXPIRY_LIMIT,
        )
        .await?
            > 0
        {
            account = store::accounts::find_account_by_id(&self.pool, account.id)
                .await?
                .ok_or_else(not_found)?;
        }
        Ok(proto::GetAccountResponse {
            account: Some(convert::account(&account)),
        })
    }

    async fn list_transfers(
        &self,
        request: proto::ListTransfersRequest,
    ) -> Result<proto::ListTransfersResponse, LedgerError> {
        let mut violations = Vec::new();
        let filter = TransferFilter {
            account_id: optional_uuid("account_id", &request.account_id, &mut violations),
            loan_id: optional_uuid("loan_id", &request.loan_id, &mut violations),
            customer_id: optional_uuid("customer_id", &request.customer_id, &mut violations),
            codes: request.codes.clone(),
            start_date: optional_date("start_date", request.start_date.as_ref(), &mut violations),
            end_date: optional_date("end_date", request.end_date.as_ref(), &mut violations),
        };
        if [&request.account_id, &request.loan_id, &request.customer_id]
            .iter()
            .all(|field| field.is_empty())
        {
            violations.push((
                "account_id",
                "set at least one of account_id, loan_id, customer_id".to_owned(),
            ));
        }
        if request
            .codes
            .iter()
            .any(|code| crate::gl::transfers::TransferCode::from_i32(*code).is_none())
        {
            violations.push(("codes", "every code must be a transfer code".to_owned()));
        }
        if let (Some(start), Some(end)) = (filter.start_date, filter.end_date)
            && start > end
        {
            violations.push(("end_date", "must not be before start_date".to_owned()));
        }
        let page_size = requests::page_size(request.page_size)
            .map_err(|v| violations.push(v))
            .ok();
        let mut codes: Vec<String> = request.codes.iter().map(i32::to_string).collect();
        codes.sort();
        let dates =
            |date: Option<chrono::NaiveDate>| date.map(|date| date.to_string()).unwrap_or_default();
        let fingerprint = requests::fingerprint(&[
            &request.account_id.to_ascii_lowercase(),
            &request.loan_id.to_ascii_lowercase(),
            &request.customer_id.to_ascii_lowercase(),
            &codes.join(","),
            &dates(filter.start_date),
            &dates(filter.end_date),
        ]);
        let token = PageToken::decode(&request.page_token, fingerprint)
            .map_err(|v| violations.push(v))
            .ok()
            .flatten();
        check(violations)?;
        let page_size = page_size.unwrap_or(requests::PAGE_SIZE_DEFAULT);
        let after_seq = token.map_or(0, |token| token.after_seq);
        let mut rows =
            store::transfers::list_transfers(&self.pool, &filter, after_seq, page_size + 1).await?;
        let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) > page_size;
        rows.truncate(usize::try_from(page_size).unwrap_or(usize::MAX));
        let next_page_token = match rows.last() {
            Some((seq, _)) if more => PageToken {
                after_seq: *seq,
                filters: fingerprint,
            }
            .encode(),
            _ => String::new(),
        };
        Ok(proto::ListTransfersResponse {
            transfers: rows
                .iter()
                .map(|(_, transfer)| convert::transfer(transfer))
                .collect(),
            next_page_token,
        })
    }

    async fn get_trial_balance(
        &self,
        request: proto::GetTrialBalanceRequest,
    ) -> Result<proto::GetTrialBalanceResponse, LedgerError> {
        let currency = report_currency(&request.currency_code)?;
        let mut violations = Vec::new();
        let as_of = optional_date("as_of_date", request.as_of_date.as_ref(), &mut violations);
        check(violations)?;
        let today = store::business_date::read_business_date(&self.pool).await?;
        let lines = match as_of {
            Some(as_of) if as_of > today.business_date => {
                return Err(LedgerError::invalid(
                    "as_of_date",
                    format!(
                        "must not be after the business date {}",
                        today.business_date
                    ),
                ));
            }
            Some(as_of) => {
                store::reports::sum_posted_per_code_as_of(&self.pool, currency, as_of).await?
            }
            None => store::reports::sum_balances_per_code(&self.pool, currency).await?,
        };
        let total = |f: fn(&store::reports::TrialBalanceLine) -> i64| {
            lines
                .iter()
                .try_fold(0i64, |sum, line| sum.checked_add(f(line)))
                .ok_or_else(|| LedgerError::Internal("trial balance total exceeds int64".into()))
        };
        let debits_posted = total(|line| line.debits_posted)?;
        let credits_posted = total(|line| line.credits_posted)?;
        let debits_pending = total(|line| line.debits_pending)?;
        let credits_pending = total(|line| line.credits_pending)?;
        Ok(proto::GetTrialBalanceResponse {
            as_of_date: convert::date(as_of.unwrap_or(today.business_date)),
            currency_code: currency.to_owned(),
            lines: lines
                .iter()
                .map(|line| convert::trial_balance_line(currency, line))
                .collect(),
            total_debits_posted: convert::money(currency, debits_posted),
            total_credits_posted: convert::money(currency, credits_posted),
            total_debits_pending: convert::money(currency, debits_pending),
            total_credits_pending: convert::money(currency, credits_pending),
            balanced: debits_posted == credits_posted && debits_pending == credits_pending,
            compute_time: convert::timestamp(today.now),
        })
    }

    async fn verify_integrity(
        &self,
        request: proto::VerifyIntegrityRequest,
    ) -> Result<proto::VerifyIntegrityResponse, LedgerError> {
        let mut violations = Vec::new();
        let customer = optional_uuid("customer_id", &request.customer_id, &mut violations);
        if !(0..=requests::VIOLATIONS_MAX).contains(&request.max_violations) {
            violations.push((
                "max_violations",
                format!("must be 0..{}", requests::VIOLATIONS_MAX),
            ));
        }
        check(violations)?;
        let max = match request.max_violations {
            0 => requests::VIOLATIONS_DEFAULT,
            max => i64::from(max),
        };
        let report = store::integrity::verify_integrity(&self.pool, customer, max).await?;
        Ok(convert::integrity_report(CURRENCY_CNY, &report))
    }

    async fn get_business_date(&self) -> Result<proto::GetBusinessDateResponse, LedgerError> {
        let today = store::business_date::read_business_date(&self.pool).await?;
        debug_assert_eq!(today.time_zone, TIME_ZONE);
        Ok(proto::GetBusinessDateResponse {
            business_date: convert::date(today.business_date),
            time_zone: today.time_zone,
            last_end_of_day_time: today.last_end_of_day_time.and_then(convert::timestamp),
            end_of_day_running: today.end_of_day_running
                || store::end_of_day::run_in_progress(&self.pool).await?,
        })
    }
}

#[tonic::async_trait]
impl LedgerService for LedgerApi {
    async fn create_accounts(
        &self,
        request: Request<proto::CreateAccountsRequest>,
    ) -> Result<Response<proto::CreateAccountsResponse>, Status> {
        let (caller, _) = caller_scope(&request)?;
        Ok(Response::new(
            self.create_accounts(&caller, request.into_inner()).await?,
        ))
    }

    async fn create_transfers(
        &self,
        request: Request<proto::CreateTransfersRequest>,
    ) -> Result<Response<proto::CreateTransfersResponse>, Status> {
        let (caller, poster) = caller_scope(&request)?;
        Ok(Response::new(
            self.create_transfers(&caller, poster, request.into_inner())
                .await?,
        ))
    }

    async fn get_account(
        &self,
        request: Request<proto::GetAccountRequest>,
    ) -> Result<Response<proto::GetAccountResponse>, Status> {
        Ok(Response::new(self.get_account(request.into_inner()).await?))
    }

    async fn list_transfers(
        &self,
        request: Request<proto::ListTransfersRequest>,
    ) -> Result<Response<proto::ListTransfersResponse>, Status> {
        Ok(Response::new(
            self.list_transfers(request.into_inner()).await?,
        ))
    }

    async fn get_trial_balance(
        &self,
        request: Request<proto::GetTrialBalanceRequest>,
    ) -> Result<Response<proto::GetTrialBalanceResponse>, Status> {
        Ok(Response::new(
            self.get_trial_balance(request.into_inner()).await?,
        ))
    }

    async fn verify_integrity(
        &self,
        request: Request<proto::VerifyIntegrityRequest>,
    ) -> Result<Response<proto::VerifyIntegrityResponse>, Status> {
        Ok(Response::new(
            self.verify_integrity(request.into_inner()).await?,
        ))
    }

    async fn open_credit_line(
        &self,
        request: Request<proto::OpenCreditLineRequest>,
    ) -> Result<Response<proto::OpenCreditLineResponse>, Status> {
        let (caller, _) = caller_scope(&request)?;
        Ok(Response::new(
            self.open_credit_line(&caller, request.into_inner()).await?,
        ))
    }

    async fn change_credit_limit(
        &self,
        request: Request<proto::ChangeCreditLimitRequest>,
    ) -> Result<Response<proto::ChangeCreditLimitResponse>, Status> {
        let (caller, _) = caller_scope(&request)?;
        Ok(Response::new(
            self.change_credit_limit(&caller, request.into_inner())
                .await?,
        ))
    }

    async fn disburse(
        &self,
        request: Request<proto::DisburseRequest>,
    ) -> Result<Response<proto::DisburseResponse>, Status> {
        let (caller, _) = caller_scope(&request)?;
        Ok(Response::new(
            self.disburse(&caller, request.into_inner()).await?,
        ))
    }

    async fn get_loan(
        &self,
        request: Request<proto::GetLoanRequest>,
    ) -> Result<Response<proto::GetLoanResponse>, Status> {
        Ok(Response::new(self.get_loan(request.into_inner()).await?))
    }

    async fn repay(
        &self,
        request: Request<proto::RepayRequest>,
    ) -> Result<Response<proto::RepayResponse>, Status> {
        let (caller, _) = caller_scope(&request)?;
        Ok(Response::new(
            self.repay(&caller, request.into_inner()).await?,
        ))
    }

    async fn list_loans(
        &self,
        request: Request<proto::ListLoansRequest>,
    ) -> Result<Response<proto::ListLoansResponse>, Status> {
        Ok(Response::new(self.list_loans(request.into_inner()).await?))
    }

    async fn quote_payoff(
        &self,
        request: Request<proto::QuotePayoffRequest>,
    ) -> Result<Response<proto::QuotePayoffResponse>, Status> {
        Ok(Response::new(
            self.quote_payoff(request.into_inner()).await?,
        ))
    }

    async fn write_off(
        &self,
        request: Request<proto::WriteOffRequest>,
    ) -> Result<Response<proto::WriteOffResponse>, Status> {
        let (caller, _) = caller_scope(&request)?;
        Ok(Response::new(
            self.write_off(&caller, request.into_inner()).await?,
        ))
    }

    async fn run_end_of_day(
        &self,
        request: Request<proto::RunEndOfDayRequest>,
    ) -> Result<Response<proto::RunEndOfDayResponse>, Status> {
        let (caller, _) = caller_scope(&request)?;
        Ok(Response::new(
            self.run_end_of_day(&caller, request.into_inner()).await?,
        ))
    }

    async fn get_portfolio_report(
        &self,
        request: Request<proto::GetPortfolioReportRequest>,
    ) -> Result<Response<proto::GetPortfolioReportResponse>, Status> {
        Ok(Response::new(
            self.get_portfolio_report(request.into_inner()).await?,
        ))
    }

    async fn get_business_date(
        &self,
        _request: Request<proto::GetBusinessDateRequest>,
    ) -> Result<Response<proto::GetBusinessDateResponse>, Status> {
        Ok(Response::new(self.get_business_date().await?))
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

    #[test]
    fn every_auth_error_reason_is_in_the_api() {
        use microloan_proto::common::v1::ErrorReason;
        for reason in microloan_platform::auth::ERROR_REASONS {
            assert!(
                ErrorReason::from_str_name(&format!("ERROR_REASON_{reason}")).is_some(),
                "{reason} missing from microloan.common.v1.ErrorReason"
            );
        }
    }
}
