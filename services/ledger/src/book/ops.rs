//! The loan book's operations, each one transaction: share-lock the business date, claim
//! the request_id, lock the customer's line, post the linked transfers through the
//! general ledger (`store::transfers::apply_transfers`) and write the book's own rows
//! and the outbox event, so money, loan and event commit together or not at all.

use microloan_domain::loan::{Schedule, apr_of_schedule, build_schedule};
use microloan_events::NewEvent;
use microloan_platform::idempotency::RequestKey;
use microloan_proto::{events::v1::event::Payload, google::r#type::Date};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{BookRules, Disbursement, Posting, chain, check_apr, sub_account_for};
use crate::{
    error::LedgerError,
    gl::{
        accounts::AccountCode,
        transfers::{BatchContext, CreateTransferStatus, Poster, Transfer, TransferCode},
    },
    store::{
        self,
        book::{self as rows, LineBalanceRow, LoanRow, NewLoan},
        business_date::{BusinessDate, share_lock_business_date},
        transfers::apply_transfers,
    },
};

/// The producer name on the ledger's events.
const PRODUCER: &str = "ledger";

/// What opening a line did.
#[derive(Debug, Clone)]
pub struct LineOpened {
    pub line: LineBalanceRow,
    pub transfer: Transfer,
}

/// What a limit change did.
#[derive(Debug, Clone)]
pub struct LimitChanged {
    pub line: LineBalanceRow,
    pub previous_limit_minor: i64,
    pub transfer: Option<Transfer>,
}

/// A booked loan with what the response shows of it.
#[derive(Debug, Clone)]
pub struct Disbursed {
    pub loan: LoanRow,
    pub installments: Vec<rows::InstallmentRow>,
    pub transfers: Vec<Transfer>,
    pub line: LineBalanceRow,
    pub business_date: chrono::NaiveDate,
}

/// Runs `body` as one idempotent transaction: business date share-locked (end of day
/// waits; a running end of day refuses), request_id claimed, `respond` stored with the
/// effects. Returns the encoded response (the stored one on a replay).
async fn idempotent(
    pool: &PgPool,
    key: RequestKey<'_>,
    refuse_during_end_of_day: bool,
    body: impl AsyncFnOnce(&mut PgConnection, BusinessDate) -> Result<Vec<u8>, LedgerError>,
) -> Result<Vec<u8>, LedgerError> {
    let mut tx = pool.begin().await?;
    let today = share_lock_business_date(&mut tx).await?;
    if refuse_during_end_of_day && today.end_of_day_running {
        return Err(LedgerError::EndOfDayRunning);
    }
    if let Some(stored) = store::claim_request_id(&mut tx, key).await? {
        return Ok(stored);
    }
    let response = body(&mut tx, today).await?;
    store::record_response(&mut tx, key, &response).await?;
    tx.commit().await?;
    Ok(response)
}

/// Posts `postings` as one linked chain; `Err` with the failing item's status otherwise.
async fn post(
    conn: &mut PgConnection,
    today: &BusinessDate,
    postings: &[Posting],
    description: &str,
) -> Result<Result<Vec<Transfer>, (usize, CreateTransferStatus)>, LedgerError> {
    let items = chain(postings, description);
    let plan = apply_transfers(
        conn,
        &items,
        BatchContext {
            now: today.now,
            business_date: today.business_date,
            poster: Poster::Service,
        },
    )
    .await?;
    let statuses: Vec<CreateTransferStatus> =
        plan.results.iter().map(|(status, _)| *status).collect();
    if statuses
        .iter()
        .all(|status| *status == CreateTransferStatus::Created)
    {
        return Ok(Ok(plan.created));
    }
    // The item whose own check failed; the others of the chain answer LINKED_EVENT_FAILED.
    let failed = statuses
        .iter()
        .position(|status| {
            !matches!(
                status,
                CreateTransferStatus::Created | CreateTransferStatus::LinkedEventFailed
            )
        })
        .or_else(|| {
            statuses
                .iter()
                .position(|status| *status != CreateTransferStatus::Created)
        })
        .unwrap_or(0);
    Ok(Err((failed, statuses[failed])))
}

fn unexpected(operation: &str, (index, status): (usize, CreateTransferStatus)) -> LedgerError {
    LedgerError::Internal(format!(
        "{operation}: posting {index} refused with {status:?}"
    ))
}

async fn balance(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<LineBalanceRow, LedgerError> {
    rows::line_balance(conn, customer_id)
        .await?
        .ok_or_else(|| LedgerError::Internal("a line vanished inside its transaction".into()))
}

fn line_not_found(customer_id: Uuid) -> LedgerError {
    LedgerError::NotFound {
        resource_type: "credit_line",
        name: customer_id.to_string(),
    }
}

fn line_not_open(line: &rows::LineRow) -> LedgerError {
    LedgerError::precondition(
        "CREDIT_LINE_NOT_OPEN",
        "the customer's credit line is closed in the ledger",
        vec![("credit_line_id", line.credit_line_id.to_string())],
    )
}

/// OpenCreditLine: creates the customer's line (or re-opens a closed one) with
/// `limit_minor`, posting CREDIT_LIMIT_OPEN.
pub async fn open_credit_line(
    pool: &PgPool,
    key: RequestKey<'_>,
    customer_id: Uuid,
    credit_line_id: Uuid,
    limit_minor: i64,
    respond: impl FnOnce(&LineOpened) -> Vec<u8>,
) -> Result<Vec<u8>, LedgerError> {
    idempotent(pool, key, false, async move |conn, today| {
        let existing = rows::lock_line(conn, customer_id).await?;
        let (account_id, previous_limit) = match &existing {
            Some(line) if !line.closed => {
                return Err(LedgerError::AlreadyExists {
                    reason: "CREDIT_LINE_EXISTS",
                    message: "the customer already has an open credit line".into(),
                    metadata: vec![("credit_line_id", line.credit_line_id.to_string())],
                });
            }
            Some(line) => {
                let utilised = balance(conn, customer_id).await?.utilised_minor;
                if limit_minor <= utilised {
                    return Err(LedgerError::precondition(
                        "LIMIT_BELOW_UTILISATION",
                        "a re-opened line's limit must be above the principal still drawn",
                        vec![("utilised_minor_units", utilised.to_string())],
                    ));
                }
                (line.account_id, line.limit_minor)
            }
            None => (rows::ensure_line_account(conn, customer_id).await?, 0),
        };
        let [control] =
            platform_accounts(conn, customer_id, [AccountCode::CreditLineControl]).await?;
        let transfers = post(
            conn,
            &today,
            &[Posting {
                code: TransferCode::CreditLimitOpen,
                debit_account_id: control,
                credit_account_id: account_id,
                amount_minor: limit_minor - previous_limit,
                customer_id,
                loan_id: None,
            }],
            "credit line opened",
        )
        .await?
        .map_err(|failed| unexpected("OpenCreditLine", failed))?;
        match existing {
            Some(_) => {
                rows::update_line(conn, customer_id, credit_line_id, limit_minor, false).await?
            }
            None => {
                rows::insert_line(conn, customer_id, credit_line_id, account_id, limit_minor)
                    .await?
            }
        }
        let line = balance(conn, customer_id).await?;
        debug_assert_eq!(line.limit_minor, line.available_minor + line.utilised_minor);
        let transfer = transfers
            .into_iter()
            .next()
            .ok_or_else(|| LedgerError::Internal("no CREDIT_LIMIT_OPEN posted".into()))?;
        Ok(respond(&LineOpened { line, transfer }))
    })
    .await
}

/// ChangeCreditLimit: one CREDIT_LIMIT_INCREASE or _DECREASE to `new_limit_minor`
/// (clamped to the utilisation when asked); 0 closes the line in the ledger.
pub async fn change_credit_limit(
    pool: &PgPool,
    key: RequestKey<'_>,
    customer_id: Uuid,
    new_limit_minor: i64,
    clamp_to_utilisation: bool,
    respond: impl FnOnce(&LimitChanged) -> Vec<u8>,
) -> Result<Vec<u8>, LedgerError> {
    idempotent(pool, key, false, async move |conn, today| {
        let line = rows::lock_line(conn, customer_id)
            .await?
            .ok_or_else(|| line_not_found(customer_id))?;
        if line.closed {
            return Err(line_not_open(&line));
        }
        let before = balance(conn, customer_id).await?;
        let target = if new_limit_minor < before.utilised_minor {
            if !clamp_to_utilisation {
                return Err(LedgerError::precondition(
                    "LIMIT_BELOW_UTILISATION",
                    "the new limit is below the principal drawn",
                    vec![("utilised_minor_units", before.utilised_minor.to_string())],
                ));
            }
            before.utilised_minor
        } else {
            new_limit_minor
        };
        let [control] =
            platform_accounts(conn, customer_id, [AccountCode::CreditLineControl]).await?;
        let delta = target - line.limit_minor;
        let posting = match delta.signum() {
            1 => Some(Posting {
                code: TransferCode::CreditLimitIncrease,
                debit_account_id: control,
                credit_account_id: line.account_id,
                amount_minor: delta,
                customer_id,
                loan_id: None,
            }),
            -1 => Some(Posting {
                code: TransferCode::CreditLimitDecrease,
                debit_account_id: line.account_id,
                credit_account_id: control,
                amount_minor: -delta,
                customer_id,
                loan_id: None,
            }),
            _ => None,
        };
        let transfer = match posting {
            Some(posting) => post(conn, &today, &[posting], "credit limit changed")
                .await?
                // Only a concurrent reservation on the headroom can refuse the decrease.
                .map_err(|_| {
                    LedgerError::precondition(
                        "LIMIT_BELOW_UTILISATION",
                        "the headroom is reserved; the limit cannot fall that far now",
                        vec![("utilised_minor_units", before.utilised_minor.to_string())],
                    )
                })?
                .into_iter()
                .next(),
            None => None,
        };
        let closes = new_limit_minor == 0;
        rows::update_line(conn, customer_id, line.credit_line_id, target, closes).await?;
        let after = balance(conn, customer_id).await?;
        debug_assert_eq!(
            after.limit_minor,
            after.available_minor + after.utilised_minor
        );
        Ok(respond(&LimitChanged {
            line: after,
            previous_limit_minor: line.limit_minor,
            transfer,
        }))
    })
    .await
}

/// The platform accounts `codes` on the customer's sub-account.
async fn platform_accounts<const N: usize>(
    conn: &mut PgConnection,
    customer_id: Uuid,
    codes: [AccountCode; N],
) -> Result<[Uuid; N], LedgerError> {
    let ids = rows::ensure_platform_accounts(conn, &codes, sub_account_for(customer_id)).await?;
    ids.try_into()
        .map_err(|_| LedgerError::Internal("platform account count".into()))
}

/// What a Disburse of an existing loan id means: the same terms replay, others refuse.
fn same_terms(loan: &LoanRow, drawdown: &Disbursement) -> bool {
    loan.customer_id == drawdown.customer_id
        && loan.credit_line_id == drawdown.credit_line_id
        && loan.principal_minor == drawdown.principal_minor
        && loan.term_months == drawdown.term.months() as i32
        && loan.repayment_method == method_number(drawdown.method)
        && loan.daily_rate == drawdown.daily_rate.as_decimal()
        && loan.penalty_daily_rate == drawdown.penalty_daily_rate
}

pub fn method_number(method: microloan_domain::loan::RepaymentMethod) -> i16 {
    match method {
        microloan_domain::loan::RepaymentMethod::EqualPrincipal => 1,
        microloan_domain::loan::RepaymentMethod::EqualInstallment => 2,
    }
}

/// Disburse: books a loan with two linked transfers; the headroom debit is the atomic
/// limit check (the line account's balance flag refuses an overdraw, under any
/// concurrency, because the account row is locked for the posting).
pub async fn disburse(
    pool: &PgPool,
    key: RequestKey<'_>,
    drawdown: Disbursement,
    rules: &BookRules,
    event_of: impl FnOnce(&Disbursed) -> (Option<Date>, Payload),
    respond: impl FnOnce(&Disbursed) -> Vec<u8>,
) -> Result<Vec<u8>, LedgerError> {
    drawdown.check_bounds(rules)?;
    idempotent(pool, key, true, async move |conn, today| {
        let customer_id = drawdown.customer_id;
        let line = rows::lock_line(conn, customer_id).await?;
        if let Some(existing) = rows::find_loan(conn, drawdown.loan_id).await? {
            if !same_terms(&existing, &drawdown) {
                return Err(LedgerError::AlreadyExists {
                    reason: "LOAN_EXISTS",
                    message: "a loan with this loan_id exists with other terms".into(),
                    metadata: vec![("loan_id", drawdown.loan_id.to_string())],
                });
            }
            let installments = rows::load_installments(conn, existing.loan_id).await?;
            let transfers = rows::transfers_of_loan(conn, existing.loan_id).await?;
            let line = balance(conn, existing.customer_id).await?;
            return Ok(respond(&Disbursed {
                loan: existing,
                installments,
                transfers,
                line,
                business_date: today.business_date,
            }));
        }
        let line = line
            .filter(|line| line.credit_line_id == drawdown.credit_line_id || line.closed)
            .ok_or_else(|| line_not_found(customer_id))?;
        if line.closed {
            return Err(line_not_open(&line));
        }
        let schedule: Schedule = build_schedule(
            drawdown.principal_minor,
            drawdown.daily_rate,
            drawdown.term,
            drawdown.method,
            today.business_date,
        )
        .map_err(|err| LedgerError::Internal(format!("schedule: {err}")))?;
        let apr = apr_of_schedule(&schedule);
        check_apr(apr, rules)?;
        let accounts = rows::insert_loan_accounts(conn, customer_id, drawdown.loan_id).await?;
        let [control, funding] = platform_accounts(
            conn,
            customer_id,
            [AccountCode::CreditLineControl, AccountCode::Funding],
        )
        .await?;
        let postings = [
            Posting {
                code: TransferCode::DisbursementHeadroom,
                debit_account_id: line.account_id,
                credit_account_id: control,
                amount_minor: drawdown.principal_minor,
                customer_id,
                loan_id: Some(drawdown.loan_id),
            },
            Posting {
                code: TransferCode::DisbursementPrincipal,
                debit_account_id: accounts[0],
                credit_account_id: funding,
                amount_minor: drawdown.principal_minor,
                customer_id,
                loan_id: Some(drawdown.loan_id),
            },
        ];
        let transfers = match post(conn, &today, &postings, "loan disbursed").await? {
            Ok(transfers) => transfers,
            Err((0, CreateTransferStatus::ExceedsCredits)) => {
                let available = balance(conn, customer_id).await?.available_minor;
                return Err(LedgerError::precondition(
                    "CREDIT_LIMIT_EXCEEDED",
                    "the principal exceeds the credit line's available headroom",
                    vec![("available_minor_units", available.to_string())],
                ));
            }
            Err(failed) => return Err(unexpected("Disburse", failed)),
        };
        rows::insert_loan(
            conn,
            &NewLoan {
                loan_id: drawdown.loan_id,
                customer_id,
                credit_line_id: drawdown.credit_line_id,
                principal_minor: drawdown.principal_minor,
                term_months: drawdown.term.months() as i32,
                repayment_method: method_number(drawdown.method),
                daily_rate: drawdown.daily_rate.as_decimal(),
                penalty_daily_rate: drawdown.penalty_daily_rate,
                apr,
                disbursement_date: today.business_date,
                accounts,
            },
        )
        .await?;
        rows::insert_installments(conn, drawdown.loan_id, customer_id, &schedule).await?;
        let loan = rows::find_loan(conn, drawdown.loan_id)
            .await?
            .ok_or_else(|| LedgerError::Internal("the new loan vanished".into()))?;
        let installments = rows::load_installments(conn, drawdown.loan_id).await?;
        let line = balance(conn, customer_id).await?;
        debug_assert_eq!(line.limit_minor, line.available_minor + line.utilised_minor);
        let disbursed = Disbursed {
            loan,
            installments,
            transfers,
            line,
            business_date: today.business_date,
        };
        let (business_date, payload) = event_of(&disbursed);
        microloan_events::append(
            conn,
            PRODUCER,
            NewEvent {
                customer_id,
                business_date,
                payload,
            },
        )
        .await?;
        Ok(respond(&disbursed))
    })
    .await
}
