use super::*;
use crate::gl::accounts::{AccountCode, AccountFlags};
use CreateTransferStatus as S;

fn uuid(n: u8) -> Uuid {
    Uuid::parse_str(&format!("0190c1e4-0000-7000-8000-0000000000{n:02x}")).expect("uuid")
}

fn account(n: u8, flags: AccountFlags, balances: Balances) -> Account {
    Account {
        id: uuid(n),
        code: AccountCode::Funding,
        currency: "CNY".into(),
        customer_id: None,
        loan_id: None,
        sub_account: i32::from(n),
        flags,
        balances,
        create_time: Utc::now(),
    }
}

/// Account 1: must not be overdrawn, 100 credited. Account 2: plain.
fn book() -> Vec<Account> {
    vec![
        account(
            1,
            AccountFlags {
                debits_must_not_exceed_credits: true,
                ..AccountFlags::default()
            },
            Balances {
                credits_posted: 100,
                ..Balances::default()
            },
        ),
        account(
            2,
            AccountFlags::default(),
            Balances {
                debits_posted: 100,
                ..Balances::default()
            },
        ),
    ]
}

fn transfer(n: u8, amount: i64) -> TransferItem {
    TransferItem {
        id: IdField::Valid(uuid(100 + n)),
        debit_account_id: IdField::Valid(uuid(1)),
        credit_account_id: IdField::Valid(uuid(2)),
        same_account_text: false,
        amount: Some(ItemAmount {
            currency: "CNY".into(),
            minor_units: amount,
        }),
        code: TransferCode::ManualAdjustment.as_i32(),
        flags: TransferFlags::default(),
        pending_id: IdField::Empty,
        timeout_seconds: 0,
        customer_id: IdField::Empty,
        loan_id: IdField::Empty,
        description: String::new(),
        output_fields_set: false,
    }
}

fn context() -> BatchContext {
    BatchContext {
        now: Utc::now(),
        business_date: NaiveDate::from_ymd_opt(2026, 11, 28).expect("date"),
        poster: Poster::Service,
    }
}

fn run(items: &[TransferItem]) -> TransfersPlan {
    plan_create_transfers(items, book(), Vec::new(), context())
}

fn statuses(plan: &TransfersPlan) -> Vec<CreateTransferStatus> {
    plan.results.iter().map(|result| result.0).collect()
}

#[test]
fn each_bad_item_gets_its_own_status_and_changes_nothing() {
    let pending = |item: TransferItem| TransferItem {
        flags: TransferFlags {
            pending: true,
            ..item.flags
        },
        ..item
    };
    let cases: Vec<(&str, TransferItem, CreateTransferStatus)> = vec![
        (
            "bad id",
            TransferItem {
                id: IdField::Malformed,
                ..transfer(1, 10)
            },
            S::InvalidTransferId,
        ),
        (
            "same accounts",
            TransferItem {
                credit_account_id: IdField::Valid(uuid(1)),
                same_account_text: true,
                ..transfer(1, 10)
            },
            S::AccountsMustBeDifferent,
        ),
        (
            "unknown debit",
            TransferItem {
                debit_account_id: IdField::Valid(uuid(9)),
                ..transfer(1, 10)
            },
            S::DebitAccountNotFound,
        ),
        (
            "malformed credit",
            TransferItem {
                credit_account_id: IdField::Malformed,
                ..transfer(1, 10)
            },
            S::CreditAccountNotFound,
        ),
        (
            "usd",
            TransferItem {
                amount: Some(ItemAmount {
                    currency: "USD".into(),
                    minor_units: 10,
                }),
                ..transfer(1, 10)
            },
            S::CurrencyMismatch,
        ),
        ("zero", transfer(1, 0), S::AmountMustBePositive),
        ("negative", transfer(1, -5), S::AmountMustBePositive),
        (
            "unset amount",
            TransferItem {
                amount: None,
                ..transfer(1, 0)
            },
            S::AmountMustBePositive,
        ),
        (
            "no code",
            TransferItem {
                code: 0,
                ..transfer(1, 10)
            },
            S::InvalidCode,
        ),
        (
            "two phases",
            TransferItem {
                flags: TransferFlags {
                    pending: true,
                    void_pending: true,
                    ..TransferFlags::default()
                },
                ..transfer(1, 10)
            },
            S::FlagsAreMutuallyExclusive,
        ),
        (
            "post without pending id",
            TransferItem {
                flags: TransferFlags {
                    post_pending: true,
                    ..TransferFlags::default()
                },
                ..transfer(1, 10)
            },
            S::PendingIdRequired,
        ),
        (
            "pending id on a single-phase transfer",
            TransferItem {
                pending_id: IdField::Valid(uuid(50)),
                ..transfer(1, 10)
            },
            S::PendingIdMustBeEmpty,
        ),
        (
            "unknown pending",
            TransferItem {
                flags: TransferFlags {
                    void_pending: true,
                    ..TransferFlags::default()
                },
                pending_id: IdField::Valid(uuid(50)),
                ..transfer(1, 0)
            },
            S::PendingTransferNotFound,
        ),
        (
            "timeout on a single-phase transfer",
            TransferItem {
                timeout_seconds: 5,
                ..transfer(1, 10)
            },
            S::TimeoutReservedForPendingTransfer,
        ),
        (
            "timeout too long",
            TransferItem {
                timeout_seconds: TIMEOUT_SECONDS_MAX + 1,
                ..pending(transfer(1, 10))
            },
            S::InvalidTimeout,
        ),
        ("overdraw", transfer(1, 101), S::ExceedsCredits),
        (
            "pending overdraw",
            pending(transfer(1, 101)),
            S::ExceedsCredits,
        ),
        (
            "customer on platform accounts",
            TransferItem {
                customer_id: IdField::Valid(uuid(77)),
                ..transfer(1, 10)
            },
            S::InvalidCustomerId,
        ),
        (
            "malformed loan",
            TransferItem {
                loan_id: IdField::Malformed,
                ..transfer(1, 10)
            },
            S::InvalidLoanId,
        ),
        (
            "long description",
            TransferItem {
                description: "x".repeat(257),
                ..transfer(1, 10)
            },
            S::InvalidDescription,
        ),
        (
            "output field",
            TransferItem {
                output_fields_set: true,
                ..transfer(1, 10)
            },
            S::OutputFieldsMustBeUnset,
        ),
    ];
    for (name, item, want) in cases {
        let plan = run(&[item]);
        assert_eq!(statuses(&plan), [want], "{name}");
        assert!(
            plan.created.is_empty() && plan.changed_accounts.is_empty(),
            "{name}"
        );
    }
}

