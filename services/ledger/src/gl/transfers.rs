//! `CreateTransfers`: every check of one item, in the order of precedence of
//! `CreateTransferStatus` (the first that applies wins), and the balance arithmetic of
//! single-phase and two-phase transfers. The batch runs over accounts the store has
//! locked, so what is decided here is what commits.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use uuid::Uuid;

use super::{
    accounts::{Account, Balances},
    chains::{self, ChainStatuses, Outcome},
    ids::IdField,
};

/// Longest reservation of a pending transfer (7 days).
pub const TIMEOUT_SECONDS_MAX: i32 = 604_800;
/// Longest description, in characters.
pub const DESCRIPTION_CHARS_MAX: usize = 256;

/// Transfer codes; the numbers are the proto's and are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TransferCode {
    CreditLimitOpen = 10,
    CreditLimitIncrease = 11,
    CreditLimitDecrease = 12,
    DisbursementHeadroom = 20,
    DisbursementPrincipal = 21,
    InterestAccrual = 30,
    PenaltyAccrual = 31,
    RepaymentPenalty = 40,
    RepaymentInterest = 41,
    RepaymentPrincipal = 42,
    HeadroomRestore = 43,
    WriteOffPrincipal = 50,
    WriteOffInterest = 51,
    WriteOffPenalty = 52,
    ManualAdjustment = 90,
}

impl TransferCode {
    pub const ALL: [TransferCode; 15] = [
        Self::CreditLimitOpen,
        Self::CreditLimitIncrease,
        Self::CreditLimitDecrease,
        Self::DisbursementHeadroom,
        Self::DisbursementPrincipal,
        Self::InterestAccrual,
        Self::PenaltyAccrual,
        Self::RepaymentPenalty,
        Self::RepaymentInterest,
        Self::RepaymentPrincipal,
        Self::HeadroomRestore,
        Self::WriteOffPrincipal,
        Self::WriteOffInterest,
        Self::WriteOffPenalty,
        Self::ManualAdjustment,
    ];

    pub fn from_i32(value: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.as_i32() == value)
    }

    pub fn as_i32(self) -> i32 {
        self as i32
    }
}

/// Who posts a batch: operators may post only MANUAL_ADJUSTMENT.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poster {
    Service,
    Operator,
}

impl Poster {
    pub fn may_post(self, code: TransferCode) -> bool {
        match self {
            Self::Service => true,
            Self::Operator => code == TransferCode::ManualAdjustment,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TransferFlags {
    pub linked: bool,
    pub pending: bool,
    pub post_pending: bool,
    pub void_pending: bool,
}

/// What a transfer does to balances; stored as `transfers.kind`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Single = 0,
    Pending = 1,
    PostPending = 2,
    VoidPending = 3,
}

impl TransferFlags {
    /// The kind, when at most one phase flag is set.
    pub fn kind(self) -> Option<Kind> {
        match (self.pending, self.post_pending, self.void_pending) {
            (false, false, false) => Some(Kind::Single),
            (true, false, false) => Some(Kind::Pending),
            (false, true, false) => Some(Kind::PostPending),
            (false, false, true) => Some(Kind::VoidPending),
            _ => None,
        }
    }

    fn resolves_pending(self) -> bool {
        self.post_pending || self.void_pending
    }
}

/// `PendingStatus`, with the proto's numbers (also stored).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PendingStatus {
    Pending = 1,
    Posted = 2,
    Voided = 3,
    Expired = 4,
}

impl PendingStatus {
    pub fn from_i16(value: i16) -> Option<Self> {
        [Self::Pending, Self::Posted, Self::Voided, Self::Expired]
            .into_iter()
            .find(|status| *status as i16 == value)
    }
}

/// The state of a pending transfer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PendingState {
    pub status: PendingStatus,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A transfer as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    pub id: Uuid,
    pub debit_account_id: Uuid,
    pub credit_account_id: Uuid,
    /// Moved: for post_pending the amount posted, for void_pending the amount released.
    pub amount: i64,
    /// As the client sent it (0 = the full pending amount).
    pub requested_amount: i64,
    pub currency: String,
    pub code: TransferCode,
    pub flags: TransferFlags,
    pub pending_id: Option<Uuid>,
    pub timeout_seconds: i32,
    pub customer_id: Option<Uuid>,
    pub loan_id: Option<Uuid>,
    pub description: String,
    pub business_date: NaiveDate,
    pub create_time: DateTime<Utc>,
    /// Set for pending transfers only.
    pub pending: Option<PendingState>,
}

