//! Helpers for the services' integration tests: each test gets its own Postgres
//! database and Redis key prefix, and its service runs in-process on port 0. Real
//! Postgres, real Redis, real gRPC over TCP: nothing here is a mock.

use std::{collections::HashMap, net::SocketAddr, time::Duration};

use tokio::{net::TcpListener, sync::oneshot, task::JoinHandle};
use tonic::transport::Channel;

use crate::{
    App,
    auth::{Role, TokenKeys},
    config::{ConfigError, Env},
};

/// The secret test servers verify tokens with.
pub const TEST_JWT_SECRET: &str = "test-secret-test-secret-test-secret!";
/// Prefix of every database a test creates; `scripts/test.sh` sweeps leftovers.
pub const TEST_DATABASE_PREFIX: &str = "mltest_";

/// The Postgres server tests use: `DATABASE_URL` (any database on it) or the local one.
pub fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// `server_url()` pointed at a new, unique database name (created on first connect).
pub fn fresh_database_url(service: &str) -> String {
    let mut url = url::Url::parse(&server_url()).expect("DATABASE_URL is a URL");
    let name = format!(
        "{TEST_DATABASE_PREFIX}{service}_{}",
        uuid::Uuid::new_v4().simple()
    );
    url.set_path(&format!("/{name}"));
    url.to_string()
}

/// A complete environment for one test server on ephemeral ports.
pub fn test_env(service: &str) -> HashMap<String, String> {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    [
        ("DATABASE_URL", fresh_database_url(service)),
        ("REDIS_URL", redis_url()),
        ("REDIS_KEY_PREFIX", format!("test:{unique}:")),
        ("AUTH_JWT_SECRET", TEST_JWT_SECRET.to_owned()),
        ("LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("ADMIN_LISTEN_ADDR", "127.0.0.1:0".to_owned()),
        ("SHUTDOWN_GRACE_SECONDS", "5".to_owned()),
    ]
    .into_iter()
    .map(|(key, value)| (key.to_owned(), value))
    .collect()
}

pub fn config_from<A: App>(vars: &HashMap<String, String>) -> Result<A::Config, ConfigError> {
    A::config_from_env(&Env::from_fn(|name| vars.get(name).cloned()))
}

/// A token signed with [`TEST_JWT_SECRET`].
pub fn token(role: Role, customer_id: Option<&str>) -> String {
    TokenKeys::from_secret(TEST_JWT_SECRET.as_bytes())
        .mint("test", role, customer_id, Duration::from_secs(300))
        .expect("test token")
}

/// A service running in this process until [`TestApp::stop`].
#[derive(Debug)]
pub struct TestApp {
    pub grpc_addr: SocketAddr,
    pub database_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Starts `A` with [`test_env`] plus `overrides`, waiting until it accepts calls.
pub async fn spawn<A: App>(overrides: &[(&str, &str)]) -> TestApp {
    let mut vars = test_env(A::IDENTITY.name);
    for (key, value) in overrides {
        vars.insert((*key).to_owned(), (*value).to_owned());
    }
    let config = config_from::<A>(&vars).expect("test config is valid");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let grpc_addr = listener.local_addr().expect("local addr");
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(A::run(config, listener, async {
        let _ = stopped.await;
    }));
    let app = TestApp {
        grpc_addr,
        database_url: vars["DATABASE_URL"].clone(),
        stop: Some(stop),
        task,
    };
    app.wait_until_serving().await;
    app
}

impl TestApp {
    pub fn url(&self) -> String {
        format!("http://{}", self.grpc_addr)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect to test server")
    }

    /// Polls health until SERVING: start-up migrates a fresh database first.
    async fn wait_until_serving(&self) {
        use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
        const ATTEMPTS_MAX: u32 = 300;
        for _ in 0..ATTEMPTS_MAX {
            assert!(
                !self.task.is_finished(),
                "test server exited during start-up"
            );
            if let Ok(channel) = Channel::from_shared(self.url())
                .expect("url")
                .connect()
                .await
            {
                if HealthClient::new(channel)
                    .check(HealthCheckRequest::default())
                    .await
                    .is_ok()
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("test server at {} did not become healthy", self.grpc_addr);
    }

    /// Stops the server (graceful drain), then drops its database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = (&mut self.task).await?;
        drop_database(&self.database_url).await?;
        result
    }
}

/// `DROP DATABASE ... WITH (FORCE)` for a database a test created.
pub async fn drop_database(database_url: &str) -> anyhow::Result<()> {
    use sqlx::{ConnectOptions, Connection, postgres::PgConnectOptions};
    use std::str::FromStr;
    let options = PgConnectOptions::from_str(database_url)?;
    let name = options.get_database().unwrap_or_default().to_owned();
    anyhow::ensure!(
        name.starts_with(TEST_DATABASE_PREFIX),
        "refusing to drop non-test database `{name}`"
    );
    let mut connection = options.database("postgres").connect().await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut connection)
        .await?;
    connection.close().await?;
    Ok(())
}
