//! Repay through account under load (issue 10, the demo's ~82,000 Repay calls at 32 in
//! flight): a measuring tool, not a test. Run against a stack that `loadgen
//! --scenario account-borrow` has filled (scripts/bench.sh's account section): every
//! loan account booked (`drawdowns`) is repaid 1.00 CNY at a time, loans in turn, each
//! call with its customer's token and a new request id, `REPAY_CONCURRENCY` (32) in
//! flight for `REPAY_SECONDS` (10) after a 2 s warm-up. Prints calls/s, p50, p99 and the
//! errors by code.
//!
//! `ACCOUNT_URL`, `DATABASE_URL` (account's database, read once for the loans) and
//! `AUTH_JWT_SECRET` (the services' secret) are required.
//!
//! ```text
//! cargo run --release -p microloan-account --example repay_load
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use microloan_platform::auth::{Role, TokenKeys};
use microloan_proto::account::v1::{RepayRequest, account_service_client::AccountServiceClient};
use microloan_proto::common::v1::Money;
use tonic::transport::Endpoint;
use uuid::Uuid;

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is required"))
}

fn number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() {
    let concurrency = usize::try_from(number("REPAY_CONCURRENCY", 32)).unwrap_or(32);
    let seconds = number("REPAY_SECONDS", 10);
    let keys = TokenKeys::from_secret(var("AUTH_JWT_SECRET").as_bytes());
    let pool = sqlx::PgPool::connect(&var("DATABASE_URL"))
        .await
        .expect("account database");
    let loans: Vec<(Uuid, Uuid)> =
        sqlx::query_as("SELECT customer_id, loan_id FROM drawdowns ORDER BY loan_id")
            .fetch_all(&pool)
            .await
            .expect("drawdowns");
    pool.close().await;
    assert!(!loans.is_empty(), "no loans booked through account");
    let mut tokens = BTreeMap::new();
    for (customer, _) in &loans {
        tokens.entry(*customer).or_insert_with(|| {
            keys.mint(
                "repay_load",
                Role::Customer,
                Some(&customer.to_string()),
                Duration::from_secs(3_600),
            )
            .expect("token")
        });
    }
    let loans: Arc<Vec<(String, String, String)>> = Arc::new(
        loans
            .iter()
            .map(|(customer, loan)| {
                (
                    customer.to_string(),
                    loan.to_string(),
                    format!("Bearer {}", tokens[customer]),
                )
            })
            .collect(),
    );
    let endpoint = Endpoint::from_shared(var("ACCOUNT_URL")).expect("ACCOUNT_URL");
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(endpoint.connect().await.expect("account"));
    }
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let warmup = Duration::from_secs(2);
    let end = warmup + Duration::from_secs(seconds);
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let mut client = AccountServiceClient::new(channels[worker % channels.len()].clone());
        let (loans, next) = (loans.clone(), next.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            let mut errors: BTreeMap<String, u64> = BTreeMap::new();
            while started.elapsed() < end {
                let (customer, loan, authorization) =
                    &loans[next.fetch_add(1, Ordering::Relaxed) % loans.len()];
                let mut request = tonic::Request::new(RepayRequest {
                    request_id: Uuid::now_v7().to_string(),
                    customer_id: customer.clone(),
                    loan_id: loan.clone(),
                    amount: Some(Money {
                        currency_code: "CNY".into(),
                        minor_units: 100,
                    }),
                    ..RepayRequest::default()
                });
                request
                    .metadata_mut()
                    .insert("authorization", authorization.parse().expect("ascii token"));
                let call = Instant::now();
                let answer = client.repay(request).await;
                let measured = started.elapsed() > warmup && started.elapsed() < end;
                match answer {
                    Ok(_) if measured => latencies.push(call.elapsed()),
                    Ok(_) => {}
                    Err(status) => *errors.entry(format!("{:?}", status.code())).or_default() += 1,
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (more, failed) = joined.expect("worker");
        latencies.extend(more);
        for (code, count) in failed {
            *errors.entry(code).or_default() += count;
        }
    }
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1_000.0)
    };
    println!(
        "repay: {} loans, c{concurrency}, {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, errors {errors:?}",
        loans.len(),
        latencies.len() as f64 / seconds as f64,
        at(0.50),
        at(0.99),
    );
}