impl Transfer {
    pub fn kind(&self) -> Kind {
        self.flags.kind().unwrap_or(Kind::Single)
    }
}

/// An amount as received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ItemAmount {
    pub currency: String,
    pub minor_units: i64,
}

/// One requested transfer as received: bad values are kept so that each can get its
/// result status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferItem {
    pub id: IdField,
    pub debit_account_id: IdField,
    pub credit_account_id: IdField,
    /// debit_account_id and credit_account_id are the same text (ignoring case).
    pub same_account_text: bool,
    /// Unset counts as 0.
    pub amount: Option<ItemAmount>,
    pub code: i32,
    pub flags: TransferFlags,
    pub pending_id: IdField,
    pub timeout_seconds: i32,
    pub customer_id: IdField,
    pub loan_id: IdField,
    pub description: String,
    /// business_date, create_time or pending_status was set on input.
    pub output_fields_set: bool,
}

/// `CreateTransferStatus`, with the proto's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateTransferStatus {
    Created = 1,
    Exists = 2,
    ExistsWithDifferentFields = 3,
    LinkedEventFailed = 4,
    LinkedEventChainOpen = 5,
    InvalidTransferId = 6,
    AccountsMustBeDifferent = 7,
    DebitAccountNotFound = 8,
    CreditAccountNotFound = 9,
    CurrencyMismatch = 10,
    AmountMustBePositive = 11,
    InvalidCode = 12,
    FlagsAreMutuallyExclusive = 13,
    PendingIdRequired = 14,
    PendingIdMustBeEmpty = 15,
    PendingTransferNotFound = 16,
    PendingTransferNotPending = 17,
    PendingTransferAlreadyPosted = 18,
    PendingTransferAlreadyVoided = 19,
    PendingTransferExpired = 20,
    PendingTransferHasDifferentAccounts = 21,
    ExceedsPendingTransferAmount = 22,
    TimeoutReservedForPendingTransfer = 23,
    InvalidTimeout = 24,
    ExceedsCredits = 25,
    ExceedsDebits = 26,
    Overflows = 27,
    InvalidCustomerId = 28,
    InvalidLoanId = 29,
    InvalidDescription = 30,
    OutputFieldsMustBeUnset = 31,
}

impl CreateTransferStatus {
    pub fn is_success(self) -> bool {
        matches!(self, Self::Created | Self::Exists)
    }
}

/// What a batch runs under.
#[derive(Clone, Copy, Debug)]
pub struct BatchContext {
    pub now: DateTime<Utc>,
    pub business_date: NaiveDate,
    pub poster: Poster,
}

impl TransferItem {
    /// Whether the item asks for exactly the stored transfer.
    pub fn same_fields(&self, stored: &Transfer) -> bool {
        self.debit_account_id.names(Some(stored.debit_account_id))
            && self.credit_account_id.names(Some(stored.credit_account_id))
            && self.requested_amount() == stored.requested_amount
            && self
                .amount
                .as_ref()
                .is_none_or(|amount| amount.currency == stored.currency)
            && self.code == stored.code.as_i32()
            && self.flags == stored.flags
            && self.pending_id.names(stored.pending_id)
            && self.timeout_seconds == stored.timeout_seconds
            && self.customer_id.names(stored.customer_id)
            && self.loan_id.names(stored.loan_id)
            && self.description == stored.description
            && !self.output_fields_set
    }

    fn requested_amount(&self) -> i64 {
        self.amount.as_ref().map_or(0, |amount| amount.minor_units)
    }
}

/// The balances of the two accounts after a transfer, computed without overflow.
#[derive(Clone, Copy, Debug)]
struct Wide {
    debits_posted: i128,
    credits_posted: i128,
    debits_pending: i128,
    credits_pending: i128,
}

impl Wide {
    fn of(balances: Balances) -> Self {
        Self {
            debits_posted: balances.debits_posted.into(),
            credits_posted: balances.credits_posted.into(),
            debits_pending: balances.debits_pending.into(),
            credits_pending: balances.credits_pending.into(),
        }
    }

