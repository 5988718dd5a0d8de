//! Credit lines and the ledger-side journeys against a real ledger and account (port
//! 0), real Postgres and Redis: GetCreditLine's cache (hit, miss, stale write refused,
//! refreshed after a change), QuoteLoan = the loan the ledger books, Repay, ListLoans,
//! AdjustCreditLine, status refusals, ownership, rate limits, and scoring down.

mod common;

use common::{cny, customer_token, metadata, minor, reason, world};
use microloan_platform::testing;
use microloan_proto::{
    account::v1::{
        AdjustCreditLineRequest, BorrowRequest, CustomerStatus, ListLoansRequest, QuoteLoanRequest,
        RepayRequest, RequestLimitIncreaseRequest, UpdateCustomerStatusRequest,
    },
    common::v1::{
        CreditLineChangeSource, CreditLineStatus, LoanPurpose, ReasonCode, RepaymentMethod,
    },
    events::v1::{Event, event::Payload},
    ledger::v1::DisburseRequest,
};
use prost::Message;
use tonic::Code;
use uuid::Uuid;

fn quote_request(customer_id: &str, principal_minor: i64, term_months: i32) -> QuoteLoanRequest {
    QuoteLoanRequest {
        customer_id: customer_id.to_owned(),
        principal: cny(principal_minor),
        term_months,
        repayment_method: RepaymentMethod::EqualInstallment as i32,
        purpose: 0,
    }
}

fn borrow_request(customer_id: &str, principal_minor: i64) -> BorrowRequest {
    BorrowRequest {
        request_id: Uuid::now_v7().to_string(),
        customer_id: customer_id.to_owned(),
        principal: cny(principal_minor),
        term_months: 10,
        repayment_method: RepaymentMethod::EqualPrincipal as i32,
        quote_id: String::new(),
        device_id: "device-test".into(),
        purpose: LoanPurpose::Consumption as i32,
    }
}

#[tokio::test]
async fn get_credit_line_misses_fills_hits_and_refuses_a_stale_write() {
    let mut world = world(None, &[]).await;
    let customer_id = world.customer(1).await;
    let credit_line_id = world.open_line(&customer_id, 1_000_000, "0.0005").await;
    let cache = world.cache();
    let id = Uuid::parse_str(&customer_id).expect("uuid");
    assert!(
        cache.get(id).await.is_none(),
        "nothing cached before the first read"
    );

    // Miss: built from Postgres and the ledger, and the cache filled.
    let line = world
        .credit_line(&customer_id, &world.service.clone())
        .await
        .expect("line");
    assert_eq!(line.credit_line_id, credit_line_id);
    assert_eq!(line.status, CreditLineStatus::Active as i32);
    assert_eq!(
        (
            minor(&line.limit),
            minor(&line.available),
            minor(&line.utilised)
        ),
        (1_000_000, 1_000_000, 0)
    );
    assert_eq!(minor(&line.max_drawdown), 1_000_000);
    assert_eq!(line.daily_rate, "0.0005");
    assert_eq!(line.apr, "0.1825");
    assert_eq!(line.penalty_daily_rate, "0.00075");
    assert_eq!(line.allowed_term_months, [5, 10, 20]);
    let (version, cached) = cache.get(id).await.expect("filled on the miss");
    assert_eq!(cached, line);

    // Hit: a value stored at the same version is what GetCreditLine answers.
    let mut marked = line.clone();
    marked.status_reason = "served from the cache".into();
    assert_eq!(
        cache.put(id, version, &marked).await,
        account::line_cache::PutOutcome::Written
    );
    let hit = world
        .credit_line(&customer_id, &customer_token(&customer_id))
        .await
        .expect("hit");
    assert_eq!(hit.status_reason, "served from the cache");

    // A value built from an older version is refused and changes nothing.
    let mut stale = line.clone();
    stale.available = cny(1);
    assert_eq!(
        cache.put(id, version - 1, &stale).await,
        account::line_cache::PutOutcome::Stale
    );
    assert_eq!(cache.get(id).await.expect("kept").1, marked);
    world.stop().await;
}