#[test]
fn an_item_failing_two_checks_gets_the_first_listed() {
    // Zero amount (11) and no code (12): AMOUNT_MUST_BE_POSITIVE.
    let item = TransferItem {
        code: 0,
        ..transfer(1, 0)
    };
    assert_eq!(statuses(&run(&[item])), [S::AmountMustBePositive]);
    // Overdraw (25) and a long description (30): EXCEEDS_CREDITS.
    let item = TransferItem {
        description: "x".repeat(300),
        ..transfer(1, 1_000)
    };
    assert_eq!(statuses(&run(&[item])), [S::ExceedsCredits]);
}

#[test]
fn operators_may_post_only_manual_adjustments() {
    let operator = BatchContext {
        poster: Poster::Operator,
        ..context()
    };
    let items = [
        TransferItem {
            code: TransferCode::InterestAccrual.as_i32(),
            ..transfer(1, 10)
        },
        transfer(2, 10),
    ];
    let plan = plan_create_transfers(&items, book(), Vec::new(), operator);
    assert_eq!(statuses(&plan), [S::InvalidCode, S::Created]);
}

#[test]
fn the_balance_flag_counts_earlier_items_and_pending_reservations() {
    let pending = TransferItem {
        flags: TransferFlags {
            pending: true,
            ..TransferFlags::default()
        },
        ..transfer(1, 60)
    };
    let plan = run(&[pending, transfer(2, 40), transfer(3, 1)]);
    assert_eq!(statuses(&plan), [S::Created, S::Created, S::ExceedsCredits]);
    let debit = &plan.changed_accounts[0];
    assert_eq!(
        debit.balances,
        Balances {
            debits_posted: 40,
            credits_posted: 100,
            debits_pending: 60,
            credits_pending: 0
        }
    );
}

#[test]
fn a_linked_chain_is_all_or_nothing() {
    let linked = |item: TransferItem| TransferItem {
        flags: TransferFlags {
            linked: true,
            ..item.flags
        },
        ..item
    };
    let plan = run(&[
        linked(transfer(1, 50)),
        linked(transfer(2, 60)),
        transfer(3, 10),
        transfer(4, 10),
    ]);
    assert_eq!(
        statuses(&plan),
        [
            S::LinkedEventFailed,
            S::ExceedsCredits,
            S::LinkedEventFailed,
            S::Created
        ]
    );
    assert_eq!(plan.created.len(), 1);
    assert_eq!(plan.changed_accounts[0].balances.debits_posted, 10);
    let open = run(&[transfer(1, 10), linked(transfer(2, 10))]);
    assert_eq!(statuses(&open), [S::Created, S::LinkedEventChainOpen]);
}

