//! The loan book's operations, each one transaction: share-lock the business date, claim
//! the request_id, lock the customer's line, post the linked transfers through the
//! general ledger (`store::transfers::apply_transfers`) and write the book's own rows
//! and the outbox event, so money, loan and event commit together or not at all.

use microloan_domain::loan::{
    AllocationError, InstallmentOwed, RepaymentAllocation, Schedule, allocate_repayment,
    apr_of_schedule, build_schedule, payoff_amount_minor,
};
use microloan_events::NewEvent;
use microloan_platform::idempotency::RequestKey;
use microloan_proto::{events::v1::event::Payload, google::r#type::Date};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::{
    BookRules, Disbursement, Posting, chain, check_apr,
    end_of_day::{
        EndOfDay, REMINDER_OFFSETS, WRITE_OFF_DAYS_PAST_DUE, WRITE_OFF_REASON_DAYS_PAST_DUE,
        all_buckets, reminders_per_offset,
    },
    sub_account_for,
};
use crate::{
    error::LedgerError,
    gl::{
        accounts::{Account, AccountCode},
        transfers::{BatchContext, CreateTransferStatus, Poster, Transfer, TransferCode},
    },
    store::{
        self,
        book::{self as rows, LineBalanceRow, LoanRow, NewLoan},
        business_date::{BusinessDate, lock_business_date, share_lock_business_date},
        end_of_day as eod_rows,
        transfers::apply_fresh_transfers,
    },
};

/// The producer name on the ledger's events.
const PRODUCER: &str = "ledger";

/// Appends one event of the customer to the outbox, in the caller's transaction.
async fn emit(
    conn: &mut PgConnection,
    customer_id: Uuid,
    business_date: Option<Date>,
    payload: Payload,
) -> Result<(), LedgerError> {
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
    Ok(())
}

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

/// What a chain of postings did: the transfers and the accounts they changed, with
/// their balances after it (as written, under the accounts' locks until commit).
struct Posted {
    transfers: Vec<Transfer>,
    accounts: Vec<Account>,
}

impl Posted {
    /// Debits - credits posted on `account_id` after the postings; `before` if they did
    /// not touch it.
    fn receivable(&self, account_id: Uuid, before: i64) -> i64 {
        self.accounts
            .iter()
            .find(|account| account.id == account_id)
            .map_or(before, |account| {
                account.balances.debits_posted - account.balances.credits_posted
            })
    }

    /// `loan` (read or written before the postings) with its receivable balances after
    /// them: what `find_loan` would read now, without the round trip made while the
    /// platform sub-accounts are locked.
    fn loan_after(&self, mut loan: LoanRow) -> LoanRow {
        loan.principal_outstanding_minor =
            self.receivable(loan.principal_account_id, loan.principal_outstanding_minor);
        loan.interest_outstanding_minor =
            self.receivable(loan.interest_account_id, loan.interest_outstanding_minor);
        loan.penalty_outstanding_minor =
            self.receivable(loan.penalty_account_id, loan.penalty_outstanding_minor);
        loan
    }

    /// `line` (read before the postings) after them: available from its account as
    /// posted, utilised moved by `utilised_delta` (what the postings moved on the
    /// customer's principal receivables). What `line_balance` would read now.
    fn line_after(&self, mut line: LineBalanceRow, utilised_delta: i64) -> LineBalanceRow {
        if let Some(account) = self
            .accounts
            .iter()
            .find(|account| account.id == line.account_id)
        {
            let b = &account.balances;
            line.available_minor = b.credits_posted - b.debits_posted - b.debits_pending;
        }
        line.utilised_minor += utilised_delta;
        line
    }
}

/// Debug builds (every test) check that what [`Posted`] derived is what the database
/// now holds: the loan as `find_loan` reads it and the line as `line_balance` does.
#[cfg(debug_assertions)]
async fn check_derived(
    conn: &mut PgConnection,
    loan: &LoanRow,
    line: &LineBalanceRow,
) -> Result<(), LedgerError> {
    let stored_loan = rows::find_loan(conn, loan.loan_id).await?;
    assert_eq!(
        stored_loan.as_ref(),
        Some(loan),
        "derived loan differs from stored"
    );
    let stored_line = rows::line_balance(conn, line.customer_id).await?;
    assert_eq!(
        stored_line.as_ref(),
        Some(line),
        "derived line differs from stored"
    );
    Ok(())
}