#[tokio::test]
async fn the_quote_equals_the_loan_the_ledger_books_and_repay_and_list_loans_go_through_account() {
    let mut world = world(None, &[]).await;
    let customer_id = world.customer(2).await;
    let credit_line_id = world.open_line(&customer_id, 2_000_000, "0.0003").await;
    let token = customer_token(&customer_id);
    let quote = world
        .account
        .quote_loan(testing::with_token(
            quote_request(&customer_id, 1_234_567, 10),
            &token,
        ))
        .await
        .expect("quoted")
        .into_inner()
        .quote
        .expect("quote");
    assert!(!quote.quote_id.is_empty() && quote.quote_id.len() <= 512);
    assert_eq!(quote.daily_rate, "0.0003");
    assert_eq!(quote.penalty_daily_rate, "0.00045");

    // Cached before the ledger moves, so only the consumed event can refresh it.
    let before = world.credit_line(&customer_id, &token).await.expect("line");
    assert_eq!(minor(&before.utilised), 0);
    // Booked by the ledger with the same terms Borrow sends.
    let booked = world
        .ledger
        .disburse(testing::with_token(
            DisburseRequest {
                request_id: Uuid::now_v7().to_string(),
                customer_id: customer_id.clone(),
                loan_id: Uuid::now_v7().to_string(),
                credit_line_id,
                principal: cny(1_234_567),
                term_months: 10,
                repayment_method: RepaymentMethod::EqualInstallment as i32,
                daily_rate: quote.daily_rate.clone(),
                penalty_daily_rate: quote.penalty_daily_rate.clone(),
                purpose: LoanPurpose::Consumption as i32,
            },
            &world.service,
        ))
        .await
        .expect("disbursed")
        .into_inner()
        .loan
        .expect("loan");
    assert_eq!(booked.apr, quote.apr);
    assert_eq!(booked.disbursement_date, quote.disbursement_date);
    let quoted = quote.schedule.expect("schedule");
    let schedule = booked.schedule.clone().expect("schedule");
    assert_eq!(quoted.installments.len(), 10);
    assert_eq!(quoted.total_interest, schedule.total_interest);
    assert_eq!(quoted.total_repayable, schedule.total_repayable);
    assert_eq!(quoted.maturity_date, schedule.maturity_date);
    for (quoted, booked) in quoted.installments.iter().zip(&schedule.installments) {
        assert_eq!(
            (
                quoted.sequence,
                &quoted.due_date,
                &quoted.principal,
                &quoted.interest,
                &quoted.total,
                &quoted.remaining_principal,
                quoted.period_days
            ),
            (
                booked.sequence,
                &booked.due_date,
                &booked.principal,
                &booked.interest,
                &booked.total,
                &booked.remaining_principal,
                booked.period_days
            )
        );
    }

    // The ledger's LoanDisbursed reaches account's consumer: the line is read afresh.
    let mut line = None;
    for _ in 0..100 {
        let read = world.credit_line(&customer_id, &token).await.expect("line");
        if minor(&read.utilised) == 1_234_567 {
            line = Some(read);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let line = line.expect("the disbursement reached the cached line");
    assert_eq!(minor(&line.available), 2_000_000 - 1_234_567);

    let listed = world
        .account
        .list_loans(testing::with_token(
            ListLoansRequest {
                customer_id: customer_id.clone(),
                ..ListLoansRequest::default()
            },
            &token,
        ))
        .await
        .expect("listed")
        .into_inner();
    assert_eq!(listed.loans.len(), 1);
    assert_eq!(listed.loans[0].loan_id, booked.loan_id);

    let repay = RepayRequest {
        request_id: Uuid::now_v7().to_string(),
        customer_id: customer_id.clone(),
        loan_id: booked.loan_id.clone(),
        amount: None,
        pay_off: true,
        external_reference: "bank-1".into(),
    };
    let repaid = world
        .account
        .repay(testing::with_token(repay.clone(), &token))
        .await
        .expect("repaid")
        .into_inner();
    let after = repaid.credit_line.expect("line after");
    assert_eq!(
        (minor(&after.available), minor(&after.utilised)),
        (2_000_000, 0)
    );
    // A retry replays; the cached line equals the ledger's.
    let replay = world
        .account
        .repay(testing::with_token(repay, &token))
        .await
        .expect("replayed")
        .into_inner();
    assert_eq!(replay.repayment, repaid.repayment);
    let read = world.credit_line(&customer_id, &token).await.expect("line");
    assert_eq!(minor(&read.available), 2_000_000);
    world.stop().await;
}

#[tokio::test]
async fn refusals_follow_the_documented_order_and_nothing_is_half_done() {
    let mut world = world(None, &[("RATE_LIMIT_BORROW_PER_CUSTOMER", "3")]).await;
    let customer_id = world.customer(3).await;
    let other_id = world.customer(4).await;
    world.open_line(&customer_id, 1_000_000, "0.0005").await;
    let token = customer_token(&customer_id);

    // Another customer's token: PERMISSION_DENIED NOT_RESOURCE_OWNER.
    let status = world
        .credit_line(&customer_id, &customer_token(&other_id))
        .await
        .expect_err("not the owner");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::PermissionDenied, "NOT_RESOURCE_OWNER")
    );
    let status = world
        .account
        .borrow(testing::with_token(
            borrow_request(&customer_id, 50_000),
            &customer_token(&other_id),
        ))
        .await
        .expect_err("not the owner");
    assert_eq!(reason(&status), "NOT_RESOURCE_OWNER");
    // No line: NOT_FOUND.
    let status = world
        .credit_line(&other_id, &world.service.clone())
        .await
        .expect_err("no line");
    assert_eq!(status.code(), Code::NotFound);

    // Just opened: an increase waits for the cooldown (30 days), retry_after its date.
    let status = world
        .account
        .request_limit_increase(testing::with_token(
            RequestLimitIncreaseRequest {
                request_id: Uuid::now_v7().to_string(),
                customer_id: customer_id.clone(),
                requested_limit: cny(2_000_000),
                annual_income: None,
                device_id: String::new(),
            },
            &token,
        ))
        .await
        .expect_err("cooldown");
    assert_eq!(reason(&status), "LIMIT_INCREASE_COOLDOWN");
    assert_eq!(
        metadata(&status, "retry_after").len(),
        10,
        "a YYYY-MM-DD date"
    );

    // Purpose and amounts.
    let mut no_purpose = borrow_request(&customer_id, 50_000);
    no_purpose.purpose = LoanPurpose::Unspecified as i32;
    let status = world
        .account
        .borrow(testing::with_token(no_purpose, &token))
        .await
        .expect_err("purpose required");
    assert_eq!(status.code(), Code::InvalidArgument);
    for (principal, want) in [
        (9_999, "DRAWDOWN_BELOW_MINIMUM"),
        (4_000_001, "DRAWDOWN_LIMIT_EXCEEDED"),
    ] {
        let status = world
            .account
            .quote_loan(testing::with_token(
                quote_request(&customer_id, principal, 10),
                &token,
            ))
            .await
            .expect_err(want);
        assert_eq!(reason(&status), want);
    }
    let status = world
        .account
        .quote_loan(testing::with_token(
            quote_request(&customer_id, 1_000_001, 10),
            &token,
        ))
        .await
        .expect_err("above the headroom");
    assert_eq!(reason(&status), "CREDIT_LIMIT_EXCEEDED");

    // Scoring down: UNAVAILABLE DEPENDENCY_UNAVAILABLE and no loan in the ledger.
    for _ in 0..3 {
        let status = world
            .account
            .borrow(testing::with_token(
                borrow_request(&customer_id, 50_000),
                &token,
            ))
            .await
            .expect_err("scoring is down");
        assert_eq!(
            (status.code(), reason(&status).as_str()),
            (Code::Unavailable, "DEPENDENCY_UNAVAILABLE")
        );
    }
    // The fourth within the minute: RATE_LIMITED with retry_after_seconds.
    let status = world
        .account
        .borrow(testing::with_token(
            borrow_request(&customer_id, 50_000),
            &token,
        ))
        .await
        .expect_err("rate limited");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::ResourceExhausted, "RATE_LIMITED")
    );
    let retry_after: u64 = metadata(&status, "retry_after_seconds")
        .parse()
        .expect("retry_after_seconds");
    assert!((1..=60).contains(&retry_after));
    let line = world.credit_line(&customer_id, &token).await.expect("line");
    assert_eq!(minor(&line.utilised), 0, "nothing disbursed");

    // Frozen by an operator: LINE_FROZEN; suspended: CUSTOMER_NOT_ACTIVE (before the line).
    let frozen = world
        .account
        .adjust_credit_line(testing::with_token(
            AdjustCreditLineRequest {
                request_id: Uuid::now_v7().to_string(),
                customer_id: customer_id.clone(),
                new_status: CreditLineStatus::Frozen as i32,
                source: CreditLineChangeSource::Operator as i32,
                reasons: vec![ReasonCode {
                    code: "FRAUD_REVIEW".into(),
                    ..ReasonCode::default()
                }],
                ..AdjustCreditLineRequest::default()
            },
            &world.operator,
        ))
        .await
        .expect("frozen")
        .into_inner();
    assert_eq!(
        frozen.credit_line.expect("line").status,
        CreditLineStatus::Frozen as i32
    );
    let status = world
        .account
        .quote_loan(testing::with_token(
            quote_request(&customer_id, 50_000, 10),
            &token,
        ))
        .await
        .expect_err("frozen");
    assert_eq!(reason(&status), "LINE_FROZEN");
    let line = world.credit_line(&customer_id, &token).await.expect("line");
    assert_eq!(
        line.status,
        CreditLineStatus::Frozen as i32,
        "the cache was refreshed"
    );
    assert_eq!(minor(&line.max_drawdown), 0);
    world
        .account
        .update_customer_status(testing::with_token(
            UpdateCustomerStatusRequest {
                request_id: Uuid::now_v7().to_string(),
                customer_id: customer_id.clone(),
                status: CustomerStatus::Suspended as i32,
                reason: "complaint".into(),
            },
            &world.operator,
        ))
        .await
        .expect("suspended");
    let status = world
        .account
        .borrow(testing::with_token(
            borrow_request(&customer_id, 50_000),
            &world.service,
        ))
        .await
        .expect_err("suspended");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::FailedPrecondition, "CUSTOMER_NOT_ACTIVE")
    );
    world.stop().await;
}