    /// Every balance, and posted + pending on each side, fits in i64.
    fn narrow(self) -> Option<Balances> {
        let max = i128::from(i64::MAX);
        if self.debits_posted + self.debits_pending > max
            || self.credits_posted + self.credits_pending > max
        {
            return None;
        }
        Some(Balances {
            debits_posted: self.debits_posted.try_into().ok()?,
            credits_posted: self.credits_posted.try_into().ok()?,
            debits_pending: self.debits_pending.try_into().ok()?,
            credits_pending: self.credits_pending.try_into().ok()?,
        })
    }
}

/// The change one valid item makes.
struct Effect {
    transfer: Transfer,
    debit: Balances,
    credit: Balances,
}

#[derive(Clone, Debug, Default)]
struct State {
    accounts: HashMap<Uuid, Account>,
    transfers: HashMap<Uuid, Transfer>,
    created: Vec<Uuid>,
    resolutions: Vec<(Uuid, PendingStatus)>,
}

/// The item's own checks after EXISTS and the chain statuses, in precedence order, and
/// the change it makes if they all pass.
fn check(
    state: &State,
    item: &TransferItem,
    context: BatchContext,
) -> Result<Effect, CreateTransferStatus> {
    use CreateTransferStatus as S;
    let id = item.id.valid().ok_or(S::InvalidTransferId)?;
    if item.same_account_text {
        return Err(S::AccountsMustBeDifferent);
    }
    let find = |field: IdField| field.valid().and_then(|id| state.accounts.get(&id));
    let debit = find(item.debit_account_id).ok_or(S::DebitAccountNotFound)?;
    let credit = find(item.credit_account_id).ok_or(S::CreditAccountNotFound)?;
    let amount_currency_differs = item
        .amount
        .as_ref()
        .is_some_and(|amount| amount.currency != debit.currency);
    if debit.currency != credit.currency || amount_currency_differs {
        return Err(S::CurrencyMismatch);
    }
    let requested = item.requested_amount();
    if requested < 0 || (requested == 0 && !item.flags.resolves_pending()) {
        return Err(S::AmountMustBePositive);
    }
    let code = TransferCode::from_i32(item.code)
        .filter(|code| context.poster.may_post(*code))
        .ok_or(S::InvalidCode)?;
    let kind = item.flags.kind().ok_or(S::FlagsAreMutuallyExclusive)?;
    let resolves = matches!(kind, Kind::PostPending | Kind::VoidPending);
    if resolves && item.pending_id.is_empty() {
        return Err(S::PendingIdRequired);
    }
    if !resolves && !item.pending_id.is_empty() {
        return Err(S::PendingIdMustBeEmpty);
    }
    let pending = if resolves {
        let pending = item
            .pending_id
            .valid()
            .and_then(|id| state.transfers.get(&id))
            .ok_or(S::PendingTransferNotFound)?;
        let pending_state = pending.pending.ok_or(S::PendingTransferNotPending)?;
        match pending_state.status {
            PendingStatus::Posted => return Err(S::PendingTransferAlreadyPosted),
            PendingStatus::Voided => return Err(S::PendingTransferAlreadyVoided),
            PendingStatus::Expired => return Err(S::PendingTransferExpired),
            PendingStatus::Pending
                if pending_state.expires_at.is_some_and(|at| at <= context.now) =>
            {
                return Err(S::PendingTransferExpired);
            }
            PendingStatus::Pending => {}
        }
        if pending.debit_account_id != debit.id || pending.credit_account_id != credit.id {
            return Err(S::PendingTransferHasDifferentAccounts);
        }
        // void_pending takes 0 or exactly the pending amount; anything else is refused
        // here (the enum has no "different amount" status; see docs/ledger.md).
        let void_amount_wrong =
            kind == Kind::VoidPending && requested != 0 && requested != pending.amount;
        if requested > pending.amount || void_amount_wrong {
            return Err(S::ExceedsPendingTransferAmount);
        }
        Some(pending)
    } else {
        None
    };
    if kind != Kind::Pending && item.timeout_seconds != 0 {
        return Err(S::TimeoutReservedForPendingTransfer);
    }
    if kind == Kind::Pending && !(0..=TIMEOUT_SECONDS_MAX).contains(&item.timeout_seconds) {
        return Err(S::InvalidTimeout);
    }
    let (mut new_debit, mut new_credit) = (Wide::of(debit.balances), Wide::of(credit.balances));
    let reserved = pending.map_or(0, |pending| i128::from(pending.amount));
    let moved = match kind {
        Kind::Single => {
            new_debit.debits_posted += i128::from(requested);
            new_credit.credits_posted += i128::from(requested);
            requested
        }
        Kind::Pending => {
            new_debit.debits_pending += i128::from(requested);
            new_credit.credits_pending += i128::from(requested);
            requested
        }
        Kind::PostPending => {
            let posted = if requested == 0 {
                pending.map_or(0, |p| p.amount)
            } else {
                requested
            };
            new_debit.debits_pending -= reserved;
            new_credit.credits_pending -= reserved;
            new_debit.debits_posted += i128::from(posted);
            new_credit.credits_posted += i128::from(posted);
            posted
        }
        Kind::VoidPending => {
            new_debit.debits_pending -= reserved;
            new_credit.credits_pending -= reserved;
            pending.map_or(0, |p| p.amount)
        }
    };
    if debit.flags.debits_must_not_exceed_credits
        && new_debit.debits_posted + new_debit.debits_pending > new_debit.credits_posted
    {
        return Err(S::ExceedsCredits);
    }
    if credit.flags.credits_must_not_exceed_debits
        && new_credit.credits_posted + new_credit.credits_pending > new_credit.debits_posted
    {
        return Err(S::ExceedsDebits);
    }
    let (Some(new_debit), Some(new_credit)) = (new_debit.narrow(), new_credit.narrow()) else {
        return Err(S::Overflows);
    };
    check_owners(item, debit, credit)?;
    if item.description.chars().count() > DESCRIPTION_CHARS_MAX {
        return Err(S::InvalidDescription);
    }
    if item.output_fields_set {
        return Err(S::OutputFieldsMustBeUnset);
    }
    let expires_at = (kind == Kind::Pending && item.timeout_seconds > 0)
        .then(|| context.now + TimeDelta::seconds(item.timeout_seconds.into()));
    Ok(Effect {
        transfer: Transfer {
            id,
            debit_account_id: debit.id,
            credit_account_id: credit.id,
            amount: moved,
            requested_amount: requested,
            currency: debit.currency.clone(),
            code,
            flags: item.flags,
            pending_id: item.pending_id.valid(),
            timeout_seconds: item.timeout_seconds,
            customer_id: item.customer_id.valid(),
            loan_id: item.loan_id.valid(),
            description: item.description.clone(),
            business_date: context.business_date,
            create_time: context.now,
            pending: (kind == Kind::Pending).then_some(PendingState {
                status: PendingStatus::Pending,
                expires_at,
            }),
        },
        debit: new_debit,
        credit: new_credit,
    })
}