/// Posts `postings` as one linked chain; `Err` with the failing item's status otherwise.
async fn post(
    conn: &mut PgConnection,
    today: &BusinessDate,
    postings: &[Posting],
    description: &str,
) -> Result<Result<Posted, (usize, CreateTransferStatus)>, LedgerError> {
    let items = chain(postings, description);
    let plan = apply_fresh_transfers(
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
        return Ok(Ok(Posted {
            transfers: plan.created,
            accounts: plan.changed_accounts,
        }));
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
        .map_err(|failed| unexpected("OpenCreditLine", failed))?
        .transfers;
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
                .transfers
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
        && loan.purpose == drawdown.purpose
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
        // The loan's own rows before the postings: the postings lock the customer's
        // platform sub-accounts (shared with every customer hashed to them) until
        // commit, so everything that needs no such lock runs before them. A refused
        // posting rolls the rows back with it.
        let loan = rows::insert_loan(
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
                purpose: drawdown.purpose,
            },
        )
        .await?;
        let installments =
            rows::insert_installments(conn, drawdown.loan_id, customer_id, &schedule).await?;
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
        // Read before the postings, brought up to date from what they wrote (Posted):
        // no reads while the platform sub-accounts are locked.
        let line_before = balance(conn, customer_id).await?;
        let posted = match post(conn, &today, &postings, "loan disbursed").await? {
            Ok(posted) => posted,
            Err((0, CreateTransferStatus::ExceedsCredits)) => {
                return Err(LedgerError::precondition(
                    "CREDIT_LIMIT_EXCEEDED",
                    "the principal exceeds the credit line's available headroom",
                    vec![(
                        "available_minor_units",
                        line_before.available_minor.to_string(),
                    )],
                ));
            }
            Err(failed) => return Err(unexpected("Disburse", failed)),
        };
        let loan = posted.loan_after(loan);
        let line = posted.line_after(line_before, loan.principal_outstanding_minor);
        debug_assert_eq!(line.limit_minor, line.available_minor + line.utilised_minor);
        #[cfg(debug_assertions)]
        check_derived(conn, &loan, &line).await?;
        let transfers = posted.transfers;
        let disbursed = Disbursed {
            loan,
            installments,
            transfers,
            line,
            business_date: today.business_date,
        };
        let (business_date, payload) = event_of(&disbursed);
        emit(conn, customer_id, business_date, payload).await?;
        Ok(respond(&disbursed))
    })
    .await
}

/// A repayment as asked: an amount, or everything owed (`pay_off`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RepaymentOrder {
    pub customer_id: Uuid,
    pub loan_id: Uuid,
    /// `None` with `pay_off`.
    pub amount_minor: Option<i64>,
    pub external_reference: String,
}

/// What a repayment did.
#[derive(Debug, Clone)]
pub struct Repaid {
    pub repayment_id: Uuid,
    pub amount_minor: i64,
    pub allocation: RepaymentAllocation,
    pub loan: LoanRow,
    pub installments: Vec<rows::InstallmentRow>,
    pub transfers: Vec<Transfer>,
    pub line: LineBalanceRow,
    pub business_date: chrono::NaiveDate,
    pub paid_off: bool,
    pub external_reference: String,
    pub create_time: chrono::DateTime<chrono::Utc>,
}

/// What each instalment still owes on `business_date`: penalty charged and interest
/// accrued but unpaid, principal unpaid.
pub fn owed(installments: &[rows::InstallmentRow]) -> Vec<InstallmentOwed> {
    installments
        .iter()
        .filter(|item| item.settled_date.is_none())
        .map(|item| InstallmentOwed {
            sequence: u32::try_from(item.sequence).unwrap_or(0),
            due_date: item.due_date,
            penalty_minor: item.penalty_charged - item.penalty_paid,
            interest_minor: item.interest_accrued - item.interest_paid,
            principal_minor: item.principal_minor - item.principal_paid,
        })
        .collect()
}

