//! The chart of accounts and `CreateAccounts`: every check of one item, in the order of
//! precedence of `CreateAccountStatus` (the first that applies wins).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{
    CURRENCY_CNY, SUB_ACCOUNTS,
    chains::{self, ChainStatuses, Outcome},
    ids::IdField,
};

/// Chart-of-accounts codes; the numbers are the proto's and are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccountCode {
    Funding = 100,
    InterestIncome = 110,
    PenaltyIncome = 120,
    WriteOffExpense = 130,
    CreditLineControl = 140,
    CreditLineAvailable = 200,
    PrincipalReceivable = 300,
    InterestReceivable = 310,
    PenaltyReceivable = 320,
}

/// Who an account belongs to, which decides its required ids.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Owner {
    /// No customer or loan; may be split into sub-accounts.
    Platform,
    /// customer_id required.
    Customer,
    /// customer_id and loan_id required.
    Loan,
}

impl AccountCode {
    pub const ALL: [AccountCode; 9] = [
        Self::Funding,
        Self::InterestIncome,
        Self::PenaltyIncome,
        Self::WriteOffExpense,
        Self::CreditLineControl,
        Self::CreditLineAvailable,
        Self::PrincipalReceivable,
        Self::InterestReceivable,
        Self::PenaltyReceivable,
    ];

    pub fn from_i32(value: i32) -> Option<Self> {
        Self::ALL.into_iter().find(|code| code.as_i32() == value)
    }

    pub fn as_i32(self) -> i32 {
        self as i32
    }

    pub fn owner(self) -> Owner {
        match self {
            Self::Funding
            | Self::InterestIncome
            | Self::PenaltyIncome
            | Self::WriteOffExpense
            | Self::CreditLineControl => Owner::Platform,
            Self::CreditLineAvailable => Owner::Customer,
            Self::PrincipalReceivable | Self::InterestReceivable | Self::PenaltyReceivable => {
                Owner::Loan
            }
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccountFlags {
    pub linked: bool,
    pub debits_must_not_exceed_credits: bool,
    pub credits_must_not_exceed_debits: bool,
}

/// The four balances of an account (fen).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balances {
    pub debits_posted: i64,
    pub credits_posted: i64,
    pub debits_pending: i64,
    pub credits_pending: i64,
}

/// An account as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    pub id: Uuid,
    pub code: AccountCode,
    pub currency: String,
    pub customer_id: Option<Uuid>,
    pub loan_id: Option<Uuid>,
    pub sub_account: i32,
    pub flags: AccountFlags,
    pub balances: Balances,
    pub create_time: DateTime<Utc>,
}

impl Account {
    pub fn key(&self) -> AccountKey {
        AccountKey {
            code: self.code,
            currency: self.currency.clone(),
            customer_id: self.customer_id,
            loan_id: self.loan_id,
            sub_account: self.sub_account,
        }
    }
}

/// An account's place in the chart of accounts; unique.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccountKey {
    pub code: AccountCode,
    pub currency: String,
    pub customer_id: Option<Uuid>,
    pub loan_id: Option<Uuid>,
    pub sub_account: i32,
}

/// Why a key lookup is malformed (GetAccount): the proto field path and what is wrong.
pub type KeyViolation = (&'static str, &'static str);