/// INVALID_CUSTOMER_ID and INVALID_LOAN_ID: a transfer names the customer whose
/// accounts it touches (so it lives on that customer's shard) and the loan of any
/// receivable it touches.
fn check_owners(
    item: &TransferItem,
    debit: &Account,
    credit: &Account,
) -> Result<(), CreateTransferStatus> {
    use CreateTransferStatus as S;
    let customers = [debit.customer_id, credit.customer_id];
    let customer_ok = match item.customer_id {
        IdField::Malformed => false,
        IdField::Empty => customers.iter().all(Option::is_none),
        IdField::Valid(customer) => {
            customers.iter().any(Option::is_some)
                && customers.iter().flatten().all(|owner| *owner == customer)
        }
    };
    if !customer_ok {
        return Err(S::InvalidCustomerId);
    }
    let loans = [debit.loan_id, credit.loan_id];
    let loan_ok = item.loan_id != IdField::Malformed
        && loans
            .iter()
            .flatten()
            .all(|loan| item.loan_id == IdField::Valid(*loan));
    if !loan_ok {
        return Err(S::InvalidLoanId);
    }
    Ok(())
}

impl State {
    fn commit(&mut self, effect: Effect) {
        let Effect {
            transfer,
            debit,
            credit,
        } = effect;
        if let Some(account) = self.accounts.get_mut(&transfer.debit_account_id) {
            account.balances = debit;
        }
        if let Some(account) = self.accounts.get_mut(&transfer.credit_account_id) {
            account.balances = credit;
        }
        if let Some(pending_id) = transfer.pending_id {
            let status = if transfer.flags.post_pending {
                PendingStatus::Posted
            } else {
                PendingStatus::Voided
            };
            if let Some(pending) = self
                .transfers
                .get_mut(&pending_id)
                .and_then(|pending| pending.pending.as_mut())
            {
                pending.status = status;
            }
            self.resolutions.push((pending_id, status));
        }
        self.created.push(transfer.id);
        self.transfers.insert(transfer.id, transfer);
    }
}