/// `read` (a loan's instalments in sequence order) with the rows of `updated` (some of
/// the same instalments, as an update returned them) in place of theirs.
fn merge_installments(
    mut read: Vec<rows::InstallmentRow>,
    updated: Vec<rows::InstallmentRow>,
) -> Vec<rows::InstallmentRow> {
    for row in updated {
        if let Some(slot) = read.iter_mut().find(|item| item.sequence == row.sequence) {
            *slot = row;
        }
    }
    read
}

/// FAILED_PRECONDITION LOAN_NOT_ACTIVE for a loan of `status` (2 or 3).
pub fn loan_not_active(status: i16) -> LedgerError {
    LedgerError::precondition(
        "LOAN_NOT_ACTIVE",
        "the loan is paid off or written off",
        vec![(
            "status",
            if status == 2 {
                "PAID_OFF"
            } else {
                "WRITTEN_OFF"
            }
            .to_owned(),
        )],
    )
}

fn loan_not_found(loan_id: Uuid) -> LedgerError {
    LedgerError::NotFound {
        resource_type: "loan",
        name: loan_id.to_string(),
    }
}

/// Repay: funding ← receivables in allocation order, headroom restored for the
/// principal (and the limit cut by as much while the line is closed), linked; settles
/// the loan when nothing is left.
pub async fn repay(
    pool: &PgPool,
    key: RequestKey<'_>,
    order: RepaymentOrder,
    encode_repayment: impl FnOnce(&Repaid) -> Vec<u8>,
    events_of: impl FnOnce(&Repaid) -> Vec<(Option<Date>, Payload)>,
    respond: impl FnOnce(&Repaid) -> Vec<u8>,
) -> Result<Vec<u8>, LedgerError> {
    idempotent(pool, key, true, async move |conn, today| {
        let customer_id = order.customer_id;
        let line = rows::lock_line(conn, customer_id).await?;
        let loan = rows::find_loan(conn, order.loan_id)
            .await?
            .filter(|loan| loan.customer_id == customer_id)
            .ok_or_else(|| loan_not_found(order.loan_id))?;
        if loan.status != 1 {
            return Err(loan_not_active(loan.status));
        }
        let line = line.ok_or_else(|| LedgerError::Internal("a loan without its line".into()))?;
        let installments = rows::load_installments(conn, loan.loan_id).await?;
        let owed = owed(&installments);
        let payoff = payoff_amount_minor(&owed)
            .map_err(|err| LedgerError::Internal(format!("loan {}: {err}", loan.loan_id)))?;
        let amount_minor = order.amount_minor.unwrap_or(payoff);
        let allocation = match allocate_repayment(amount_minor, &owed, today.business_date) {
            Ok(allocation) => allocation,
            Err(AllocationError::ExceedsBalance { payoff_minor }) => {
                return Err(LedgerError::precondition(
                    "REPAYMENT_EXCEEDS_BALANCE",
                    "the repayment is larger than everything owed",
                    vec![("payoff_minor_units", payoff_minor.to_string())],
                ));
            }
            Err(err) => return Err(LedgerError::Internal(format!("allocation: {err}"))),
        };
        let [control, funding] = platform_accounts(
            conn,
            customer_id,
            [AccountCode::CreditLineControl, AccountCode::Funding],
        )
        .await?;
        let loan_posting = |code, debit, credit, amount_minor| Posting {
            code,
            debit_account_id: debit,
            credit_account_id: credit,
            amount_minor,
            customer_id,
            loan_id: Some(loan.loan_id),
        };
        let mut postings = vec![
            loan_posting(
                TransferCode::RepaymentPenalty,
                funding,
                loan.penalty_account_id,
                allocation.penalty_minor,
            ),
            loan_posting(
                TransferCode::RepaymentInterest,
                funding,
                loan.interest_account_id,
                allocation.interest_minor,
            ),
            loan_posting(
                TransferCode::RepaymentPrincipal,
                funding,
                loan.principal_account_id,
                allocation.principal_minor,
            ),
            loan_posting(
                TransferCode::HeadroomRestore,
                control,
                line.account_id,
                allocation.principal_minor,
            ),
        ];
        if line.closed {
            // A closed line never regains headroom: the limit falls with the principal.
            postings.push(loan_posting(
                TransferCode::CreditLimitDecrease,
                line.account_id,
                control,
                allocation.principal_minor,
            ));
        }
        let allocations: Vec<(i32, i64, i64, i64)> = allocation
            .allocations
            .iter()
            .map(|a| {
                (
                    a.sequence as i32,
                    a.penalty_minor,
                    a.interest_minor,
                    a.principal_minor,
                )
            })
            .collect();
        let updated =
            rows::apply_allocations(conn, loan.loan_id, &allocations, today.business_date).await?;
        // The instalments as they now stand: the ones the allocation touched as the
        // update returned them, the others as read under the line's lock above.
        let installments = merge_installments(installments, updated);
        let new_limit = if line.closed {
            line.limit_minor - allocation.principal_minor
        } else {
            line.limit_minor
        };
        rows::update_line(
            conn,
            customer_id,
            line.credit_line_id,
            new_limit,
            line.closed,
        )
        .await?;
        let paid_off = amount_minor == payoff;
        let changed = if paid_off {
            rows::mark_paid_off(conn, loan.loan_id, today.business_date).await?
        } else {
            rows::touch_loan(conn, loan.loan_id).await?
        };
        let principal_before = loan.principal_outstanding_minor;
        let loan = LoanRow {
            status: changed.status,
            paid_off_date: changed.paid_off_date,
            update_time: changed.update_time,
            ..loan
        };
        // Read before the postings (after the line's update), brought up to date from
        // what they wrote (Posted): no reads while the platform sub-accounts are locked.
        let line_before = balance(conn, customer_id).await?;
        // Posted after the book's own rows: the postings lock the customer's platform
        // sub-accounts (shared with every customer hashed to them) until commit, so the
        // rows that need no such lock are written first. A refused posting rolls them
        // back with it.
        let posted = post(conn, &today, &postings, "repayment")
            .await?
            .map_err(|failed| unexpected("Repay", failed))?;
        let loan = posted.loan_after(loan);
        debug_assert!(!paid_off || loan.principal_outstanding_minor == 0);
        let line = posted.line_after(
            line_before,
            loan.principal_outstanding_minor - principal_before,
        );
        debug_assert_eq!(line.limit_minor, line.available_minor + line.utilised_minor);
        #[cfg(debug_assertions)]
        check_derived(conn, &loan, &line).await?;
        let transfers = posted.transfers;
        let repaid = Repaid {
            repayment_id: Uuid::now_v7(),
            amount_minor,
            allocation,
            loan,
            installments,
            transfers,
            line,
            business_date: today.business_date,
            paid_off,
            external_reference: order.external_reference,
            create_time: today.now,
        };
        rows::insert_repayment(
            conn,
            repaid.repayment_id,
            repaid.loan.loan_id,
            customer_id,
            amount_minor,
            today.business_date,
            &encode_repayment(&repaid),
        )
        .await?;
        for (business_date, payload) in events_of(&repaid) {
            emit(conn, customer_id, business_date, payload).await?;
        }
        Ok(respond(&repaid))
    })
    .await
}