#[tokio::test]
async fn adjust_credit_line_checks_source_and_cap_lands_in_the_ledger_and_emits_the_change() {
    let mut world = world(None, &[]).await;
    let customer_id = world.customer(5).await;
    world.open_line(&customer_id, 1_000_000, "0.0005").await;
    let adjust = |source: CreditLineChangeSource, limit: i64| AdjustCreditLineRequest {
        request_id: Uuid::now_v7().to_string(),
        customer_id: customer_id.clone(),
        new_limit: cny(limit),
        new_daily_rate: "0.0004".into(),
        source: source as i32,
        reasons: vec![ReasonCode {
            code: "GOOD_HISTORY".into(),
            ..ReasonCode::default()
        }],
        ..AdjustCreditLineRequest::default()
    };
    // An operator may send only OPERATOR.
    let status = world
        .account
        .adjust_credit_line(testing::with_token(
            adjust(CreditLineChangeSource::RiskPolicy, 2_000_000),
            &world.operator,
        ))
        .await
        .expect_err("source");
    assert_eq!(
        (status.code(), reason(&status).as_str()),
        (Code::PermissionDenied, "ROLE_NOT_ALLOWED")
    );
    assert_eq!(metadata(&status, "role"), "operator");
    // Income 600,000 CNY: the cap is 200,000 CNY.
    let status = world
        .account
        .adjust_credit_line(testing::with_token(
            adjust(CreditLineChangeSource::RiskPolicy, 20_000_000),
            &world.service,
        ))
        .await
        .expect("at the cap");
    let changed = status.into_inner();
    let change = changed.change.expect("change");
    assert_eq!(
        (minor(&change.previous_limit), minor(&change.new_limit)),
        (1_000_000, 20_000_000)
    );
    assert_eq!(
        (
            change.previous_daily_rate.as_str(),
            change.new_daily_rate.as_str()
        ),
        ("0.0005", "0.0004")
    );
    assert_eq!(change.new_apr, "0.146");
    let line = world
        .credit_line(&customer_id, &world.service.clone())
        .await
        .expect("line");
    assert_eq!(minor(&line.limit), 20_000_000);
    assert_eq!(line.daily_rate, "0.0004");
    // The CreditLineChanged event is on the outbox.
    let payloads: Vec<Vec<u8>> = sqlx::query_scalar("SELECT payload FROM outbox ORDER BY id")
        .fetch_all(&world.pool)
        .await
        .expect("outbox");
    let changes: Vec<_> = payloads
        .iter()
        .filter_map(
            |bytes| match Event::decode(bytes.as_slice()).ok()?.payload? {
                Payload::CreditLineChanged(changed) => changed.change,
                _ => None,
            },
        )
        .collect();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].reasons[0].code, "GOOD_HISTORY");
    world.stop().await;
}

