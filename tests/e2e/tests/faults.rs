//! Journey 6 (issue #12), faults: the ledger killed with SIGKILL in the middle of a
//! burst of 200 borrows. Every request ends with its loan or a clean error; retries
//! with the same request_id converge on one loan; no loan is lost or doubled; the
//! ledger verifies clean; every disbursed loan is notified.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use e2e::{
    EnvOverride, Service, Stack, customer_token,
    journey::{Clients, application, cny, minor, onboard, safest},
    with_token,
};
use microloan_proto::{
    account::v1::BorrowRequest,
    common::v1::{DecisionOutcome, LoanPurpose, RepaymentMethod},
    ledger::v1::{ListLoansRequest, VerifyIntegrityRequest},
};
use tokio::{sync::Semaphore, task::JoinSet};
use tonic::Code;

const CUSTOMERS: usize = 20;
const BORROWS_PER_CUSTOMER: usize = 10;
const PRINCIPAL_MINOR: i64 = 20_000;
const CONCURRENCY: usize = 16;
/// Retries of one request while the ledger is away (bounded: 60 s at 200 ms).
const ATTEMPTS_MAX: usize = 300;
/// The ledger is killed once this many borrows have finished.
const KILL_AFTER: usize = 40;

/// How one borrow request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ending {
    Loan(String),
    Refused(Code, String),
}

/// Customers of a fresh stack with approved lines: customer id → limit (fen).
async fn approved_customers(clients: &mut Clients, seed: u64) -> BTreeMap<String, i64> {
    let onboarded = onboard(clients, seed, 400, |population| {
        safest(population, CUSTOMERS)
    })
    .await
    .expect("onboarding");
    let mut limits = BTreeMap::new();
    for person in &onboarded.customers {
        let customer_id = person.customer_id.to_string();
        let applied = clients
            .apply(application(
                &format!("apply-{customer_id}"),
                &customer_id,
                cny(person.monthly_income_fen * 12),
            ))
            .await
            .expect("apply");
        if applied.outcome == DecisionOutcome::Approved as i32 {
            let line = applied.credit_line.expect("a line");
            limits.insert(customer_id, minor(&line.limit));
        }
    }
    assert!(
        limits.len() >= CUSTOMERS / 2,
        "most are approved: {}",
        limits.len()
    );
    limits
}