/// What a RunEndOfDay answers: the encoded summary (stored or new) and whether it is a
/// replay of an already closed date.
/// The events end of day writes, as proto payloads with their business date.
pub struct EndOfDayEvents<'a> {
    pub reminder: &'a (dyn Fn(&eod_rows::ReminderRow) -> (Option<Date>, Payload) + Send + Sync),
    pub written_off: &'a (dyn Fn(&WrittenOff) -> (Option<Date>, Payload) + Send + Sync),
}

impl std::fmt::Debug for EndOfDayEvents<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndOfDayEvents").finish_non_exhaustive()
    }
}

pub type RespondSummary<'a> =
    dyn Fn(&[u8], bool) -> Result<Vec<u8>, LedgerError> + Send + Sync + 'a;

/// RunEndOfDay: closes `business_date` as one transaction of set-based steps
/// (docs/ledger.md "End of day"), or returns the stored summary of a closed date.
///
/// Locks: the request_id claim, then the run's advisory lock (a second run answers
/// END_OF_DAY_RUNNING at once), then the business date FOR UPDATE before any account
/// (postings hold it FOR SHARE: the run waits for those in flight, new ones wait for
/// the run and then book on the next date).
pub async fn run_end_of_day(
    pool: &PgPool,
    key: Option<RequestKey<'_>>,
    business_date: chrono::NaiveDate,
    events: EndOfDayEvents<'_>,
    encode_summary: impl FnOnce(&EndOfDay) -> Vec<u8>,
    respond: &RespondSummary<'_>,
) -> Result<Vec<u8>, LedgerError> {
    let mut tx = pool.begin().await?;
    if let Some(key) = key
        && let Some(stored) = store::claim_request_id(&mut tx, key).await?
    {
        return Ok(stored);
    }
    let response =
        close_business_date(&mut tx, business_date, events, encode_summary, respond).await?;
    if let Some(key) = key {
        store::record_response(&mut tx, key, &response).await?;
    }
    tx.commit().await?;
    // Fresh planner statistics for the next day's postings, in the background.
    let pool = pool.clone();
    tokio::spawn(async move {
        match eod_rows::refresh_statistics(&pool).await {
            Ok(analyzed) => tracing::debug!(?analyzed, "end of day: stale book tables analyzed"),
            Err(err) => tracing::warn!(%err, "end of day: ANALYZE of the book failed"),
        }
    });
    Ok(response)
}