/// Borrow's reads and Borrow's and Repay's one-statement close (issue 10): the
/// customer, latest line and keyed hashes read together equal the separate reads (and
/// read beside a request key's stored answer, Borrow's and Repay's first read); the
/// close, a statement on its own (no transaction), claims the key, bumps the line and
/// records the drawdown only together — with the line changed since it was read
/// nothing at all is written (not even the key), and a key already taken is not
/// claimed again.
#[tokio::test]
async fn borrows_and_repays_close_claims_bumps_and_records_only_together() {
    use account::store::lines::{
        DrawdownRecord, LineRow, close_unchanged, customer_hashes, find_customer_and_latest_line,
        find_replay_customer_and_latest_line, latest_line,
    };
    use microloan_platform::idempotency::RequestKey;

    let mut world = world(None, &[]).await;
    let customer_id = world.customer(1).await;
    world.open_line(&customer_id, 1_000_000, "0.0005").await;
    let id = Uuid::parse_str(&customer_id).expect("uuid");
    let pool = world.pool.clone();
    let mut conn = pool.acquire().await.expect("connection");
    let found = find_customer_and_latest_line(&mut conn, id)
        .await
        .expect("read")
        .expect("customer");
    let line = found.line.clone().expect("a line");
    assert_eq!(
        Some(line.clone()),
        latest_line(&mut conn, id).await.expect("line")
    );
    assert_eq!(found.customer.customer_id, id);
    assert_eq!(
        Some((found.national_id_hash.clone(), found.phone_hash.clone())),
        customer_hashes(&mut conn, id).await.expect("hashes")
    );
    let found_hashes = (found.national_id_hash.clone(), found.phone_hash.clone());
    assert!(
        find_customer_and_latest_line(&mut conn, Uuid::now_v7())
            .await
            .expect("read")
            .is_none()
    );
    drop(conn);

    let key = |request_id| RequestKey {
        caller: "customer:test",
        rpc: "Borrow",
        request_id,
        body: b"body",
    };
    let counts = |request_id: &'static str, loan_id: Uuid| {
        let pool = pool.clone();
        async move {
            let keys: i64 =
                sqlx::query_scalar("SELECT count(*) FROM idempotency_keys WHERE request_id = $1")
                    .bind(request_id)
                    .fetch_one(&pool)
                    .await
                    .expect("keys");
            let drawdowns: i64 =
                sqlx::query_scalar("SELECT count(*) FROM drawdowns WHERE loan_id = $1")
                    .bind(loan_id)
                    .fetch_one(&pool)
                    .await
                    .expect("drawdowns");
            let version: i64 =
                sqlx::query_scalar("SELECT cache_version FROM credit_lines WHERE customer_id = $1")
                    .bind(id)
                    .fetch_one(&pool)
                    .await
                    .expect("version");
            (keys, drawdowns, version)
        }
    };
    let (first_loan, second_loan) = (Uuid::now_v7(), Uuid::now_v7());
    let record = |loan_id| DrawdownRecord {
        loan_id,
        purpose: 1,
        decision_id: None,
    };
    let mut conn = pool.acquire().await.expect("connection");

    // Read at an older version: nothing written, the key free.
    let stale = LineRow {
        cache_version: line.cache_version - 1,
        ..line.clone()
    };
    let closed = close_unchanged(
        &mut conn,
        key("r1"),
        b"response",
        &stale,
        Some(&record(first_loan)),
    )
    .await
    .expect("close");
    assert!(!closed);
    assert_eq!(counts("r1", first_loan).await, (0, 0, line.cache_version));

    // Unchanged: the key with its response, the drawdown and the bump, together.
    let closed = close_unchanged(
        &mut conn,
        key("r1"),
        b"response",
        &line,
        Some(&record(first_loan)),
    )
    .await
    .expect("close");
    assert!(closed);
    assert_eq!(
        counts("r1", first_loan).await,
        (1, 1, line.cache_version + 1)
    );
    let stored: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT response FROM idempotency_keys WHERE request_id = 'r1'")
            .fetch_one(&pool)
            .await
            .expect("stored");
    assert_eq!(stored.as_deref(), Some(&b"response"[..]));

    // The first read of a retry: the stored answer beside the customer and line (one
    // statement); another body is told apart, a free key has none, an unknown customer
    // still gets its stored answer.
    let (stored, found) = find_replay_customer_and_latest_line(&mut conn, key("r1"), id)
        .await
        .expect("read");
    assert_eq!(stored, Some((true, Some(b"response".to_vec()))));
    let found = found.expect("customer");
    assert_eq!(found.customer.customer_id, id);
    assert_eq!(
        found.line.map(|line| line.cache_version),
        Some(line.cache_version + 1)
    );
    let other = RequestKey {
        body: b"other",
        ..key("r1")
    };
    let (stored, _) = find_replay_customer_and_latest_line(&mut conn, other, id)
        .await
        .expect("read");
    assert_eq!(stored.map(|(matches, _)| matches), Some(false));
    let (stored, found) = find_replay_customer_and_latest_line(&mut conn, key("free"), id)
        .await
        .expect("read");
    assert_eq!(
        (
            stored,
            found.map(|found| (found.national_id_hash, found.phone_hash))
        ),
        (None, Some((found_hashes.0.clone(), found_hashes.1.clone())))
    );
    let (stored, found) =
        find_replay_customer_and_latest_line(&mut conn, key("r1"), Uuid::now_v7())
            .await
            .expect("read");
    assert!(stored.is_some() && found.is_none());

    // The key again, at the line's current version: not claimed, nothing changes.
    let current = LineRow {
        cache_version: line.cache_version + 1,
        ..line.clone()
    };
    let closed = close_unchanged(
        &mut conn,
        key("r1"),
        b"other",
        &current,
        Some(&record(second_loan)),
    )
    .await
    .expect("close");
    assert!(!closed);
    assert_eq!(
        counts("r1", second_loan).await,
        (1, 0, line.cache_version + 1)
    );

    // Repay's form (no drawdown): the key and the bump only; a refused close leaves
    // the connection usable (nothing left open).
    let closed = close_unchanged(&mut conn, key("r2"), b"repaid", &line, None)
        .await
        .expect("close");
    assert!(!closed, "the line moved since `line` was read");
    assert_eq!(
        counts("r2", second_loan).await,
        (0, 0, line.cache_version + 1)
    );
    let closed = close_unchanged(&mut conn, key("r2"), b"repaid", &current, None)
        .await
        .expect("close");
    assert!(closed);
    assert_eq!(
        counts("r2", second_loan).await,
        (1, 0, line.cache_version + 2)
    );
    drop(conn);
    world.stop().await;
}