/// What a `CreateTransfers` batch does.
#[derive(Debug, Default)]
pub struct TransfersPlan {
    /// Per item: status and, for CREATED and EXISTS, the transfer as stored.
    pub results: Vec<(CreateTransferStatus, Option<Transfer>)>,
    /// The transfers to insert, in request order.
    pub created: Vec<Transfer>,
    /// Pending transfers this batch posted or voided.
    pub resolutions: Vec<(Uuid, PendingStatus)>,
    /// Accounts whose balances changed, with their new balances.
    pub changed_accounts: Vec<Account>,
}

/// Decides every item of a `CreateTransfers` batch. `accounts` are the locked accounts
/// the items name; `transfers` the stored transfers with the items' ids or pending ids.
pub fn plan_create_transfers(
    items: &[TransferItem],
    accounts: Vec<Account>,
    transfers: Vec<Transfer>,
    context: BatchContext,
) -> TransfersPlan {
    use CreateTransferStatus as S;
    let before: HashMap<Uuid, Balances> = accounts
        .iter()
        .map(|account| (account.id, account.balances))
        .collect();
    let mut state = State {
        accounts: accounts
            .into_iter()
            .map(|account| (account.id, account))
            .collect(),
        transfers: transfers
            .into_iter()
            .map(|transfer| (transfer.id, transfer))
            .collect(),
        ..State::default()
    };
    let statuses = chains::run_chains(
        items,
        |item| item.flags.linked,
        &mut state,
        ChainStatuses {
            linked_event_failed: S::LinkedEventFailed,
            linked_event_chain_open: S::LinkedEventChainOpen,
        },
        |state, item| {
            let stored = state.transfers.get(&item.id.valid()?)?;
            Some(if item.same_fields(stored) {
                Outcome::Existed(S::Exists)
            } else {
                Outcome::Failed(S::ExistsWithDifferentFields)
            })
        },
        |state, _, item| match check(state, item, context) {
            Ok(effect) => {
                state.commit(effect);
                Outcome::Applied(S::Created)
            }
            Err(status) => Outcome::Failed(status),
        },
    );
    let results = statuses
        .into_iter()
        .zip(items)
        .map(|(status, item)| {
            let transfer = status
                .is_success()
                .then(|| {
                    item.id
                        .valid()
                        .and_then(|id| state.transfers.get(&id).cloned())
                })
                .flatten();
            (status, transfer)
        })
        .collect();
    let mut changed_accounts: Vec<Account> = state
        .accounts
        .values()
        .filter(|account| before.get(&account.id) != Some(&account.balances))
        .cloned()
        .collect();
    changed_accounts.sort_by_key(|account| account.id);
    debug_assert_moves_balance(&before, &changed_accounts);
    let created = state
        .created
        .iter()
        .filter_map(|id| state.transfers.get(id).cloned())
        .collect();
    TransfersPlan {
        results,
        created,
        resolutions: state.resolutions,
        changed_accounts,
    }
}

/// Σ debits = Σ credits: a batch moves posted debits and credits by equal sums, and
/// pending ones too.
fn debug_assert_moves_balance(before: &HashMap<Uuid, Balances>, after: &[Account]) {
    let (mut posted, mut pending) = (0i128, 0i128);
    for account in after {
        let old = before.get(&account.id).copied().unwrap_or_default();
        let new = account.balances;
        posted += i128::from(new.debits_posted)
            - i128::from(old.debits_posted)
            - (i128::from(new.credits_posted) - i128::from(old.credits_posted));
        pending += i128::from(new.debits_pending)
            - i128::from(old.debits_pending)
            - (i128::from(new.credits_pending) - i128::from(old.credits_pending));
    }
    debug_assert_eq!(
        posted, 0,
        "a batch moved posted debits and credits unequally"
    );
    debug_assert_eq!(
        pending, 0,
        "a batch moved pending debits and credits unequally"
    );
}

#[cfg(test)]
mod tests;