/// The burst: BORROWS_PER_CUSTOMER borrows per customer at CONCURRENCY, each retried
/// with its request_id until it ends; `fault` runs once KILL_AFTER have finished.
/// Returns (customer, request_id, ending) of every request.
async fn burst<F: std::future::Future<Output = ()>>(
    clients: &Clients,
    limits: &BTreeMap<String, i64>,
    fault: F,
) -> Vec<(String, String, Ending)> {
    let finished = Arc::new(AtomicUsize::new(0));
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut burst = JoinSet::new();
    for customer_id in limits.keys() {
        for serial in 0..BORROWS_PER_CUSTOMER {
            let (customer_id, permits, finished) =
                (customer_id.clone(), permits.clone(), finished.clone());
            let mut account = clients.account.clone();
            burst.spawn(async move {
                let _permit = permits.acquire_owned().await.expect("semaphore");
                let request_id = format!("burst-{customer_id}-{serial}");
                let ending = borrow_until_it_ends(&mut account, &customer_id, &request_id).await;
                finished.fetch_add(1, Ordering::SeqCst);
                (customer_id, request_id, ending)
            });
        }
    }
    for _ in 0..600 {
        if finished.load(Ordering::SeqCst) >= KILL_AFTER {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let finished_at_fault = finished.load(Ordering::SeqCst);
    fault.await;
    let mut endings = Vec::new();
    while let Some(result) = burst.join_next().await {
        endings.push(result.expect("a borrow task"));
    }
    let total = limits.len() * BORROWS_PER_CUSTOMER;
    assert_eq!(endings.len(), total);
    assert!(
        finished_at_fault < total,
        "the fault landed mid-burst ({finished_at_fault} of {total} done)"
    );
    endings
}

/// After a burst: clean endings only; a retry converges on the same loan; the ledger
/// holds exactly the answered loans within each limit; integrity clean; every loan
/// notified once.
async fn assert_nothing_lost_or_doubled(
    clients: &mut Clients,
    limits: &BTreeMap<String, i64>,
    endings: &[(String, String, Ending)],
) {
    let mut loans_by_customer: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (customer_id, request_id, ending) in endings {
        match ending {
            Ending::Loan(loan_id) => {
                let fresh = loans_by_customer.entry(customer_id.clone()).or_default();
                assert!(
                    fresh.insert(loan_id.clone()),
                    "one loan per request: {loan_id}"
                );
            }
            Ending::Refused(code, reason) => assert!(
                *code == Code::FailedPrecondition && reason == "CREDIT_LIMIT_EXCEEDED",
                "{request_id} ended in an unclean error: {code:?} {reason}"
            ),
        }
        let mut account = clients.account.clone();
        let again = borrow_until_it_ends(&mut account, customer_id, request_id).await;
        if let Ending::Loan(_) = ending {
            assert_eq!(
                &again, ending,
                "a retry of {request_id} converges on its loan"
            );
        }
    }
    assert!(
        loans_by_customer.values().map(BTreeSet::len).sum::<usize>() > 0,
        "some borrows succeeded"
    );
    for (customer_id, limit) in limits {
        let booked = clients
            .ledger
            .list_loans(with_token(
                ListLoansRequest {
                    customer_id: customer_id.clone(),
                    page_size: 500,
                    ..Default::default()
                },
                &clients.operator,
            ))
            .await
            .expect("ledger loans")
            .into_inner();
        assert!(booked.next_page_token.is_empty());
        let booked_ids: BTreeSet<String> = booked
            .loans
            .iter()
            .map(|loan| loan.loan_id.clone())
            .collect();
        let answered = loans_by_customer
            .get(customer_id)
            .cloned()
            .unwrap_or_default();
        assert_eq!(
            booked_ids, answered,
            "{customer_id}: the ledger's loans = the answers"
        );
        let drawn: i64 = booked.loans.iter().map(|loan| minor(&loan.principal)).sum();
        assert!(
            drawn <= *limit,
            "{customer_id}: {drawn} drawn on a limit of {limit}"
        );
    }
    let integrity = clients
        .ledger
        .verify_integrity(with_token(
            VerifyIntegrityRequest::default(),
            &clients.operator,
        ))
        .await
        .expect("integrity")
        .into_inner();
    assert!(integrity.ok, "{integrity:?}");
    for (customer_id, loans) in &loans_by_customer {
        let mut notified = 0;
        for _ in 0..300 {
            let notices = clients.in_app_notices(customer_id).await.expect("notices");
            notified = notices
                .iter()
                .filter(|notice| notice.template_key == "LOAN_DISBURSED")
                .count();
            if notified >= loans.len() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(notified, loans.len(), "{customer_id}: one notice per loan");
    }
}

fn without_borrow_rate_limits() -> Vec<EnvOverride> {
    [
        "RATE_LIMIT_BORROW_PER_CUSTOMER",
        "RATE_LIMIT_BORROW_PER_DEVICE",
    ]
    .into_iter()
    .map(|key| (Some(Service::Account), key.to_owned(), "1000000".to_owned()))
    .collect()
}

#[tokio::test]
async fn the_ledger_killed_mid_burst_loses_and_doubles_no_loan() {
    let mut stack = Stack::start_with(&without_borrow_rate_limits())
        .await
        .expect("the four services start");
    let mut clients = Clients::of(&stack);
    let limits = approved_customers(&mut clients, 606).await;
    let kill_and_restart = async {
        stack
            .kill(Service::Ledger)
            .await
            .expect("SIGKILL the ledger");
        tokio::time::sleep(Duration::from_millis(500)).await;
        stack
            .restart(Service::Ledger)
            .await
            .expect("the ledger restarts");
    };
    let endings = burst(&clients, &limits, kill_and_restart).await;
    assert_nothing_lost_or_doubled(&mut clients, &limits, &endings).await;
    stack.stop().await.expect("a clean stop");
}

#[tokio::test]
async fn postgres_connections_dropped_mid_burst_calls_fail_cleanly_or_succeed() {
    let stack = Stack::start_with(&without_borrow_rate_limits())
        .await
        .expect("the four services start");
    let mut clients = Clients::of(&stack);
    let limits = approved_customers(&mut clients, 707).await;
    let databases: Vec<String> = Service::ALL
        .into_iter()
        .map(|service| stack.database_name(service))
        .collect();
    let terminate_connections = async {
        use sqlx::Connection;
        let mut admin = sqlx::PgConnection::connect(&microloan_platform::testing::server_url())
            .await
            .expect("connect as the admin");
        // Three rounds a moment apart: pools reconnect between them.
        for _ in 0..3 {
            let terminated: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = ANY($1) AND pid <> pg_backend_pid()",
            )
            .bind(&databases)
            .fetch_all(&mut admin)
            .await
            .expect("pg_terminate_backend");
            assert!(!terminated.is_empty(), "the services hold connections");
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    };
    let endings = burst(&clients, &limits, terminate_connections).await;
    assert_nothing_lost_or_doubled(&mut clients, &limits, &endings).await;
    stack.stop().await.expect("a clean stop");
}

/// Borrows, retrying the same request_id on the errors a caller retries (the ledger or
/// the connection away), until the call ends with a loan or a refusal.
async fn borrow_until_it_ends(
    account: &mut microloan_proto::account::v1::account_service_client::AccountServiceClient<
        tonic::transport::Channel,
    >,
    customer_id: &str,
    request_id: &str,
) -> Ending {
    for _ in 0..ATTEMPTS_MAX {
        let answer = account
            .borrow(with_token(
                BorrowRequest {
                    request_id: request_id.to_owned(),
                    customer_id: customer_id.to_owned(),
                    principal: cny(PRINCIPAL_MINOR),
                    term_months: 5,
                    repayment_method: RepaymentMethod::EqualPrincipal as i32,
                    purpose: LoanPurpose::Consumption as i32,
                    ..Default::default()
                },
                &customer_token(customer_id),
            ))
            .await;
        match answer {
            Ok(response) => {
                return Ending::Loan(response.into_inner().loan.expect("a loan").loan_id);
            }
            Err(status)
                if matches!(
                    status.code(),
                    Code::Unavailable | Code::DeadlineExceeded | Code::Aborted
                ) =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(status) => {
                use tonic_types::StatusExt;
                let reason = status
                    .get_error_details()
                    .error_info()
                    .map(|info| info.reason.clone())
                    .unwrap_or_default();
                return Ending::Refused(status.code(), reason);
            }
        }
    }
    panic!("{request_id} did not end within {ATTEMPTS_MAX} attempts");
}

/// A redis-server of the test's own on a free port, so it can be stopped.
struct OwnRedis {
    port: u16,
    child: Option<tokio::process::Child>,
}

impl OwnRedis {
    async fn start(port: u16) -> OwnRedis {
        let child = tokio::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server runs (scripts/dev-deps.sh installs it)");
        let url = format!("redis://127.0.0.1:{port}");
        for _ in 0..100 {
            if let Ok(client) = redis::Client::open(url.as_str())
                && let Ok(mut connection) = client.get_multiplexed_async_connection().await
                && redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .is_ok()
            {
                return OwnRedis {
                    port,
                    child: Some(child),
                };
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start on {port}");
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("stop redis-server");
        }
    }

    async fn exists(&self, key: &str) -> bool {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.port)).expect("url");
        let mut connection = client
            .get_multiplexed_async_connection()
            .await
            .expect("connect");
        redis::cmd("EXISTS")
            .arg(key)
            .query_async::<i64>(&mut connection)
            .await
            .expect("EXISTS")
            == 1
    }
}

#[tokio::test]
async fn redis_stopped_mid_journey_borrowing_and_reads_stay_right_and_the_cache_refills() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let mut redis = OwnRedis::start(port).await;
    let stack = Stack::start_with(&[(
        None,
        "REDIS_URL".to_owned(),
        format!("redis://127.0.0.1:{port}"),
    )])
    .await
    .expect("the four services start");
    let mut clients = Clients::of(&stack);
    let onboarded = onboard(&mut clients, 909, 300, |population| safest(population, 1))
        .await
        .expect("onboarding");
    let person = &onboarded.customers[0];
    let customer_id = person.customer_id.to_string();
    let token = customer_token(&customer_id);
    let applied = clients
        .apply(application(
            "redis-apply",
            &customer_id,
            cny(person.monthly_income_fen * 12),
        ))
        .await
        .expect("apply");
    assert_eq!(
        applied.outcome,
        DecisionOutcome::Approved as i32,
        "{applied:?}"
    );
    let limit = minor(&applied.credit_line.expect("a line").limit);
    let cache_key = format!("{}line:{{{customer_id}}}", stack.key_prefix());
    let read = |clients: &mut Clients| {
        let mut account = clients.account.clone();
        let (customer_id, token) = (customer_id.clone(), token.clone());
        async move {
            account
                .get_credit_line(with_token(
                    microloan_proto::account::v1::GetCreditLineRequest { customer_id },
                    &token,
                ))
                .await
                .expect("credit line")
                .into_inner()
                .credit_line
                .expect("a line")
        }
    };
    let mut account = clients.account.clone();
    let first = borrow_until_it_ends(&mut account, &customer_id, "redis-borrow-1").await;
    assert!(matches!(first, Ending::Loan(_)), "{first:?}");
    assert_eq!(
        minor(&read(&mut clients).await.available),
        limit - PRINCIPAL_MINOR
    );

    // Redis goes away: borrowing and reads answer correctly from Postgres and the ledger.
    redis.stop().await;
    let second = borrow_until_it_ends(&mut account, &customer_id, "redis-borrow-2").await;
    assert!(
        matches!(second, Ending::Loan(_)),
        "borrowing works without Redis: {second:?}"
    );
    let line = read(&mut clients).await;
    assert_eq!(
        minor(&line.available),
        limit - 2 * PRINCIPAL_MINOR,
        "{line:?}"
    );
    assert_eq!(minor(&line.utilised), 2 * PRINCIPAL_MINOR);

    // Redis is back (empty): the next read refills the cache, and it is right.
    let mut redis = OwnRedis::start(port).await;
    let mut refilled = false;
    for _ in 0..100 {
        let line = read(&mut clients).await;
        assert_eq!(
            minor(&line.available),
            limit - 2 * PRINCIPAL_MINOR,
            "{line:?}"
        );
        if redis.exists(&cache_key).await {
            refilled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refilled, "the cache refilled after Redis came back");
    let third = borrow_until_it_ends(&mut account, &customer_id, "redis-borrow-3").await;
    assert!(matches!(third, Ending::Loan(_)), "{third:?}");
    assert_eq!(
        minor(&read(&mut clients).await.available),
        limit - 3 * PRINCIPAL_MINOR
    );

    stack.stop().await.expect("a clean stop");
    redis.stop().await;
}