fn business_date_mismatch(current: chrono::NaiveDate) -> LedgerError {
    LedgerError::precondition(
        "BUSINESS_DATE_MISMATCH",
        "the date is not the current business date nor a closed one",
        vec![("business_date", current.to_string())],
    )
}

async fn close_business_date(
    conn: &mut PgConnection,
    business_date: chrono::NaiveDate,
    events: EndOfDayEvents<'_>,
    encode_summary: impl FnOnce(&EndOfDay) -> Vec<u8>,
    respond: &RespondSummary<'_>,
) -> Result<Vec<u8>, LedgerError> {
    if let Some(stored) = eod_rows::stored_summary(conn, business_date).await? {
        return respond(&stored, true);
    }
    if !eod_rows::try_lock_run(conn).await? {
        return Err(LedgerError::EndOfDayRunning);
    }
    let today = lock_business_date(conn).await?;
    if business_date != today.business_date {
        // A run for this date may have committed between the first look and the lock.
        return match eod_rows::stored_summary(conn, business_date).await? {
            Some(stored) if business_date < today.business_date => respond(&stored, true),
            _ => Err(business_date_mismatch(today.business_date)),
        };
    }
    let next_business_date = business_date
        .succ_opt()
        .ok_or_else(|| LedgerError::Internal("no date after the business date".into()))?;
    let start_time = today.now;
    eod_rows::plan_without_jit(conn).await?;
    let created = eod_rows::ensure_income_sub_accounts(conn).await?;
    let interest = eod_rows::accrue_interest(conn, business_date, start_time).await?;
    let penalty = eod_rows::charge_penalty(conn, business_date, start_time).await?;
    for (step, posted) in [("accrue_interest", &interest), ("charge_penalty", &penalty)] {
        tracing::info!(%business_date, step, ?posted, "end of day step");
        debug_assert!(posted.is_balanced(), "{step}: {posted:?}");
        if !posted.is_balanced() {
            return Err(LedgerError::Internal(format!(
                "end of day {step} moved unequal debits and credits: {posted:?}"
            )));
        }
    }
    let mut written_off_minor = 0;
    let to_write_off =
        eod_rows::loans_to_write_off(conn, business_date, WRITE_OFF_DAYS_PAST_DUE).await?;
    for (customer_id, loan_id) in &to_write_off {
        let written_off = write_off_loan(
            conn,
            &today,
            *customer_id,
            *loan_id,
            WRITE_OFF_REASON_DAYS_PAST_DUE,
            events.written_off,
        )
        .await?;
        written_off_minor += written_off.total_minor();
    }
    let loans_written_off = i64::try_from(to_write_off.len())
        .map_err(|_| LedgerError::Internal("write-off count".into()))?;
    tracing::info!(%business_date, step = "write_off", loans_written_off, written_off_minor, "end of day step");
    let (installments_due, installments_newly_overdue) =
        eod_rows::count_due_and_newly_overdue(conn, business_date).await?;
    let buckets = all_buckets(&eod_rows::delinquency_buckets(conn, business_date).await?);
    let reminders = eod_rows::reminders_due(conn, business_date, &REMINDER_OFFSETS).await?;
    // One statement per 1,000 reminders instead of a round trip each: on a book drawn
    // on one day every loan's reminder falls on the same date (docs/ledger.md).
    let reminder_events = reminders
        .iter()
        .map(|reminder| {
            let (business_date, payload) = (events.reminder)(reminder);
            NewEvent {
                customer_id: reminder.customer_id,
                business_date,
                payload,
            }
        })
        .collect();
    microloan_events::append_batch(conn, PRODUCER, reminder_events).await?;
    let events_emitted = i64::try_from(reminders.len())
        .map_err(|_| LedgerError::Internal("reminder count".into()))?
        + loans_written_off;
    tracing::info!(
        %business_date,
        income_sub_accounts_created = created,
        installments_due,
        installments_newly_overdue,
        ?buckets,
        reminders = events_emitted,
        "end of day steps"
    );
    let finish_time = eod_rows::clock(conn).await?;
    let summary = EndOfDay {
        business_date,
        next_business_date,
        loans_processed: interest.loans,
        interest,
        penalty,
        installments_due,
        installments_newly_overdue,
        buckets,
        reminders: reminders_per_offset(reminders.iter().map(|r| r.offset_days)),
        loans_written_off,
        amount_written_off_minor: written_off_minor,
        events_emitted,
        start_time,
        finish_time,
    };
    let encoded = encode_summary(&summary);
    eod_rows::store_summary(conn, business_date, &encoded, start_time, finish_time).await?;
    if !eod_rows::advance_business_date(conn, business_date, next_business_date, finish_time)
        .await?
    {
        return Err(LedgerError::Internal(
            "the business date moved under its lock".into(),
        ));
    }
    respond(&encoded, false)
}