/// The consumer applies a batch of ledger events as one after the other would (issue
/// 10: one statement per batch): each customer's line bumped by its count of balance
/// moves, other events ignored, a tombstone at each new version (a value built before
/// is refused), and a write-off in the batch still closes its line.
#[tokio::test]
async fn a_batch_of_ledger_events_bumps_each_line_by_its_moves_and_tombstones_it() {
    use account::{consumer::LinesFromEvents, line_cache::PutOutcome, store::lines::latest_line};
    use microloan_events::{Fresh, Handler};
    use microloan_proto::events::v1::{
        CustomerCreated, LoanDisbursed, LoanPaidOff, LoanWrittenOff, RepaymentReceived,
    };

    let mut world = world(None, &[]).await;
    let (first, second) = (world.customer(1).await, world.customer(2).await);
    world.open_line(&first, 1_000_000, "0.0005").await;
    world.open_line(&second, 1_000_000, "0.0005").await;
    let cache = world.cache();
    let ids = [&first, &second].map(|id| Uuid::parse_str(id).expect("uuid"));
    let mut before = Vec::new();
    for id in ids {
        let mut conn = world.pool.acquire().await.expect("connection");
        let line = latest_line(&mut conn, id)
            .await
            .expect("read")
            .expect("line");
        let view = world
            .credit_line(&id.to_string(), &world.service.clone())
            .await
            .expect("line");
        assert_eq!(
            cache.get(id).await.map(|(v, _)| v),
            Some(line.cache_version)
        );
        before.push((line, view));
    }
    let event = |customer: &str, payload| Event {
        customer_id: customer.to_owned(),
        payload: Some(payload),
        ..Event::default()
    };
    let handler = LinesFromEvents {
        cache: cache.clone(),
    };
    let apply = |events: Vec<Event>| {
        let pool = world.pool.clone();
        let handler = handler.clone();
        async move {
            let batch: Vec<Fresh<'_>> = events
                .iter()
                .map(|event| Fresh {
                    event,
                    span: tracing::Span::none(),
                })
                .collect();
            let mut tx = pool.begin().await.expect("begin");
            handler
                .handle_batch(&mut tx, &batch)
                .await
                .expect("applied");
            tx.commit().await.expect("commit");
        }
    };
    apply(vec![
        event(
            &first,
            Payload::RepaymentReceived(RepaymentReceived::default()),
        ),
        event(&second, Payload::LoanDisbursed(LoanDisbursed::default())),
        event(&first, Payload::CustomerCreated(CustomerCreated::default())),
        event(&first, Payload::LoanPaidOff(LoanPaidOff::default())),
    ])
    .await;
    for (id, (line, view), moves) in [(ids[0], &before[0], 2), (ids[1], &before[1], 1)] {
        let mut conn = world.pool.acquire().await.expect("connection");
        let after = latest_line(&mut conn, id)
            .await
            .expect("read")
            .expect("line");
        assert_eq!(after.cache_version, line.cache_version + moves);
        assert!(cache.get(id).await.is_none(), "tombstoned");
        assert_eq!(
            cache.put(id, after.cache_version - 1, view).await,
            PutOutcome::Stale
        );
    }

    // A write-off among the moves closes its line; the others still bump.
    apply(vec![
        event(
            &second,
            Payload::RepaymentReceived(RepaymentReceived::default()),
        ),
        event(&second, Payload::LoanWrittenOff(LoanWrittenOff::default())),
        event(
            &first,
            Payload::RepaymentReceived(RepaymentReceived::default()),
        ),
    ])
    .await;
    let mut conn = world.pool.acquire().await.expect("connection");
    let second_after = latest_line(&mut conn, ids[1])
        .await
        .expect("read")
        .expect("line");
    assert_eq!(second_after.status, CreditLineStatus::Closed as i16);
    assert_eq!(second_after.status_reason, "LOAN_WRITTEN_OFF");
    assert_eq!(second_after.cache_version, before[1].0.cache_version + 3);
    let first_after = latest_line(&mut conn, ids[0])
        .await
        .expect("read")
        .expect("line");
    assert_eq!(first_after.cache_version, before[0].0.cache_version + 3);
    drop(conn);
    world.stop().await;
}
