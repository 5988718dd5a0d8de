//! The general ledger through gRPC, against real Postgres: accounts, transfers (single
//! and two-phase, linked), idempotency, balance flags under concurrency, the trial
//! balance, integrity checks, listing and the business date. Each test owns its database.

mod common;

use common::{Book, book, cny, new_id};

use microloan_platform::{
    auth::Role,
    testing::{self},
};
use microloan_proto::{
    common::v1::Money,
    ledger::v1::{
        Account, AccountCode, AccountFlags, AccountKey, CreateAccountStatus, CreateAccountsRequest,
        CreateTransferResult, CreateTransferStatus, CreateTransfersRequest, GetAccountRequest,
        GetBusinessDateRequest, GetTrialBalanceRequest, IntegrityViolationKind,
        ListTransfersRequest, PendingStatus, Transfer, TransferCode, TransferFlags,
        VerifyIntegrityRequest, get_account_request::Lookup,
    },
};
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

/// A platform FUNDING account on `sub_account`.
fn funding(sub_account: i32) -> Account {
    Account {
        account_id: new_id(),
        code: AccountCode::Funding as i32,
        currency_code: "CNY".into(),
        sub_account,
        ..Account::default()
    }
}

/// A platform account whose debits must not exceed its credits.
fn guarded(sub_account: i32) -> Account {
    Account {
        flags: Some(AccountFlags {
            debits_must_not_exceed_credits: true,
            ..AccountFlags::default()
        }),
        ..funding(sub_account)
    }
}

fn transfer(debit: &str, credit: &str, amount: i64) -> Transfer {
    Transfer {
        transfer_id: new_id(),
        debit_account_id: debit.into(),
        credit_account_id: credit.into(),
        amount: cny(amount),
        code: TransferCode::ManualAdjustment as i32,
        ..Transfer::default()
    }
}

fn flags(linked: bool, pending: bool, post: bool, void: bool) -> Option<TransferFlags> {
    Some(TransferFlags {
        linked,
        pending,
        post_pending: post,
        void_pending: void,
    })
}

impl Book {
    async fn create_accounts_as(
        &mut self,
        request_id: &str,
        accounts: Vec<Account>,
    ) -> Result<Vec<CreateAccountStatus>, tonic::Status> {
        let response = self
            .client
            .create_accounts(testing::with_token(
                CreateAccountsRequest {
                    request_id: request_id.into(),
                    accounts,
                },
                &self.token,
            ))
            .await?
            .into_inner();
        Ok(response
            .results
            .iter()
            .map(|result| CreateAccountStatus::try_from(result.status).expect("known status"))
            .collect())
    }

    async fn create_accounts(&mut self, accounts: Vec<Account>) -> Vec<CreateAccountStatus> {
        self.create_accounts_as(&new_id(), accounts)
            .await
            .expect("CreateAccounts")
    }

    /// Creates accounts that must all be CREATED; returns their ids.
    async fn open(&mut self, accounts: Vec<Account>) -> Vec<String> {
        let ids = accounts.iter().map(|a| a.account_id.clone()).collect();
        let statuses = self.create_accounts(accounts).await;
        assert!(
            statuses.iter().all(|s| *s == CreateAccountStatus::Created),
            "{statuses:?}"
        );
        ids
    }

    async fn post_with(
        &mut self,
        token: &str,
        request_id: &str,
        transfers: Vec<Transfer>,
    ) -> Result<Vec<CreateTransferResult>, tonic::Status> {
        Ok(self
            .client
            .create_transfers(testing::with_token(
                CreateTransfersRequest {
                    request_id: request_id.into(),
                    transfers,
                },
                token,
            ))
            .await?
            .into_inner()
            .results)
    }

    async fn post(&mut self, transfers: Vec<Transfer>) -> Vec<CreateTransferStatus> {
        let token = self.token.clone();
        statuses(
            &self
                .post_with(&token, &new_id(), transfers)
                .await
                .expect("CreateTransfers"),
        )
    }

    async fn account(&mut self, id: &str) -> Account {
        self.client
            .get_account(testing::with_token(
                GetAccountRequest {
                    lookup: Some(Lookup::AccountId(id.into())),
                },
                &self.token,
            ))
            .await
            .expect("GetAccount")
            .into_inner()
            .account
            .expect("account")
    }

    /// (debits posted, credits posted, debits pending, credits pending).
    async fn balances(&mut self, id: &str) -> (i64, i64, i64, i64) {
        let account = self.account(id).await;
        let fen = |money: Option<Money>| money.map_or(0, |money| money.minor_units);
        (
            fen(account.debits_posted),
            fen(account.credits_posted),
            fen(account.debits_pending),
            fen(account.credits_pending),
        )
    }

    async fn database(&self) -> sqlx::PgPool {
        sqlx::PgPool::connect(&self.app.database_url)
            .await
            .expect("connect")
    }

    async fn verify(
        &mut self,
        max_violations: i32,
    ) -> microloan_proto::ledger::v1::VerifyIntegrityResponse {
        self.client
            .verify_integrity(testing::with_token(
                VerifyIntegrityRequest {
                    customer_id: String::new(),
                    max_violations,
                },
                &self.token,
            ))
            .await
            .expect("VerifyIntegrity")
            .into_inner()
    }
}

fn statuses(results: &[CreateTransferResult]) -> Vec<CreateTransferStatus> {
    results
        .iter()
        .map(|result| CreateTransferStatus::try_from(result.status).expect("known status"))
        .collect()
}

