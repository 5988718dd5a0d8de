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

/// base64 of "test-only-pii-encryption-key-001".
pub const TEST_PII_ENCRYPTION_KEY: &str = "dGVzdC1vbmx5LXBpaS1lbmNyeXB0aW9uLWtleS0wMDE=";
/// base64 of "test-only-pii-lookup-hash-key-01".
pub const TEST_PII_LOOKUP_KEY: &str = "dGVzdC1vbmx5LXBpaS1sb29rdXAtaGFzaC1rZXktMDE=";

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
        // The account service's PII keys (base64 of 32 bytes; test-only values).
        ("PII_ENCRYPTION_KEY", TEST_PII_ENCRYPTION_KEY.to_owned()),
        ("PII_LOOKUP_KEY", TEST_PII_LOOKUP_KEY.to_owned()),
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

/// A loopback address whose port was free a moment ago. The admin server binds it
/// itself, so there is a small window in which another process could take the port.
pub async fn free_local_addr() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("local addr")
}

/// A service running in this process until [`TestApp::stop`].
#[derive(Debug)]
pub struct TestApp {
    pub grpc_addr: SocketAddr,
    /// Where `/metrics` is served.
    pub admin_addr: SocketAddr,
    pub database_url: String,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

/// Starts `A` with [`test_env`] plus `overrides`, waiting until it accepts calls.
pub async fn spawn<A: App>(overrides: &[(&str, &str)]) -> TestApp {
    let mut vars = test_env(A::IDENTITY.name);
    let admin_addr = free_local_addr().await;
    vars.insert("ADMIN_LISTEN_ADDR".to_owned(), admin_addr.to_string());
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
        admin_addr,
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
                && HealthClient::new(channel)
                    .check(HealthCheckRequest::default())
                    .await
                    .is_ok()
            {
                return;
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

/// `GET path` over plain HTTP/1.1 (the admin port); returns the body.
pub async fn http_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect admin");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// Adds `authorization: Bearer <token>` to a request.
pub fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}").parse().expect("ascii token"),
    );
    request
}

/// Asserts what every service must serve: health SERVING overall and for `service`,
/// and reflection (v1 and v1alpha) listing `service`, health and reflection.
pub async fn assert_serves_health_and_reflection(app: &TestApp, service: &str) {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
    };
    let mut health = HealthClient::new(app.channel().await);
    for name in ["", service] {
        let status = health
            .check(HealthCheckRequest {
                service: name.to_owned(),
            })
            .await
            .expect("health check")
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "health of `{name}`");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".to_owned(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let mut want = vec![
        service,
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];
    want.sort_unstable();
    // Exactly what this server serves: not the other microloan services whose
    // descriptors share the file descriptor set.
    for mut listed in [
        list_services_v1(app).await,
        list_services_v1alpha(app).await,
    ] {
        listed.sort_unstable();
        assert_eq!(listed, want);
    }
}

/// Generates a "list services" helper for one version of the reflection API (v1 and
/// v1alpha have identical shapes in different packages).
macro_rules! list_services_fn {
    ($(#[$doc:meta])* $name:ident, $version:ident) => {
        $(#[$doc])*
        pub async fn $name(app: &TestApp) -> Vec<String> {
            use tonic_reflection::pb::$version::{
                ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
                server_reflection_request::MessageRequest,
                server_reflection_response::MessageResponse,
            };
            let request = ServerReflectionRequest {
                host: String::new(),
                message_request: Some(MessageRequest::ListServices(String::new())),
            };
            let mut responses = ServerReflectionClient::new(app.channel().await)
                .server_reflection_info(tokio_stream::iter([request]))
                .await
                .expect("reflection call")
                .into_inner();
            let response = responses
                .message()
                .await
                .expect("reflection response")
                .expect("one response");
            match response.message_response {
                Some(MessageResponse::ListServicesResponse(list)) => {
                    list.service.into_iter().map(|service| service.name).collect()
                }
                other => panic!("unexpected reflection response {other:?}"),
            }
        }
    };
}

list_services_fn!(
    /// The services reflection v1 lists.
    list_services_v1,
    v1
);
list_services_fn!(
    /// The services reflection v1alpha (what grpcurl 1.8 asks) lists.
    list_services_v1alpha,
    v1alpha
);