impl AccountKey {
    /// A key from its parts as `GetAccount` receives them (empty currency = CNY);
    /// every bad part is reported.
    pub fn parse(
        code: i32,
        currency: &str,
        customer_id: &str,
        loan_id: &str,
        sub_account: i32,
    ) -> Result<Self, Vec<KeyViolation>> {
        let mut violations = Vec::new();
        let code = AccountCode::from_i32(code);
        if code.is_none() {
            violations.push(("key.code", "must be a chart-of-accounts code"));
        }
        let currency = if currency.is_empty() {
            CURRENCY_CNY
        } else {
            currency
        };
        if currency != CURRENCY_CNY {
            violations.push(("key.currency_code", "must be empty or CNY"));
        }
        let owner = code.map(AccountCode::owner);
        let customer = IdField::parse(customer_id);
        let loan = IdField::parse(loan_id);
        match (owner, customer) {
            (Some(Owner::Platform), IdField::Empty) | (None, _) => {}
            (Some(Owner::Platform), _) => {
                violations.push(("key.customer_id", "must be empty for a platform code"));
            }
            (Some(_), IdField::Valid(_)) => {}
            (Some(_), _) => violations.push(("key.customer_id", "must be a UUID for this code")),
        }
        match (owner, loan) {
            (Some(Owner::Loan), IdField::Valid(_)) | (None, _) => {}
            (Some(Owner::Loan), _) => {
                violations.push(("key.loan_id", "must be a UUID for this code"))
            }
            (Some(_), IdField::Empty) => {}
            (Some(_), _) => violations.push(("key.loan_id", "must be empty for this code")),
        }
        let sub_account_ok = match owner {
            Some(Owner::Platform) => (0..SUB_ACCOUNTS).contains(&sub_account),
            _ => sub_account == 0,
        };
        if !sub_account_ok {
            violations.push((
                "key.sub_account",
                "must be 0..63 for a platform code and 0 otherwise",
            ));
        }
        match code {
            Some(code) if violations.is_empty() => Ok(Self {
                code,
                currency: currency.to_owned(),
                customer_id: customer.valid(),
                loan_id: loan.valid(),
                sub_account,
            }),
            _ => Err(violations),
        }
    }
}

/// One requested account as received: bad values are kept so that each can get its
/// result status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountItem {
    pub id: IdField,
    pub code: i32,
    pub currency: String,
    pub customer_id: IdField,
    pub loan_id: IdField,
    pub sub_account: i32,
    pub flags: AccountFlags,
    /// A balance field or create_time was set (non-zero) on input.
    pub output_fields_set: bool,
}

/// `CreateAccountStatus`, with the proto's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateAccountStatus {
    Created = 1,
    Exists = 2,
    ExistsWithDifferentFields = 3,
    LinkedEventFailed = 4,
    LinkedEventChainOpen = 5,
    InvalidAccountId = 6,
    InvalidCode = 7,
    InvalidCurrency = 8,
    FlagsAreMutuallyExclusive = 9,
    CustomerIdRequired = 10,
    CustomerIdMustBeEmpty = 11,
    LoanIdRequired = 12,
    LoanIdMustBeEmpty = 13,
    BalancesMustBeZero = 14,
    KeyExists = 15,
    InvalidSubAccount = 16,
    InvalidCustomerId = 17,
    InvalidLoanId = 18,
}

impl CreateAccountStatus {
    pub fn is_success(self) -> bool {
        matches!(self, Self::Created | Self::Exists)
    }
}

impl AccountItem {
    /// Whether the item asks for exactly the stored account.
    pub fn same_fields(&self, stored: &Account) -> bool {
        self.code == stored.code.as_i32()
            && self.currency == stored.currency
            && self.customer_id.names(stored.customer_id)
            && self.loan_id.names(stored.loan_id)
            && self.sub_account == stored.sub_account
            && self.flags == stored.flags
            && !self.output_fields_set
    }

    /// The key the item would take, if its parts are well-formed.
    pub fn key(&self) -> Option<AccountKey> {
        let code = AccountCode::from_i32(self.code)?;
        let id_ok = |field: IdField| field != IdField::Malformed;
        (id_ok(self.customer_id) && id_ok(self.loan_id)).then(|| AccountKey {
            code,
            currency: self.currency.clone(),
            customer_id: self.customer_id.valid(),
            loan_id: self.loan_id.valid(),
            sub_account: self.sub_account,
        })
    }