fn fields(status: &tonic::Status) -> Vec<String> {
    status
        .get_error_details()
        .bad_request()
        .map(|bad| {
            bad.field_violations
                .iter()
                .map(|v| v.field.clone())
                .collect()
        })
        .unwrap_or_default()
}

fn reason(status: &tonic::Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn created_accounts_are_read_back_by_id_and_key_and_ids_and_keys_are_idempotency_keys() {
    use CreateAccountStatus as S;
    let mut book = book().await;
    let first = funding(3);
    let statuses = book.create_accounts(vec![first.clone()]).await;
    assert_eq!(statuses, [S::Created]);

    let other_key = Account {
        account_id: new_id(),
        ..first.clone()
    };
    let other_fields = Account {
        sub_account: 4,
        ..first.clone()
    };
    let statuses = book
        .create_accounts(vec![first.clone(), other_fields, other_key.clone()])
        .await;
    assert_eq!(
        statuses,
        [S::Exists, S::ExistsWithDifferentFields, S::KeyExists]
    );

    let read = book.account(&first.account_id).await;
    assert_eq!(
        (read.code, read.sub_account),
        (AccountCode::Funding as i32, 3)
    );
    assert_eq!(read.debits_posted, cny(0));
    assert!(read.create_time.is_some());
    let by_key = book
        .client
        .get_account(testing::with_token(
            GetAccountRequest {
                lookup: Some(Lookup::Key(AccountKey {
                    code: AccountCode::Funding as i32,
                    sub_account: 3,
                    ..AccountKey::default()
                })),
            },
            &book.token,
        ))
        .await
        .expect("by key")
        .into_inner();
    assert_eq!(
        by_key.account.expect("account").account_id,
        first.account_id
    );

    let missing = book
        .client
        .get_account(testing::with_token(
            GetAccountRequest {
                lookup: Some(Lookup::AccountId(other_key.account_id.clone())),
            },
            &book.token,
        ))
        .await
        .expect_err("never created");
    assert_eq!(missing.code(), Code::NotFound);
    let malformed = book
        .client
        .get_account(testing::with_token(
            GetAccountRequest {
                lookup: Some(Lookup::AccountId("nope".into())),
            },
            &book.token,
        ))
        .await
        .expect_err("malformed");
    assert_eq!(
        (malformed.code(), fields(&malformed)),
        (Code::InvalidArgument, vec!["account_id".to_owned()])
    );
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn each_bad_account_gets_its_status_and_nothing_is_created() {
    use CreateAccountStatus as S;
    let mut book = book().await;
    let customer = new_id();
    let line = |account: Account| Account {
        code: AccountCode::CreditLineAvailable as i32,
        customer_id: customer.clone(),
        ..account
    };
    let cases: Vec<(&str, Account, S)> = vec![
        (
            "bad id",
            Account {
                account_id: "x".into(),
                ..funding(0)
            },
            S::InvalidAccountId,
        ),
        (
            "no code",
            Account {
                code: 0,
                ..funding(0)
            },
            S::InvalidCode,
        ),
        (
            "usd",
            Account {
                currency_code: "USD".into(),
                ..funding(0)
            },
            S::InvalidCurrency,
        ),
        (
            "both flags",
            Account {
                flags: Some(AccountFlags {
                    linked: false,
                    debits_must_not_exceed_credits: true,
                    credits_must_not_exceed_debits: true,
                }),
                ..funding(0)
            },
            S::FlagsAreMutuallyExclusive,
        ),
        (
            "line without customer",
            Account {
                customer_id: String::new(),
                ..line(funding(0))
            },
            S::CustomerIdRequired,
        ),
        (
            "platform with customer",
            Account {
                customer_id: customer.clone(),
                ..funding(0)
            },
            S::CustomerIdMustBeEmpty,
        ),
        (
            "line with loan",
            Account {
                loan_id: new_id(),
                ..line(funding(0))
            },
            S::LoanIdMustBeEmpty,
        ),
        (
            "balance set",
            Account {
                credits_posted: cny(5),
                ..funding(0)
            },
            S::BalancesMustBeZero,
        ),
        ("sub-account 64", funding(64), S::InvalidSubAccount),
        (
            "customer sub-account",
            line(funding(2)),
            S::InvalidSubAccount,
        ),
        (
            "malformed customer",
            Account {
                customer_id: "c".into(),
                ..line(funding(0))
            },
            S::InvalidCustomerId,
        ),
        // Two faults at once: the first listed wins (INVALID_CODE before INVALID_CURRENCY).
        (
            "code and currency",
            Account {
                code: 7,
                currency_code: "EUR".into(),
                ..funding(0)
            },
            S::InvalidCode,
        ),
    ];
    let (names, accounts, want): (Vec<_>, Vec<_>, Vec<_>) = cases.into_iter().fold(
        (vec![], vec![], vec![]),
        |(mut n, mut a, mut w), (name, account, status)| {
            n.push(name);
            a.push(account);
            w.push(status);
            (n, a, w)
        },
    );
    let ids: Vec<String> = accounts.iter().map(|a| a.account_id.clone()).collect();
    let got = book.create_accounts(accounts).await;
    for ((name, got), want) in names.iter().zip(&got).zip(&want) {
        assert_eq!(got, want, "{name}");
    }
    for id in ids.iter().filter(|id| Uuid::parse_str(id).is_ok()) {
        let status = book
            .client
            .get_account(testing::with_token(
                GetAccountRequest {
                    lookup: Some(Lookup::AccountId(id.clone())),
                },
                &book.token,
            ))
            .await
            .expect_err("nothing created");
        assert_eq!(status.code(), Code::NotFound);
    }
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_malformed_batch_request_is_invalid_argument_naming_the_field() {
    let mut book = book().await;
    let empty = book
        .create_accounts_as("r1", vec![])
        .await
        .expect_err("empty");
    assert_eq!(
        (empty.code(), fields(&empty)),
        (Code::InvalidArgument, vec!["accounts".to_owned()])
    );
    let too_many = (0..1001).map(|i| funding(i % 64)).collect();
    let status = book
        .create_accounts_as("r2", too_many)
        .await
        .expect_err("1001");
    assert_eq!(fields(&status), ["accounts"]);
    let status = book
        .create_accounts_as("", vec![funding(0)])
        .await
        .expect_err("no request_id");
    assert_eq!(fields(&status), ["request_id"]);
    let token = book.token.clone();
    let status = book
        .post_with(&token, "bad id!", vec![])
        .await
        .expect_err("both");
    assert_eq!(fields(&status), ["request_id", "transfers"]);
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_request_id_replays_its_response_and_refuses_another_body() {
    let mut book = book().await;
    let ids = book.open(vec![funding(0), funding(1)]).await;
    let token = book.token.clone();
    let batch = vec![transfer(&ids[0], &ids[1], 10)];
    let first = book
        .post_with(&token, "req-1", batch.clone())
        .await
        .expect("first");
    let again = book
        .post_with(&token, "req-1", batch.clone())
        .await
        .expect("replay");
    assert_eq!(first, again, "same request_id and body: the same response");
    assert_eq!(book.balances(&ids[0]).await.0, 10, "applied once");
    let other = book
        .post_with(&token, "req-1", vec![transfer(&ids[0], &ids[1], 11)])
        .await
        .expect_err("another body");
    assert_eq!(
        (other.code(), reason(&other)),
        (Code::AlreadyExists, "IDEMPOTENCY_KEY_REUSED".to_owned())
    );
    assert_eq!(book.balances(&ids[0]).await.0, 10, "nothing changed");
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn each_bad_transfer_gets_its_status_and_changes_nothing() {
    use CreateTransferStatus as S;
    let mut book = book().await;
    let ids = book.open(vec![guarded(0), funding(1), funding(2)]).await;
    let (guard, plain) = (ids[0].clone(), ids[1].clone());
    // Fund the guarded account with 100.
    assert_eq!(
        book.post(vec![transfer(&plain, &guard, 100)]).await,
        [S::Created]
    );
    let base = || transfer(&guard, &plain, 10);
    let cases: Vec<(&str, Transfer, S)> = vec![
        (
            "bad id",
            Transfer {
                transfer_id: "t".into(),
                ..base()
            },
            S::InvalidTransferId,
        ),
        (
            "same accounts",
            Transfer {
                credit_account_id: guard.clone(),
                ..base()
            },
            S::AccountsMustBeDifferent,
        ),
        (
            "unknown debit",
            Transfer {
                debit_account_id: new_id(),
                ..base()
            },
            S::DebitAccountNotFound,
        ),
        (
            "malformed credit",
            Transfer {
                credit_account_id: "c".into(),
                ..base()
            },
            S::CreditAccountNotFound,
        ),
        (
            "usd",
            Transfer {
                amount: Some(Money {
                    currency_code: "USD".into(),
                    minor_units: 10,
                }),
                ..base()
            },
            S::CurrencyMismatch,
        ),
        (
            "zero",
            Transfer {
                amount: cny(0),
                ..base()
            },
            S::AmountMustBePositive,
        ),
        (
            "negative",
            Transfer {
                amount: cny(-10),
                ..base()
            },
            S::AmountMustBePositive,
        ),
        ("no code", Transfer { code: 0, ..base() }, S::InvalidCode),
        (
            "two phases",
            Transfer {
                flags: flags(false, true, true, false),
                ..base()
            },
            S::FlagsAreMutuallyExclusive,
        ),
        (
            "post without pending id",
            Transfer {
                flags: flags(false, false, true, false),
                ..base()
            },
            S::PendingIdRequired,
        ),
        (
            "pending id on a plain transfer",
            Transfer {
                pending_id: new_id(),
                ..base()
            },
            S::PendingIdMustBeEmpty,
        ),
        (
            "unknown pending",
            Transfer {
                flags: flags(false, false, false, true),
                pending_id: new_id(),
                ..base()
            },
            S::PendingTransferNotFound,
        ),
        (
            "timeout on a plain transfer",
            Transfer {
                timeout_seconds: 5,
                ..base()
            },
            S::TimeoutReservedForPendingTransfer,
        ),
        (
            "timeout too long",
            Transfer {
                flags: flags(false, true, false, false),
                timeout_seconds: 604_801,
                ..base()
            },
            S::InvalidTimeout,
        ),
        (
            "overdraw",
            Transfer {
                amount: cny(101),
                ..base()
            },
            S::ExceedsCredits,
        ),
        (
            "customer on platform accounts",
            Transfer {
                customer_id: new_id(),
                ..base()
            },
            S::InvalidCustomerId,
        ),
        (
            "malformed loan",
            Transfer {
                loan_id: "l".into(),
                ..base()
            },
            S::InvalidLoanId,
        ),
        (
            "long description",
            Transfer {
                description: "d".repeat(257),
                ..base()
            },
            S::InvalidDescription,
        ),
        (
            "output field",
            Transfer {
                pending_status: 1,
                ..base()
            },
            S::OutputFieldsMustBeUnset,
        ),
        // Two faults at once: the first listed wins.
        (
            "zero amount and no code",
            Transfer {
                amount: cny(0),
                code: 0,
                ..base()
            },
            S::AmountMustBePositive,
        ),
        (
            "unknown debit and credit",
            Transfer {
                debit_account_id: new_id(),
                credit_account_id: new_id(),
                ..base()
            },
            S::DebitAccountNotFound,
        ),
        (
            "overdraw and long description",
            Transfer {
                amount: cny(500),
                description: "d".repeat(300),
                ..base()
            },
            S::ExceedsCredits,
        ),
    ];
    let before = (book.balances(&guard).await, book.balances(&plain).await);
    let (names, items): (Vec<_>, Vec<_>) = cases
        .iter()
        .map(|(name, item, _)| (*name, item.clone()))
        .unzip();
    let got = book.post(items).await;
    for ((name, got), (_, _, want)) in names.iter().zip(&got).zip(&cases) {
        assert_eq!(got, want, "{name}");
    }
    assert_eq!(
        (book.balances(&guard).await, book.balances(&plain).await),
        before
    );
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn operators_may_post_only_manual_adjustments() {
    use CreateTransferStatus as S;
    let mut book = book().await;
    let ids = book.open(vec![funding(0), funding(1)]).await;
    let operator = testing::token(Role::Operator, None);
    let accrual = Transfer {
        code: TransferCode::InterestAccrual as i32,
        ..transfer(&ids[0], &ids[1], 5)
    };
    let results = book
        .post_with(
            &operator,
            "op-1",
            vec![accrual, transfer(&ids[0], &ids[1], 5)],
        )
        .await
        .expect("operator batch");
    assert_eq!(statuses(&results), [S::InvalidCode, S::Created]);
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_linked_chain_is_all_or_nothing_and_transfer_ids_are_idempotency_keys() {
    use CreateTransferStatus as S;
    let mut book = book().await;
    let ids = book.open(vec![guarded(0), funding(1)]).await;
    let (guard, plain) = (ids[0].clone(), ids[1].clone());
    assert_eq!(
        book.post(vec![transfer(&plain, &guard, 100)]).await,
        [S::Created]
    );
    let linked = |t: Transfer| Transfer {
        flags: flags(true, false, false, false),
        ..t
    };
    let chain = vec![
        linked(transfer(&guard, &plain, 60)),
        linked(transfer(&guard, &plain, 30)),
        transfer(&guard, &plain, 20),
        transfer(&guard, &plain, 5),
    ];
    let got = book.post(chain).await;
    assert_eq!(
        got,
        [
            S::LinkedEventFailed,
            S::LinkedEventFailed,
            S::ExceedsCredits,
            S::Created
        ]
    );
    assert_eq!(
        book.balances(&guard).await,
        (5, 100, 0, 0),
        "only the unlinked item moved money"
    );
    let open = book.post(vec![linked(transfer(&guard, &plain, 1))]).await;
    assert_eq!(open, [S::LinkedEventChainOpen]);

    let once = transfer(&guard, &plain, 7);
    assert_eq!(book.post(vec![once.clone()]).await, [S::Created]);
    assert_eq!(book.post(vec![once.clone()]).await, [S::Exists]);
    let changed = Transfer {
        amount: cny(8),
        ..once
    };
    assert_eq!(
        book.post(vec![changed]).await,
        [S::ExistsWithDifferentFields]
    );
    assert_eq!(book.balances(&guard).await, (12, 100, 0, 0));
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn two_phase_transfers_reserve_post_in_full_or_part_void_expire_and_resolve_once() {
    use CreateTransferStatus as S;
    let mut book = book().await;
    let ids = book.open(vec![guarded(0), funding(1)]).await;
    let (guard, plain) = (ids[0].clone(), ids[1].clone());
    assert_eq!(
        book.post(vec![transfer(&plain, &guard, 100)]).await,
        [S::Created]
    );
    let pending = |amount, timeout| Transfer {
        flags: flags(false, true, false, false),
        timeout_seconds: timeout,
        ..transfer(&guard, &plain, amount)
    };
    let resolve = |pending: &Transfer, amount, post: bool| Transfer {
        flags: flags(false, false, post, !post),
        pending_id: pending.transfer_id.clone(),
        amount: cny(amount),
        ..transfer(&guard, &plain, 0)
    };
    let (full, part, void, short) = (
        pending(20, 0),
        pending(30, 0),
        pending(10, 0),
        pending(25, 1),
    );
    let got = book
        .post(vec![
            full.clone(),
            part.clone(),
            void.clone(),
            short.clone(),
        ])
        .await;
    assert_eq!(got, [S::Created; 4]);
    assert_eq!(
        book.balances(&guard).await,
        (0, 100, 85, 0),
        "pending debits reserve"
    );
    // A reservation counts against the flag: 85 reserved + 20 > 100.
    assert_eq!(
        book.post(vec![transfer(&guard, &plain, 20)]).await,
        [S::ExceedsCredits]
    );

    let got = book
        .post(vec![
            resolve(&full, 0, true),
            resolve(&part, 12, true),
            resolve(&void, 0, false),
        ])
        .await;
    assert_eq!(got, [S::Created; 3]);
    assert_eq!(
        book.balances(&guard).await,
        (32, 100, 25, 0),
        "20 in full + 12 of 30; 10 voided"
    );
    let got = book
        .post(vec![
            resolve(&full, 0, false),
            resolve(&void, 0, true),
            resolve(&part, 1, true),
        ])
        .await;
    assert_eq!(
        got,
        [
            S::PendingTransferAlreadyPosted,
            S::PendingTransferAlreadyVoided,
            S::PendingTransferAlreadyPosted
        ]
    );
    assert_eq!(
        book.post(vec![resolve(&short, 26, true)]).await,
        [S::ExceedsPendingTransferAmount]
    );

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // Reading the account expires its reservation past its timeout.
    assert_eq!(
        book.balances(&guard).await,
        (32, 100, 0, 0),
        "the expired reservation is released"
    );
    assert_eq!(
        book.post(vec![resolve(&short, 0, true)]).await,
        [S::PendingTransferExpired]
    );
    let listed = book
        .client
        .list_transfers(testing::with_token(
            ListTransfersRequest {
                account_id: guard.clone(),
                page_size: 500,
                ..Default::default()
            },
            &book.token,
        ))
        .await
        .expect("list")
        .into_inner()
        .transfers;
    let state = |id: &str| {
        listed
            .iter()
            .find(|t| t.transfer_id == id)
            .map(|t| t.pending_status)
    };
    assert_eq!(state(&full.transfer_id), Some(PendingStatus::Posted as i32));
    assert_eq!(state(&void.transfer_id), Some(PendingStatus::Voided as i32));
    assert_eq!(
        state(&short.transfer_id),
        Some(PendingStatus::Expired as i32)
    );
    assert!(book.verify(0).await.ok);
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_background_sweep_expires_a_reservation_nothing_touches_again() {
    use CreateTransferStatus as S;
    let mut book = common::book_with(&[("LEDGER_EXPIRY_SWEEP_INTERVAL_MS", "100")]).await;
    let ids = book.open(vec![guarded(0), funding(1)]).await;
    let (guard, plain) = (ids[0].clone(), ids[1].clone());
    assert_eq!(
        book.post(vec![transfer(&plain, &guard, 100)]).await,
        [S::Created]
    );
    let pending = |amount, timeout| Transfer {
        flags: flags(false, true, false, false),
        timeout_seconds: timeout,
        ..transfer(&guard, &plain, amount)
    };
    let (expiring, kept) = (pending(40, 1), pending(10, 0));
    assert_eq!(
        book.post(vec![expiring.clone(), kept.clone()]).await,
        [S::Created; 2]
    );
    // Read the rows directly: GetAccount would expire lazily and hide the sweep.
    let database = book.database().await;
    let stored = |id: &str| {
        let (database, id) = (database.clone(), Uuid::parse_str(id).expect("uuid"));
        async move {
            sqlx::query_as::<_, (i16, i64)>(
                "SELECT p.status, a.debits_pending FROM pending_transfers p \
                 JOIN accounts a ON a.id = p.debit_account_id WHERE p.transfer_id = $1",
            )
            .bind(id)
            .fetch_one(&database)
            .await
            .expect("reservation row")
        }
    };
    assert_eq!(stored(&expiring.transfer_id).await, (1, 50), "reserved");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while stored(&expiring.transfer_id).await.0 == 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sweep did not expire the reservation within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // EXPIRED (4), its 40 released; the reservation without a timeout stays.
    assert_eq!(stored(&expiring.transfer_id).await, (4, 10));
    assert_eq!(stored(&kept.transfer_id).await, (1, 10));
    let post_expired = Transfer {
        flags: flags(false, false, true, false),
        pending_id: expiring.transfer_id.clone(),
        amount: cny(0),
        ..transfer(&guard, &plain, 0)
    };
    assert_eq!(
        book.post(vec![post_expired]).await,
        [S::PendingTransferExpired]
    );
    assert_eq!(book.balances(&guard).await, (0, 100, 10, 0));
    assert!(book.verify(0).await.ok);
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn concurrent_transfers_never_overdraw_a_guarded_account() {
    use CreateTransferStatus as S;
    let mut book = book().await;
    let customer = new_id();
    let line = Account {
        code: AccountCode::CreditLineAvailable as i32,
        customer_id: customer.clone(),
        ..guarded(0)
    };
    let ids = book.open(vec![line, funding(1)]).await;
    let (line, control) = (ids[0].clone(), ids[1].clone());
    let open = Transfer {
        customer_id: customer.clone(),
        ..transfer(&control, &line, 100)
    };
    assert_eq!(book.post(vec![open]).await, [S::Created]);
    // 20 drawdowns of 10 each (half of them two-phase), each alone within the headroom,
    // together twice over it.
    let mut tasks = Vec::new();
    for i in 0..20 {
        let mut client = book.client.clone();
        let token = book.token.clone();
        let draw = Transfer {
            customer_id: customer.clone(),
            flags: flags(false, i % 2 == 0, false, false),
            ..transfer(&line, &control, 10)
        };
        tasks.push(tokio::spawn(async move {
            client
                .create_transfers(testing::with_token(
                    CreateTransfersRequest {
                        request_id: new_id(),
                        transfers: vec![draw],
                    },
                    &token,
                ))
                .await
                .expect("CreateTransfers")
                .into_inner()
                .results[0]
                .status
        }));
    }
    let mut created = 0;
    for task in tasks {
        let status = CreateTransferStatus::try_from(task.await.expect("task")).expect("status");
        match status {
            S::Created => created += 1,
            S::ExceedsCredits => {}
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created, 10, "exactly the headroom is drawn");
    let (debits_posted, credits_posted, debits_pending, _) = book.balances(&line).await;
    assert_eq!(debits_posted + debits_pending, credits_posted);
    assert!(book.verify(0).await.ok);
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn batches_locking_the_same_accounts_in_opposite_orders_do_not_deadlock() {
    let mut book = book().await;
    let ids = book.open(vec![funding(0), funding(1)]).await;
    let mut tasks = Vec::new();
    for i in 0..16 {
        let mut client = book.client.clone();
        let token = book.token.clone();
        let (a, b) = if i % 2 == 0 {
            (&ids[0], &ids[1])
        } else {
            (&ids[1], &ids[0])
        };
        let batch = vec![transfer(a, b, 1), transfer(b, a, 2), transfer(a, b, 3)];
        tasks.push(tokio::spawn(async move {
            client
                .create_transfers(testing::with_token(
                    CreateTransfersRequest {
                        request_id: new_id(),
                        transfers: batch,
                    },
                    &token,
                ))
                .await
                .map(|response| statuses(&response.into_inner().results))
        }));
    }
    let all = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.expect("task"));
        }
        results
    })
    .await
    .expect("no deadlock");
    for result in all {
        assert_eq!(
            result.expect("no error"),
            [CreateTransferStatus::Created; 3]
        );
    }
    assert_eq!(
        book.balances(&ids[0]).await.0 + book.balances(&ids[1]).await.0,
        16 * 6
    );
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_balance_past_int64_is_refused() {
    use CreateTransferStatus as S;
    let mut book = book().await;
    let ids = book.open(vec![funding(0), funding(1)]).await;
    assert_eq!(
        book.post(vec![transfer(&ids[0], &ids[1], i64::MAX)]).await,
        [S::Created]
    );
    assert_eq!(
        book.post(vec![transfer(&ids[0], &ids[1], 1)]).await,
        [S::Overflows]
    );
    assert_eq!(book.balances(&ids[0]).await.0, i64::MAX);
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_trial_balance_sums_sub_accounts_per_code_and_balances() {
    use CreateTransferStatus as S;
    let mut book = book().await;
    let control = Account {
        code: AccountCode::CreditLineControl as i32,
        ..funding(0)
    };
    let ids = book.open(vec![funding(0), funding(1), control]).await;
    let pending = Transfer {
        flags: flags(false, true, false, false),
        ..transfer(&ids[2], &ids[1], 7)
    };
    let got = book
        .post(vec![
            transfer(&ids[0], &ids[2], 50),
            transfer(&ids[1], &ids[2], 20),
            pending,
        ])
        .await;
    assert_eq!(got, [S::Created; 3]);
    let trial = |as_of_date, currency_code: &str| GetTrialBalanceRequest {
        currency_code: currency_code.into(),
        as_of_date,
    };
    let live = book
        .client
        .get_trial_balance(testing::with_token(trial(None, ""), &book.token))
        .await
        .expect("trial balance")
        .into_inner();
    assert!(live.balanced);
    assert_eq!(live.lines.len(), 2);
    let funding_line = &live.lines[0];
    assert_eq!(
        (funding_line.code, funding_line.account_count),
        (AccountCode::Funding as i32, 2)
    );
    assert_eq!(funding_line.debits_posted, cny(70));
    assert_eq!(funding_line.credits_pending, cny(7));
    assert_eq!(live.lines[1].net_debit_balance, cny(-70));
    assert_eq!(
        (live.total_debits_posted, live.total_credits_posted),
        (cny(70), cny(70))
    );
    assert_eq!(
        (live.total_debits_pending, live.total_credits_pending),
        (cny(7), cny(7))
    );

    let today = live.as_of_date;
    let closed = book
        .client
        .get_trial_balance(testing::with_token(trial(today, "CNY"), &book.token))
        .await
        .expect("as of today")
        .into_inner();
    assert!(closed.balanced);
    assert_eq!(closed.total_debits_posted, cny(70));
    assert_eq!(
        closed.total_debits_pending,
        cny(0),
        "pending columns are zero as of a date"
    );

    let mut future = today.expect("date");
    future.year += 1;
    let status = book
        .client
        .get_trial_balance(testing::with_token(trial(Some(future), ""), &book.token))
        .await
        .expect_err("after the business date");
    assert_eq!(fields(&status), ["as_of_date"]);
    let status = book
        .client
        .get_trial_balance(testing::with_token(trial(None, "USD"), &book.token))
        .await
        .expect_err("usd");
    assert_eq!(fields(&status), ["currency_code"]);
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn verify_integrity_passes_a_clean_book_and_finds_an_injected_fault() {
    let mut book = book().await;
    let ids = book.open(vec![funding(0), funding(1)]).await;
    book.post(vec![transfer(&ids[0], &ids[1], 40)]).await;
    let clean = book.verify(0).await;
    assert!(clean.ok, "{:?}", clean.violations);
    assert_eq!((clean.accounts_checked, clean.transfers_checked), (2, 1));

    sqlx::query("UPDATE accounts SET debits_posted = debits_posted + 5 WHERE id = $1")
        .bind(Uuid::parse_str(&ids[0]).expect("uuid"))
        .execute(&book.database().await)
        .await
        .expect("inject");
    let report = book.verify(0).await;
    assert!(!report.ok);
    let kinds: Vec<i32> = report.violations.iter().map(|v| v.kind).collect();
    assert!(
        kinds.contains(&(IntegrityViolationKind::DebitsCreditsMismatch as i32)),
        "{kinds:?}"
    );
    let mismatch = report
        .violations
        .iter()
        .find(|v| v.kind == IntegrityViolationKind::AccountBalanceMismatch as i32)
        .expect("account mismatch");
    assert_eq!(mismatch.account_id, ids[0]);
    assert_eq!(
        (mismatch.expected.clone(), mismatch.actual.clone()),
        (cny(40), cny(45))
    );
    // A reservation marked POSTED without its post_pending transfer.
    let pending = Transfer {
        flags: flags(false, true, false, false),
        ..transfer(&ids[0], &ids[1], 3)
    };
    book.post(vec![pending.clone()]).await;
    sqlx::query("UPDATE pending_transfers SET status = 2 WHERE transfer_id = $1")
        .bind(Uuid::parse_str(&pending.transfer_id).expect("uuid"))
        .execute(&book.database().await)
        .await
        .expect("inject");
    let report = book.verify(0).await;
    let inconsistent = report
        .violations
        .iter()
        .find(|v| v.kind == IntegrityViolationKind::PendingTransferInconsistent as i32)
        .expect("pending inconsistency");
    assert_eq!(inconsistent.transfer_id, pending.transfer_id);
    // Scoped to a customer, the platform accounts' faults are out of scope.
    let scoped = book
        .client
        .verify_integrity(testing::with_token(
            VerifyIntegrityRequest {
                customer_id: new_id(),
                max_violations: 0,
            },
            &book.token,
        ))
        .await
        .expect("scoped")
        .into_inner();
    assert!(scoped.ok && scoped.accounts_checked == 0, "{scoped:?}");
    let cut = book.verify(1).await;
    assert_eq!((cut.violations.len(), cut.violations_truncated), (1, true));
    let status = book
        .client
        .verify_integrity(testing::with_token(
            VerifyIntegrityRequest {
                customer_id: "x".into(),
                max_violations: 1001,
            },
            &book.token,
        ))
        .await
        .expect_err("bad request");
    assert_eq!(fields(&status), ["customer_id", "max_violations"]);
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn list_transfers_pages_in_commit_order_and_checks_its_token() {
    let mut book = book().await;
    let ids = book.open(vec![funding(0), funding(1), funding(2)]).await;
    let mine: Vec<Transfer> = (1..=7).map(|n| transfer(&ids[0], &ids[1], n)).collect();
    book.post(mine[..4].to_vec()).await;
    book.post(vec![transfer(&ids[1], &ids[2], 99)]).await;
    book.post(mine[4..].to_vec()).await;
    let list = |page_token: String| ListTransfersRequest {
        account_id: ids[0].clone(),
        page_size: 3,
        page_token,
        ..Default::default()
    };
    let mut seen = Vec::new();
    let mut token = String::new();
    for want in [3, 3, 1] {
        let page = book
            .client
            .list_transfers(testing::with_token(list(token.clone()), &book.token))
            .await
            .expect("page")
            .into_inner();
        assert_eq!(page.transfers.len(), want);
        seen.extend(page.transfers.into_iter().map(|t| t.transfer_id));
        token = page.next_page_token;
    }
    assert!(token.is_empty(), "the last page has no next token");
    let want: Vec<String> = mine.iter().map(|t| t.transfer_id.clone()).collect();
    assert_eq!(seen, want);

    let first = book
        .client
        .list_transfers(testing::with_token(list(String::new()), &book.token))
        .await
        .expect("page")
        .into_inner();
    let other_filter = ListTransfersRequest {
        account_id: ids[1].clone(),
        ..list(first.next_page_token)
    };
    for (request, field) in [
        (list("garbage".into()), "page_token"),
        (other_filter, "page_token"),
        (
            ListTransfersRequest {
                account_id: String::new(),
                ..list(String::new())
            },
            "account_id",
        ),
        (
            ListTransfersRequest {
                page_size: -1,
                ..list(String::new())
            },
            "page_size",
        ),
    ] {
        let status = book
            .client
            .list_transfers(testing::with_token(request, &book.token))
            .await
            .expect_err(field);
        assert_eq!(fields(&status), [field]);
    }
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn the_business_date_starts_today_in_shanghai_and_end_of_day_aborts_postings() {
    use chrono::Datelike;
    let mut book = book().await;
    let answer = book
        .client
        .get_business_date(testing::with_token(GetBusinessDateRequest {}, &book.token))
        .await
        .expect("business date")
        .into_inner();
    let shanghai = (chrono::Utc::now() + chrono::TimeDelta::hours(8)).date_naive();
    let date = answer.business_date.expect("date");
    assert_eq!(
        (date.year, date.month, date.day),
        (
            shanghai.year(),
            shanghai.month() as i32,
            shanghai.day() as i32
        )
    );
    assert_eq!(answer.time_zone, "Asia/Shanghai");
    assert!(!answer.end_of_day_running && answer.last_end_of_day_time.is_none());

    let ids = book.open(vec![funding(0), funding(1)]).await;
    sqlx::query("UPDATE business_date SET end_of_day_running = true")
        .execute(&book.database().await)
        .await
        .expect("start end of day");
    let token = book.token.clone();
    let status = book
        .post_with(&token, "during-eod", vec![transfer(&ids[0], &ids[1], 1)])
        .await
        .expect_err("end of day running");
    assert_eq!(
        (status.code(), reason(&status)),
        (Code::Aborted, "END_OF_DAY_RUNNING".to_owned())
    );
    assert_eq!(
        book.balances(&ids[0]).await,
        (0, 0, 0, 0),
        "nothing committed"
    );
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn concurrent_retries_of_one_request_id_apply_it_once() {
    let mut book = book().await;
    let ids = book.open(vec![funding(0), funding(1)]).await;
    let batch = vec![transfer(&ids[0], &ids[1], 25)];
    let mut tasks = Vec::new();
    for _ in 0..10 {
        let mut client = book.client.clone();
        let token = book.token.clone();
        let batch = batch.clone();
        tasks.push(tokio::spawn(async move {
            client
                .create_transfers(testing::with_token(
                    CreateTransfersRequest {
                        request_id: "retry-me".into(),
                        transfers: batch,
                    },
                    &token,
                ))
                .await
                .expect("CreateTransfers")
                .into_inner()
        }));
    }
    let mut responses = Vec::new();
    for task in tasks {
        responses.push(task.await.expect("task"));
    }
    assert!(
        responses.windows(2).all(|pair| pair[0] == pair[1]),
        "one response for all"
    );
    assert_eq!(
        statuses(&responses[0].results),
        [CreateTransferStatus::Created]
    );
    assert_eq!(book.balances(&ids[0]).await.0, 25, "applied once");
    book.app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn full_batches_of_1000_accounts_and_1000_transfers_apply_in_one_call_each() {
    let mut book = book().await;
    let lines: Vec<Account> = (0..1000)
        .map(|_| Account {
            code: AccountCode::CreditLineAvailable as i32,
            customer_id: new_id(),
            ..funding(0)
        })
        .collect();
    book.open(lines).await;
    let ids = book.open(vec![funding(0), funding(1)]).await;
    let batch: Vec<Transfer> = (1..=1000).map(|n| transfer(&ids[0], &ids[1], n)).collect();
    let got = book.post(batch).await;
    assert!(got.iter().all(|s| *s == CreateTransferStatus::Created));
    assert_eq!(book.balances(&ids[0]).await.0, 1000 * 1001 / 2);
    assert!(book.verify(0).await.ok);
    book.app.stop().await.expect("clean stop");
}

/// The SQLSTATE of a failed raw statement.
fn sqlstate(result: Result<sqlx::postgres::PgQueryResult, sqlx::Error>) -> String {
    match result {
        Err(sqlx::Error::Database(err)) => {
            err.code().map(|code| code.into_owned()).unwrap_or_default()
        }
        other => panic!("expected a database error, got {other:?}"),
    }
}

/// Migration 0060: the references of `transfers` are checked once per statement (not
/// per row by foreign keys), and referenced rows can be neither deleted nor renamed,
/// so a transfer can never name a missing account or pending transfer.
#[tokio::test]
async fn transfers_cannot_name_missing_rows_and_referenced_rows_are_kept() {
    let mut book = book().await;
    let ids = book.open(vec![funding(0), funding(1)]).await;
    let posted = transfer(&ids[0], &ids[1], 7);
    book.post(vec![posted.clone()]).await;
    let db = book.database().await;
    let insert = "INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, \
         requested_amount, currency, code, kind, linked, pending_id, business_date) \
         SELECT id, $2, $3, 1, 1, 'CNY', 90, kind, false, $4, current_date \
         FROM unnest($1::uuid[]) AS u(id), \
              LATERAL (SELECT CASE WHEN $4::uuid IS NULL THEN 0 ELSE 2 END::int2 AS kind) k";
    let known = |i: usize| Uuid::parse_str(&ids[i]).expect("uuid");
    // Two rows per statement (one would do for the pending case, where two rows naming
    // one pending transfer would break the unique index transfers_one_resolution first).
    let new_ids = |pending: Option<Uuid>| match pending {
        None => vec![Uuid::now_v7(), Uuid::now_v7()],
        Some(_) => vec![Uuid::now_v7()],
    };
    let missing = Uuid::now_v7();
    // A statement with a bad column anywhere is refused as a whole.
    for (debit, credit, pending) in [
        (missing, known(1), None),
        (known(0), missing, None),
        (known(0), known(1), Some(missing)),
    ] {
        let refused = sqlx::query(insert)
            .bind(new_ids(pending))
            .bind(debit)
            .bind(credit)
            .bind(pending)
            .execute(&db)
            .await;
        assert_eq!(sqlstate(refused), "23503", "{debit} {credit} {pending:?}");
    }
    let count = || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM transfers")
            .fetch_one(&db)
            .await
            .expect("count");
        n
    };
    assert_eq!(count().await, 1, "nothing of a refused statement stays");
    for statement in [
        "DELETE FROM accounts WHERE id = $1",
        "UPDATE accounts SET id = gen_random_uuid() WHERE id = $1",
        "DELETE FROM transfers WHERE debit_account_id = $1",
    ] {
        let refused = sqlx::query(statement).bind(known(0)).execute(&db).await;
        assert_eq!(sqlstate(refused), "23001", "{statement}");
    }
    // Balance updates (no `id` in the SET list) are not affected.
    sqlx::query("UPDATE accounts SET debits_posted = debits_posted WHERE id = $1")
        .bind(known(0))
        .execute(&db)
        .await
        .expect("a balance update");
    assert!(book.verify(0).await.ok);
    // Rows naming existing accounts and an existing pending transfer pass the check.
    let pending = Transfer {
        flags: flags(false, true, false, false),
        ..transfer(&ids[0], &ids[1], 3)
    };
    book.post(vec![pending.clone()]).await;
    let pending_id = Uuid::parse_str(&pending.transfer_id).expect("uuid");
    sqlx::query(insert)
        .bind(vec![Uuid::now_v7()])
        .bind(known(0))
        .bind(known(1))
        .bind(Some(pending_id))
        .execute(&db)
        .await
        .expect("a row naming existing rows");
    assert_eq!(count().await, 3);
    book.app.stop().await.expect("clean stop");
}
