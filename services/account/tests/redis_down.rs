//! GetCreditLine with Redis gone: a redis-server this test starts on a free port serves
//! account's cache; stopped mid-test, every answer still comes right from Postgres and
//! the ledger (fast: each Redis call is bounded); restarted, the cache refills.

mod common;

use std::time::{Duration, Instant};

use common::{cny, customer_token, minor, world};
use microloan_platform::testing;
use microloan_proto::{
    common::v1::{LoanPurpose, RepaymentMethod},
    ledger::v1::DisburseRequest,
};
use tokio::process::{Child, Command};
use uuid::Uuid;

async fn start_redis(port: u16) -> Child {
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server on PATH");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return child;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("redis-server did not start on {port}");
}

#[tokio::test]
async fn answers_stay_correct_while_redis_is_down_and_the_cache_refills_after() {
    if std::process::Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("redis-server is not on PATH: skipped");
        return;
    }
    let port = testing::free_local_addr().await.port();
    let redis_url = format!("redis://127.0.0.1:{port}");
    let mut redis = start_redis(port).await;
    let mut world = world(None, &[("REDIS_URL", redis_url.as_str())]).await;
    let customer_id = world.customer(21).await;
    let credit_line_id = world.open_line(&customer_id, 1_000_000, "0.0005").await;
    let token = customer_token(&customer_id);
    let cache = {
        let cache =
            microloan_platform::cache::Cache::open(&redis_url, &world.redis_prefix).expect("url");
        account::line_cache::LineCache::new(cache, Duration::from_secs(300))
    };
    let id = Uuid::parse_str(&customer_id).expect("uuid");
    let line = world.credit_line(&customer_id, &token).await.expect("line");
    assert_eq!(cache.get(id).await.expect("cached").1, line);

    // Redis stops; the ledger moves: the answer is the ledger's, and quick.
    redis.kill().await.expect("redis stopped");
    world
        .ledger
        .disburse(testing::with_token(
            DisburseRequest {
                request_id: Uuid::now_v7().to_string(),
                customer_id: customer_id.clone(),
                loan_id: Uuid::now_v7().to_string(),
                credit_line_id,
                principal: cny(300_000),
                term_months: 5,
                repayment_method: RepaymentMethod::EqualPrincipal as i32,
                daily_rate: "0.0005".into(),
                penalty_daily_rate: String::new(),
                purpose: LoanPurpose::Consumption as i32,
            },
            &world.service,
        ))
        .await
        .expect("disbursed");
    for _ in 0..3 {
        let started = Instant::now();
        let line = world
            .credit_line(&customer_id, &token)
            .await
            .expect("answered without Redis");
        assert!(started.elapsed() < Duration::from_secs(2), "bounded");
        assert_eq!(
            (
                minor(&line.limit),
                minor(&line.available),
                minor(&line.utilised)
            ),
            (1_000_000, 700_000, 300_000)
        );
    }

    // Redis is back (empty): the next reads fill it again.
    let _redis = start_redis(port).await;
    let mut refilled = None;
    for _ in 0..100 {
        let line = world.credit_line(&customer_id, &token).await.expect("line");
        assert_eq!(minor(&line.utilised), 300_000);
        if let Some((_, cached)) = cache.get(id).await {
            refilled = Some(cached);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(minor(&refilled.expect("refilled").available), 700_000);
    world.stop().await;
}