#[test]
fn two_phase_transfers_post_in_full_or_part_void_and_resolve_once() {
    let pending = |n, amount| TransferItem {
        flags: TransferFlags {
            pending: true,
            ..TransferFlags::default()
        },
        ..transfer(n, amount)
    };
    let resolve = |n, pending_n: u8, amount, post: bool| TransferItem {
        flags: TransferFlags {
            post_pending: post,
            void_pending: !post,
            ..TransferFlags::default()
        },
        pending_id: IdField::Valid(uuid(100 + pending_n)),
        ..transfer(n, amount)
    };
    let plan = run(&[
        pending(1, 30),
        pending(2, 30),
        pending(3, 30),
        resolve(4, 1, 0, true),
        resolve(5, 2, 10, true),
        resolve(6, 3, 0, false),
        resolve(7, 1, 0, false),
        resolve(8, 3, 0, true),
        resolve(9, 2, 40, true),
        resolve(10, 4, 0, true),
    ]);
    assert_eq!(
        statuses(&plan),
        [
            S::Created,
            S::Created,
            S::Created,
            S::Created,
            S::Created,
            S::Created,
            S::PendingTransferAlreadyPosted,
            S::PendingTransferAlreadyVoided,
            S::PendingTransferAlreadyPosted,
            S::PendingTransferNotPending,
        ]
    );
    let debit = &plan.changed_accounts[0];
    assert_eq!(debit.balances.debits_posted, 40, "30 in full + 10 of 30");
    assert_eq!(
        debit.balances.debits_pending, 0,
        "every reservation released"
    );
    assert_eq!(plan.results[3].1.as_ref().map(|t| t.amount), Some(30));
}

#[test]
fn an_expired_reservation_cannot_be_posted() {
    let context = context();
    let mut stored = Transfer {
        id: uuid(101),
        debit_account_id: uuid(1),
        credit_account_id: uuid(2),
        amount: 30,
        requested_amount: 30,
        currency: "CNY".into(),
        code: TransferCode::ManualAdjustment,
        flags: TransferFlags {
            pending: true,
            ..TransferFlags::default()
        },
        pending_id: None,
        timeout_seconds: 1,
        customer_id: None,
        loan_id: None,
        description: String::new(),
        business_date: context.business_date,
        create_time: context.now,
        pending: Some(PendingState {
            status: PendingStatus::Pending,
            expires_at: Some(context.now - TimeDelta::seconds(1)),
        }),
    };
    let post = TransferItem {
        flags: TransferFlags {
            post_pending: true,
            ..TransferFlags::default()
        },
        pending_id: IdField::Valid(uuid(101)),
        ..transfer(2, 0)
    };
    let plan = plan_create_transfers(
        std::slice::from_ref(&post),
        book(),
        vec![stored.clone()],
        context,
    );
    assert_eq!(statuses(&plan), [S::PendingTransferExpired]);
    stored.pending = Some(PendingState {
        status: PendingStatus::Expired,
        expires_at: None,
    });
    let plan = plan_create_transfers(&[post], book(), vec![stored], context);
    assert_eq!(statuses(&plan), [S::PendingTransferExpired]);
}

#[test]
fn ids_are_idempotency_keys() {
    let plan = run(&[transfer(1, 10), transfer(1, 10), transfer(1, 11)]);
    assert_eq!(
        statuses(&plan),
        [S::Created, S::Exists, S::ExistsWithDifferentFields]
    );
    assert_eq!(plan.changed_accounts[0].balances.debits_posted, 10);
}