    /// The item's own checks after EXISTS and the chain statuses, in precedence order;
    /// `key_taken` says whether another account already holds a key.
    pub fn first_failed_check(
        &self,
        key_taken: impl Fn(&AccountKey) -> bool,
    ) -> Option<CreateAccountStatus> {
        use CreateAccountStatus as S;
        if self.id.valid().is_none() {
            return Some(S::InvalidAccountId);
        }
        let Some(code) = AccountCode::from_i32(self.code) else {
            return Some(S::InvalidCode);
        };
        if self.currency != CURRENCY_CNY {
            return Some(S::InvalidCurrency);
        }
        if self.flags.debits_must_not_exceed_credits && self.flags.credits_must_not_exceed_debits {
            return Some(S::FlagsAreMutuallyExclusive);
        }
        let owner = code.owner();
        if owner != Owner::Platform && self.customer_id.is_empty() {
            return Some(S::CustomerIdRequired);
        }
        if owner == Owner::Platform && !self.customer_id.is_empty() {
            return Some(S::CustomerIdMustBeEmpty);
        }
        if owner == Owner::Loan && self.loan_id.is_empty() {
            return Some(S::LoanIdRequired);
        }
        if owner != Owner::Loan && !self.loan_id.is_empty() {
            return Some(S::LoanIdMustBeEmpty);
        }
        if self.output_fields_set {
            return Some(S::BalancesMustBeZero);
        }
        if self.key().is_some_and(|key| key_taken(&key)) {
            return Some(S::KeyExists);
        }
        let sub_account_ok = match owner {
            Owner::Platform => (0..SUB_ACCOUNTS).contains(&self.sub_account),
            Owner::Customer | Owner::Loan => self.sub_account == 0,
        };
        if !sub_account_ok {
            return Some(S::InvalidSubAccount);
        }
        if self.customer_id == IdField::Malformed {
            return Some(S::InvalidCustomerId);
        }
        if self.loan_id == IdField::Malformed {
            return Some(S::InvalidLoanId);
        }
        None
    }

    /// The account this item creates (call only once its checks passed).
    fn to_account(&self, id: Uuid, code: AccountCode, now: DateTime<Utc>) -> Account {
        Account {
            id,
            code,
            currency: self.currency.clone(),
            customer_id: self.customer_id.valid(),
            loan_id: self.loan_id.valid(),
            sub_account: self.sub_account,
            flags: self.flags,
            balances: Balances::default(),
            create_time: now,
        }
    }
}

/// What a `CreateAccounts` batch does.
#[derive(Debug, Default)]
pub struct AccountsPlan {
    /// Per item: status and, for CREATED and EXISTS, the account.
    pub results: Vec<(CreateAccountStatus, Option<Account>)>,
    /// The accounts to insert, in request order.
    pub created: Vec<Account>,
}

/// Accounts already stored that a batch may collide with.
#[derive(Debug, Default, Clone)]
pub struct KnownAccounts {
    pub by_id: HashMap<Uuid, Account>,
    pub by_key: HashMap<AccountKey, Uuid>,
}

impl KnownAccounts {
    pub fn new(accounts: impl IntoIterator<Item = Account>) -> Self {
        let mut known = Self::default();
        for account in accounts {
            known.insert(account);
        }
        known
    }

    fn insert(&mut self, account: Account) {
        self.by_key.insert(account.key(), account.id);
        self.by_id.insert(account.id, account);
    }
}

/// Decides every item of a `CreateAccounts` batch against the accounts already stored
/// (`known`: those with the items' ids or keys).
pub fn plan_create_accounts(
    items: &[AccountItem],
    known: KnownAccounts,
    now: DateTime<Utc>,
) -> AccountsPlan {
    use CreateAccountStatus as S;
    let mut state = (known, Vec::<Account>::new());
    let statuses = chains::run_chains(
        items,
        |item| item.flags.linked,
        &mut state,
        ChainStatuses {
            linked_event_failed: S::LinkedEventFailed,
            linked_event_chain_open: S::LinkedEventChainOpen,
        },
        |(known, _), item| {
            let stored = known.by_id.get(&item.id.valid()?)?;
            Some(if item.same_fields(stored) {
                Outcome::Existed(S::Exists)
            } else {
                Outcome::Failed(S::ExistsWithDifferentFields)
            })
        },
        |(known, created), _, item| {
            if let Some(status) = item.first_failed_check(|key| known.by_key.contains_key(key)) {
                return Outcome::Failed(status);
            }
            let (Some(id), Some(code)) = (item.id.valid(), AccountCode::from_i32(item.code)) else {
                unreachable!("checked by first_failed_check");
            };
            let account = item.to_account(id, code, now);
            known.insert(account.clone());
            created.push(account);
            Outcome::Applied(S::Created)
        },
    );
    let (known, created) = state;
    let results = statuses
        .into_iter()
        .zip(items)
        .map(|(status, item)| {
            let account = status
                .is_success()
                .then(|| item.id.valid().and_then(|id| known.by_id.get(&id).cloned()))
                .flatten();
            (status, account)
        })
        .collect();
    AccountsPlan { results, created }
}