/// What a write-off did.
#[derive(Debug, Clone)]
pub struct WrittenOff {
    pub loan: LoanRow,
    pub installments: Vec<rows::InstallmentRow>,
    pub principal_minor: i64,
    pub interest_minor: i64,
    pub penalty_minor: i64,
    pub transfers: Vec<Transfer>,
    /// WriteOffReason number.
    pub reason: i16,
    pub days_past_due: i32,
    pub business_date: chrono::NaiveDate,
}

impl WrittenOff {
    pub fn total_minor(&self) -> i64 {
        self.principal_minor + self.interest_minor + self.penalty_minor
    }
}

/// Writes one loan off inside the caller's transaction (WriteOff, and end of day at
/// the days-past-due threshold): write_off_expense ← every receivable, then the
/// HEADROOM_RESTORE of the principal and a CREDIT_LIMIT_DECREASE of the whole remaining
/// headroom, linked; the line is closed (limit = principal still drawn on the other
/// loans), the loan WRITTEN_OFF, and LoanWrittenOff appended.
pub async fn write_off_loan(
    conn: &mut PgConnection,
    today: &BusinessDate,
    customer_id: Uuid,
    loan_id: Uuid,
    reason: i16,
    event_of: impl FnOnce(&WrittenOff) -> (Option<Date>, Payload),
) -> Result<WrittenOff, LedgerError> {
    let line = rows::lock_line(conn, customer_id)
        .await?
        .ok_or_else(|| LedgerError::Internal("a loan without its line".into()))?;
    let loan = rows::find_loan(conn, loan_id)
        .await?
        .ok_or_else(|| loan_not_found(loan_id))?;
    if loan.status != 1 {
        return Err(loan_not_active(loan.status));
    }
    let before = balance(conn, customer_id).await?;
    let [expense, control] = platform_accounts(
        conn,
        customer_id,
        [AccountCode::WriteOffExpense, AccountCode::CreditLineControl],
    )
    .await?;
    let principal = loan.principal_outstanding_minor;
    let loan_posting = |code, debit, credit, amount_minor| Posting {
        code,
        debit_account_id: debit,
        credit_account_id: credit,
        amount_minor,
        customer_id,
        loan_id: Some(loan_id),
    };
    let decrease = before.available_minor + principal;
    let postings = [
        loan_posting(
            TransferCode::WriteOffPrincipal,
            expense,
            loan.principal_account_id,
            principal,
        ),
        loan_posting(
            TransferCode::WriteOffInterest,
            expense,
            loan.interest_account_id,
            loan.interest_outstanding_minor,
        ),
        loan_posting(
            TransferCode::WriteOffPenalty,
            expense,
            loan.penalty_account_id,
            loan.penalty_outstanding_minor,
        ),
        loan_posting(
            TransferCode::HeadroomRestore,
            control,
            line.account_id,
            principal,
        ),
        loan_posting(
            TransferCode::CreditLimitDecrease,
            line.account_id,
            control,
            decrease,
        ),
    ];
    let transfers = post(conn, today, &postings, "loan written off")
        .await?
        .map_err(|failed| unexpected("WriteOff", failed))?
        .transfers;
    rows::update_line(
        conn,
        customer_id,
        line.credit_line_id,
        line.limit_minor - decrease,
        true,
    )
    .await?;
    let total = principal + loan.interest_outstanding_minor + loan.penalty_outstanding_minor;
    rows::mark_written_off(conn, loan_id, today.business_date, reason, total).await?;
    let installments = rows::load_installments(conn, loan_id).await?;
    let days_past_due = installments
        .iter()
        .filter(|item| item.settled_date.is_none() && item.due_date < today.business_date)
        .map(|item| (today.business_date - item.due_date).num_days())
        .max()
        .map_or(0, |days| i32::try_from(days).unwrap_or(i32::MAX));
    let after = balance(conn, customer_id).await?;
    debug_assert_eq!(after.available_minor, 0);
    debug_assert_eq!(
        after.limit_minor,
        after.available_minor + after.utilised_minor
    );
    let written_off = WrittenOff {
        loan: rows::find_loan(conn, loan_id)
            .await?
            .ok_or_else(|| LedgerError::Internal("the loan vanished".into()))?,
        installments,
        principal_minor: principal,
        interest_minor: loan.interest_outstanding_minor,
        penalty_minor: loan.penalty_outstanding_minor,
        transfers,
        reason,
        days_past_due,
        business_date: today.business_date,
    };
    let (business_date, payload) = event_of(&written_off);
    emit(conn, customer_id, business_date, payload).await?;
    Ok(written_off)
}

/// WriteOff: one loan, for a reason other than days past due.
pub async fn write_off(
    pool: &PgPool,
    key: RequestKey<'_>,
    loan_id: Uuid,
    reason: i16,
    event_of: impl FnOnce(&WrittenOff) -> (Option<Date>, Payload),
    respond: impl FnOnce(&WrittenOff) -> Vec<u8>,
) -> Result<Vec<u8>, LedgerError> {
    idempotent(pool, key, true, async move |conn, today| {
        let customer_id = rows::find_loan(conn, loan_id)
            .await?
            .ok_or_else(|| loan_not_found(loan_id))?
            .customer_id;
        let written_off =
            write_off_loan(conn, &today, customer_id, loan_id, reason, event_of).await?;
        Ok(respond(&written_off))
    })
    .await
}