#[test]
fn a_balance_past_i64_is_refused() {
    let mut accounts = book();
    accounts[0].balances.credits_posted = i64::MAX - 5;
    let item = TransferItem {
        debit_account_id: IdField::Valid(uuid(2)),
        credit_account_id: IdField::Valid(uuid(1)),
        ..transfer(1, 10)
    };
    let plan = plan_create_transfers(&[item], accounts, Vec::new(), context());
    assert_eq!(statuses(&plan), [S::Overflows]);
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// One random item: accounts by index (0..3), an amount that may be bad, a phase
    /// (0 single, 1 pending, 2 post, 3 void) and the earlier item a post or void names.
    #[derive(Clone, Debug)]
    struct Spec {
        debit: u8,
        credit: u8,
        amount: i64,
        phase: u8,
        pending_of: usize,
        linked: bool,
    }

    fn spec() -> impl Strategy<Value = Spec> {
        (
            0u8..3,
            0u8..3,
            -5i64..120,
            0u8..4,
            0usize..12,
            proptest::bool::weighted(0.2),
        )
            .prop_map(|(debit, credit, amount, phase, pending_of, linked)| Spec {
                debit,
                credit,
                amount,
                phase,
                pending_of,
                linked,
            })
    }

    /// Account 1 must not be overdrawn (100 credited), account 2 is plain, account 3 must
    /// not be over-credited (100 debited).
    fn accounts() -> Vec<Account> {
        let mut accounts = book();
        accounts.push(account(
            3,
            AccountFlags {
                credits_must_not_exceed_debits: true,
                ..AccountFlags::default()
            },
            Balances {
                debits_posted: 100,
                ..Balances::default()
            },
        ));
        accounts[1].balances = Balances {
            credits_posted: 100,
            debits_posted: 100,
            ..Balances::default()
        };
        accounts
    }

    fn items(specs: &[Spec]) -> Vec<TransferItem> {
        specs
            .iter()
            .enumerate()
            .map(|(n, spec)| {
                let n = u8::try_from(n).expect("small batch");
                let resolves = spec.phase >= 2;
                let pending_of = u8::try_from(spec.pending_of).expect("small");
                TransferItem {
                    debit_account_id: IdField::Valid(uuid(spec.debit + 1)),
                    credit_account_id: IdField::Valid(uuid(spec.credit + 1)),
                    same_account_text: spec.debit == spec.credit,
                    flags: TransferFlags {
                        linked: spec.linked,
                        pending: spec.phase == 1,
                        post_pending: spec.phase == 2,
                        void_pending: spec.phase == 3,
                    },
                    pending_id: if resolves {
                        IdField::Valid(uuid(100 + pending_of))
                    } else {
                        IdField::Empty
                    },
                    ..transfer(
                        n,
                        if resolves {
                            spec.amount.max(0) % 40
                        } else {
                            spec.amount
                        },
                    )
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

        /// Any batch keeps debits = credits, never crosses a balance flag, resolves each
        /// reservation at most once, and replayed changes nothing.
        #[test]
        fn a_random_batch_keeps_the_ledger_balanced_and_replays_as_exists(
            specs in proptest::collection::vec(spec(), 1..12)
        ) {
            let items = items(&specs);
            let start = accounts();
            let plan = plan_create_transfers(&items, start.clone(), Vec::new(), context());
            let mut after: HashMap<Uuid, Account> =
                start.into_iter().map(|account| (account.id, account)).collect();
            for account in &plan.changed_accounts {
                after.insert(account.id, account.clone());
            }
            let total = |f: fn(&Balances) -> i64| after.values().map(|a| f(&a.balances)).sum::<i64>();
            prop_assert_eq!(total(|b| b.debits_posted), total(|b| b.credits_posted));
            prop_assert_eq!(total(|b| b.debits_pending), total(|b| b.credits_pending));
            for account in after.values() {
                let b = account.balances;
                prop_assert!(b.debits_pending >= 0 && b.credits_pending >= 0);
                if account.flags.debits_must_not_exceed_credits {
                    prop_assert!(b.debits_posted + b.debits_pending <= b.credits_posted);
                }
                if account.flags.credits_must_not_exceed_debits {
                    prop_assert!(b.credits_posted + b.credits_pending <= b.debits_posted);
                }
            }
            let mut resolved: Vec<Uuid> = plan.resolutions.iter().map(|(id, _)| *id).collect();
            resolved.sort();
            resolved.dedup();
            prop_assert_eq!(resolved.len(), plan.resolutions.len());

            // Retrying what succeeded changes nothing (a failed item is no record: a retry
            // of it is a new attempt, as in TigerBeetle).
            let succeeded: Vec<TransferItem> = items
                .iter()
                .zip(&plan.results)
                .filter(|(_, (status, _))| status.is_success())
                .map(|(item, _)| item.clone())
                .collect();
            let replay = plan_create_transfers(
                &succeeded,
                after.into_values().collect(),
                plan.created.clone(),
                context(),
            );
            prop_assert!(replay.created.is_empty() && replay.changed_accounts.is_empty());
            for (status, _) in &replay.results {
                prop_assert_eq!(*status, S::Exists);
            }
        }
    }
}