#[cfg(test)]
mod tests {
    use super::*;
    use CreateAccountStatus as S;

    const CUSTOMER: &str = "0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f";
    const LOAN: &str = "0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e70";

    fn id(n: u8) -> IdField {
        IdField::parse(&format!("0190c1e4-0000-7000-8000-0000000000{n:02x}"))
    }

    fn funding(n: u8) -> AccountItem {
        AccountItem {
            id: id(n),
            code: AccountCode::Funding.as_i32(),
            currency: "CNY".into(),
            customer_id: IdField::Empty,
            loan_id: IdField::Empty,
            sub_account: 0,
            flags: AccountFlags::default(),
            output_fields_set: false,
        }
    }

    fn status_of(item: AccountItem) -> CreateAccountStatus {
        plan_create_accounts(&[item], KnownAccounts::default(), Utc::now()).results[0].0
    }

    #[test]
    fn each_bad_item_gets_its_own_status() {
        let cases: Vec<(&str, AccountItem, CreateAccountStatus)> = vec![
            ("valid", funding(1), S::Created),
            (
                "bad id",
                AccountItem {
                    id: IdField::Malformed,
                    ..funding(1)
                },
                S::InvalidAccountId,
            ),
            (
                "nil id",
                AccountItem {
                    id: IdField::Empty,
                    ..funding(1)
                },
                S::InvalidAccountId,
            ),
            (
                "no code",
                AccountItem {
                    code: 0,
                    ..funding(1)
                },
                S::InvalidCode,
            ),
            (
                "unknown code",
                AccountItem {
                    code: 101,
                    ..funding(1)
                },
                S::InvalidCode,
            ),
            (
                "usd",
                AccountItem {
                    currency: "USD".into(),
                    ..funding(1)
                },
                S::InvalidCurrency,
            ),
            (
                "both flags",
                AccountItem {
                    flags: AccountFlags {
                        debits_must_not_exceed_credits: true,
                        credits_must_not_exceed_debits: true,
                        linked: false,
                    },
                    ..funding(1)
                },
                S::FlagsAreMutuallyExclusive,
            ),
            (
                "line without customer",
                AccountItem {
                    code: 200,
                    ..funding(1)
                },
                S::CustomerIdRequired,
            ),
            (
                "platform with customer",
                AccountItem {
                    customer_id: IdField::parse(CUSTOMER),
                    ..funding(1)
                },
                S::CustomerIdMustBeEmpty,
            ),
            (
                "receivable without loan",
                AccountItem {
                    code: 300,
                    customer_id: IdField::parse(CUSTOMER),
                    ..funding(1)
                },
                S::LoanIdRequired,
            ),
            (
                "line with loan",
                AccountItem {
                    code: 200,
                    customer_id: IdField::parse(CUSTOMER),
                    loan_id: IdField::parse(LOAN),
                    ..funding(1)
                },
                S::LoanIdMustBeEmpty,
            ),
            (
                "balances",
                AccountItem {
                    output_fields_set: true,
                    ..funding(1)
                },
                S::BalancesMustBeZero,
            ),
            (
                "sub-account 64",
                AccountItem {
                    sub_account: 64,
                    ..funding(1)
                },
                S::InvalidSubAccount,
            ),
            (
                "customer sub-account",
                AccountItem {
                    code: 200,
                    customer_id: IdField::parse(CUSTOMER),
                    sub_account: 1,
                    ..funding(1)
                },
                S::InvalidSubAccount,
            ),
            (
                "malformed customer",
                AccountItem {
                    code: 200,
                    customer_id: IdField::Malformed,
                    ..funding(1)
                },
                S::InvalidCustomerId,
            ),
            (
                "malformed loan",
                AccountItem {
                    code: 310,
                    customer_id: IdField::parse(CUSTOMER),
                    loan_id: IdField::Malformed,
                    ..funding(1)
                },
                S::InvalidLoanId,
            ),
        ];
        for (name, item, want) in cases {
            assert_eq!(status_of(item), want, "{name}");
        }
    }

    #[test]
    fn a_key_lookup_names_each_bad_part() {
        let key = AccountKey::parse(100, "", "", "", 5).expect("platform key");
        assert_eq!((key.currency.as_str(), key.sub_account), ("CNY", 5));
        let fields = |result: Result<AccountKey, Vec<KeyViolation>>| -> Vec<&str> {
            result
                .expect_err("bad key")
                .into_iter()
                .map(|(field, _)| field)
                .collect()
        };
        assert_eq!(
            fields(AccountKey::parse(0, "USD", "", "", 0)),
            ["key.code", "key.currency_code"]
        );
        assert_eq!(
            fields(AccountKey::parse(100, "", CUSTOMER, "", 64)),
            ["key.customer_id", "key.sub_account"]
        );
        assert_eq!(
            fields(AccountKey::parse(300, "", CUSTOMER, "", 0)),
            ["key.loan_id"]
        );
        assert_eq!(
            fields(AccountKey::parse(200, "", "x", LOAN, 1)),
            ["key.customer_id", "key.loan_id", "key.sub_account"]
        );
        assert!(AccountKey::parse(310, "CNY", CUSTOMER, LOAN, 0).is_ok());
    }

    #[test]
    fn an_item_failing_two_checks_gets_the_first_listed() {
        // Bad code and bad currency: INVALID_CODE (7) precedes INVALID_CURRENCY (8).
        let item = AccountItem {
            code: 0,
            currency: "USD".into(),
            ..funding(1)
        };
        assert_eq!(status_of(item), S::InvalidCode);
        // Bad currency and both flags: INVALID_CURRENCY precedes the flags.
        let item = AccountItem {
            currency: String::new(),
            flags: AccountFlags {
                debits_must_not_exceed_credits: true,
                credits_must_not_exceed_debits: true,
                linked: false,
            },
            ..funding(1)
        };
        assert_eq!(status_of(item), S::InvalidCurrency);
    }

    #[test]
    fn ids_and_keys_are_idempotency_keys() {
        let now = Utc::now();
        let first = plan_create_accounts(&[funding(1)], KnownAccounts::default(), now);
        let known = KnownAccounts::new(first.created);
        let again = plan_create_accounts(
            &[
                funding(1),
                AccountItem {
                    sub_account: 2,
                    ..funding(1)
                },
                funding(2),
                AccountItem {
                    sub_account: 3,
                    ..funding(3)
                },
                AccountItem {
                    sub_account: 3,
                    ..funding(4)
                },
            ],
            known,
            now,
        );
        let statuses: Vec<_> = again.results.iter().map(|result| result.0).collect();
        assert_eq!(
            statuses,
            [
                S::Exists,
                S::ExistsWithDifferentFields,
                S::KeyExists,
                S::Created,
                S::KeyExists
            ]
        );
        assert_eq!(again.created.len(), 1);
    }

    #[test]
    fn a_linked_chain_creates_all_or_nothing() {
        let linked = |item: AccountItem| AccountItem {
            flags: AccountFlags {
                linked: true,
                ..item.flags
            },
            ..item
        };
        let plan = plan_create_accounts(
            &[
                linked(funding(1)),
                linked(AccountItem {
                    sub_account: 1,
                    ..funding(2)
                }),
                AccountItem {
                    code: 0,
                    ..funding(3)
                },
                AccountItem {
                    sub_account: 2,
                    ..funding(4)
                },
            ],
            KnownAccounts::default(),
            Utc::now(),
        );
        let statuses: Vec<_> = plan.results.iter().map(|result| result.0).collect();
        assert_eq!(
            statuses,
            [
                S::LinkedEventFailed,
                S::LinkedEventFailed,
                S::InvalidCode,
                S::Created
            ]
        );
        assert_eq!(plan.created.len(), 1);
        assert!(plan.results[0].1.is_none());
    }
}
