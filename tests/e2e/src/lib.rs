//! The end-to-end harness (issue #12): the four real service binaries, started as
//! processes on free loopback ports against real Postgres and Redis, and reached only
//! through gRPC. Each [`Stack`] owns its databases (`mltest_e2e_<run>_<service>`) and a
//! Redis key prefix, so stacks run in parallel and in any order; `scripts/test.sh`
//! sweeps databases a crashed run left behind (the `mltest_` prefix).
//!
//! Processes rather than in-process servers, because the suite kills them: SIGKILL in
//! the middle of a burst, then a restart on the same port and database, is how a
//! crash looks in production.
#![forbid(unsafe_code)]

use std::{
    collections::BTreeMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Stdio,
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use microloan_platform::{auth::Role, testing};
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};

pub mod grpcurl;
pub mod journey;
pub mod pagerank;

pub use microloan_platform::testing::with_token;

/// How long a service may take from spawn to SERVING (migrations included) on a
/// loaded 2-core machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);
/// SHUTDOWN_GRACE_SECONDS given to each service, and the bound of a SIGTERM stop.
const SHUTDOWN_GRACE_SECONDS: u64 = 5;
/// Scoring's periodic PageRank refresh in a test stack (see `journey::onboard`).
const PAGERANK_REFRESH_SECONDS: u64 = 2;
/// Each service's pool in a stack (see `start_with`).
const DATABASE_CONNECTIONS_PER_SERVICE: u32 = 5;
const STOP_TIMEOUT: Duration = Duration::from_secs(SHUTDOWN_GRACE_SECONDS + 10);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Service {
    Account,
    Scoring,
    Ledger,
    Notification,
}

impl Service {
    pub const ALL: [Service; 4] = [
        Service::Account,
        Service::Scoring,
        Service::Ledger,
        Service::Notification,
    ];

    /// The binary's name, also the service's name in databases and logs.
    pub fn name(self) -> &'static str {
        match self {
            Service::Account => "account",
            Service::Scoring => "scoring",
            Service::Ledger => "ledger",
            Service::Notification => "notification",
        }
    }

    /// The variable the other services find this one by.
    fn url_variable(self) -> String {
        format!("{}_URL", self.name().to_uppercase())
    }
}

/// The workspace root: the services run from it (relative defaults such as the
/// shipped scoring model resolve against it, as under `make run`).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root exists")
}

fn binary_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_relative() {
                workspace_root().join(dir)
            } else {
                dir
            }
        })
        .unwrap_or_else(|| workspace_root().join("target"))
        .join("debug")
}

/// Builds the four binaries once per test process (nextest has released cargo's lock by
/// the time tests run, and the build is a no-op when they are fresh).
/// `E2E_SKIP_BUILD=1` uses whatever is in target/debug.
fn ensure_binaries() -> anyhow::Result<()> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if std::env::var("E2E_SKIP_BUILD").as_deref() == Ok("1") {
                return Ok(());
            }
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
            let mut command = std::process::Command::new(cargo);
            // The same selection as tests/e2e/smoke.sh (and `make run`): a narrower one
            // (`-p` each service) unifies dependency features differently and would
            // compile the dependency tree a second time.
            command
                .current_dir(workspace_root())
                .args(["build", "--workspace", "--bins"]);
            let output = command.output().map_err(|error| error.to_string())?;
            if output.status.success() {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&output.stderr).into_owned())
            }
        })
        .clone()
        .map_err(|stderr| anyhow::anyhow!("cargo build of the services failed:\n{stderr}"))
}

/// Reserves `count` distinct free loopback ports (held together so none repeats; the
/// service binds its port a moment after they are released).
fn free_ports(count: usize) -> anyhow::Result<Vec<u16>> {
    let listeners = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    listeners
        .iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

/// Extra environment for one service, or for all of them (`None`).
pub type EnvOverride = (Option<Service>, String, String);

#[derive(Debug)]
struct Process {
    child: Child,
    log_path: PathBuf,
}

/// The four services of one test.
#[derive(Debug)]
pub struct Stack {
    pub run_id: String,
    work_dir: PathBuf,
    grpc_ports: BTreeMap<Service, u16>,
    admin_ports: BTreeMap<Service, u16>,
    envs: BTreeMap<Service, Vec<(String, String)>>,
    processes: BTreeMap<Service, Process>,
    /// How many times each service was started (names its log files).
    starts: BTreeMap<Service, u32>,
    key_prefix: String,
}

impl Stack {
    /// Starts the four services and waits until each is SERVING.
    pub async fn start() -> anyhow::Result<Stack> {
        Self::start_with(&[]).await
    }

    pub async fn start_with(overrides: &[EnvOverride]) -> anyhow::Result<Stack> {
        ensure_binaries()?;
        let run_id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let work_dir = std::env::temp_dir().join(format!("microloan-e2e-{run_id}"));
        std::fs::create_dir_all(&work_dir)?;
        let ports = free_ports(Service::ALL.len() * 2)?;
        let grpc_ports: BTreeMap<_, _> = Service::ALL.into_iter().zip(ports.clone()).collect();
        let admin_ports: BTreeMap<_, _> = Service::ALL
            .into_iter()
            .zip(ports[Service::ALL.len()..].iter().copied())
            .collect();
        let key_prefix = format!("mltest:e2e:{run_id}:");

        let mut common = vec![
            ("REDIS_URL".to_owned(), testing::redis_url()),
            ("REDIS_KEY_PREFIX".to_owned(), key_prefix.clone()),
            (
                "AUTH_JWT_SECRET".to_owned(),
                testing::TEST_JWT_SECRET.to_owned(),
            ),
            (
                "PII_ENCRYPTION_KEY".to_owned(),
                testing::TEST_PII_ENCRYPTION_KEY.to_owned(),
            ),
            (
                "PII_LOOKUP_KEY".to_owned(),
                testing::TEST_PII_LOOKUP_KEY.to_owned(),
            ),
            (
                "SHUTDOWN_GRACE_SECONDS".to_owned(),
                SHUTDOWN_GRACE_SECONDS.to_string(),
            ),
            ("LOG_FORMAT".to_owned(), "human".to_owned()),
            // A PageRank refresh every 2 s, so onboarding's wait for one that saw the
            // whole ingested graph (journey::onboard) is short.
            (
                "SCORING_PAGERANK_REFRESH_SECONDS".to_owned(),
                PAGERANK_REFRESH_SECONDS.to_string(),
            ),
            // Two stacks run at once beside the other test binaries' servers, on one
            // Postgres with max_connections = 100: a small pool per service keeps the
            // suite inside it (the burst tests queue on the pool, which is the point).
            (
                "DATABASE_MAX_CONNECTIONS".to_owned(),
                DATABASE_CONNECTIONS_PER_SERVICE.to_string(),
            ),
            (
                "RUST_LOG".to_owned(),
                std::env::var("E2E_RUST_LOG").unwrap_or_else(|_| "info".to_owned()),
            ),
        ];
        for (service, port) in &grpc_ports {
            common.push((service.url_variable(), format!("http://127.0.0.1:{port}")));
        }
        let mut envs = BTreeMap::new();
        for service in Service::ALL {
            let mut env = common.clone();
            env.push((
                "LISTEN_ADDR".to_owned(),
                format!("127.0.0.1:{}", grpc_ports[&service]),
            ));
            env.push((
                "ADMIN_LISTEN_ADDR".to_owned(),
                format!("127.0.0.1:{}", admin_ports[&service]),
            ));
            env.push(("DATABASE_URL".to_owned(), database_url(&run_id, service)?));
            for (only, key, value) in overrides {
                if only.is_none_or(|only| only == service) {
                    env.retain(|(existing, _)| existing != key);
                    env.push((key.clone(), value.clone()));
                }
            }
            envs.insert(service, env);
        }

        let mut stack = Stack {
            run_id,
            work_dir,
            grpc_ports,
            admin_ports,
            envs,
            processes: BTreeMap::new(),
            starts: BTreeMap::new(),
            key_prefix,
        };
        // Started together (their migrations overlap), then awaited one by one.
        for service in Service::ALL {
            stack.spawn(service)?;
        }
        for service in Service::ALL {
            stack.wait_serving(service).await?;
        }
        Ok(stack)
    }

    fn spawn(&mut self, service: Service) -> anyhow::Result<()> {
        ensure!(
            !self.processes.contains_key(&service),
            "{} is already running",
            service.name()
        );
        let start = self.starts.entry(service).or_insert(0);
        *start += 1;
        let log_path = self
            .work_dir
            .join(format!("{}.{}.log", service.name(), start));
        let log = std::fs::File::create(&log_path)?;
        let mut command = Command::new(binary_dir().join(service.name()));
        command
            .current_dir(workspace_root())
            // Only what we set: a developer's shell variables must not reach the service.
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(self.envs[&service].iter().cloned())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        let child = command
            .spawn()
            .with_context(|| format!("spawn {}", service.name()))?;
        self.processes.insert(service, Process { child, log_path });
        Ok(())
    }

    async fn wait_serving(&mut self, service: Service) -> anyhow::Result<()> {
        use tonic_health::pb::{
            HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        let mut health = HealthClient::new(self.channel(service));
        loop {
            let process = self
                .processes
                .get_mut(&service)
                .context("service not started")?;
            if let Some(status) = process.child.try_wait()? {
                let log = tail(&process.log_path, 30);
                self.processes.remove(&service);
                bail!(
                    "{} exited during start-up with {status}:\n{log}",
                    service.name()
                );
            }
            let answer = health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await;
            if let Ok(response) = answer
                && response.into_inner().status == ServingStatus::Serving as i32
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} not SERVING within {START_TIMEOUT:?}:\n{}",
                    service.name(),
                    tail(&process.log_path, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A lazily connecting channel to `service` (reconnects after a restart).
    pub fn channel(&self, service: Service) -> Channel {
        Endpoint::from_shared(format!("http://127.0.0.1:{}", self.grpc_ports[&service]))
            .expect("a valid URI")
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .connect_lazy()
    }

    /// Where `service` serves /metrics.
    pub fn admin_port(&self, service: Service) -> u16 {
        self.admin_ports[&service]
    }

    pub fn grpc_port(&self, service: Service) -> u16 {
        self.grpc_ports[&service]
    }

    /// The Redis key prefix every service of this stack uses.
    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// `service`'s database, for assertions a client cannot make (never to drive it).
    pub fn database_url(&self, service: Service) -> String {
        database_url(&self.run_id, service).expect("built once already")
    }

    /// The name of `service`'s database (for `pg_stat_activity`).
    pub fn database_name(&self, service: Service) -> String {
        database_name(&self.run_id, service)
    }

    /// SIGKILL: no drain, no goodbye; what a crashed node looks like.
    pub async fn kill(&mut self, service: Service) -> anyhow::Result<()> {
        let mut process = self
            .processes
            .remove(&service)
            .context("service not running")?;
        process.child.kill().await?;
        Ok(())
    }

    /// SIGTERM and wait (bounded) for the drain; returns whether it exited 0.
    pub async fn terminate(&mut self, service: Service) -> anyhow::Result<bool> {
        let mut process = self
            .processes
            .remove(&service)
            .context("service not running")?;
        terminate(&mut process.child).await
    }

    /// Starts `service` again, same ports, database and configuration.
    pub async fn restart(&mut self, service: Service) -> anyhow::Result<()> {
        self.spawn(service)?;
        self.wait_serving(service).await
    }

    /// Everything `service` has logged since its last start.
    pub fn log(&self, service: Service) -> String {
        self.processes
            .get(&service)
            .and_then(|process| std::fs::read_to_string(&process.log_path).ok())
            .unwrap_or_default()
    }

    /// Stops every service with SIGTERM (each must drain and exit 0), then drops the
    /// databases and the Redis keys. Call at the end of a passing test; a failing one
    /// leaves its logs in the temp directory and its processes are killed on drop.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        let mut unclean = Vec::new();
        for (service, mut process) in std::mem::take(&mut self.processes) {
            if !terminate(&mut process.child).await? {
                unclean.push(format!(
                    "{}:\n{}",
                    service.name(),
                    tail(&process.log_path, 20)
                ));
            }
        }
        self.drop_data().await?;
        ensure!(
            unclean.is_empty(),
            "services that did not drain and exit 0 on SIGTERM: {}",
            unclean.join("\n")
        );
        std::fs::remove_dir_all(&self.work_dir).ok();
        Ok(())
    }

    async fn drop_data(&self) -> anyhow::Result<()> {
        use sqlx::Connection;
        let mut server = sqlx::PgConnection::connect(&testing::server_url()).await?;
        for service in Service::ALL {
            let name = database_name(&self.run_id, service);
            sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .execute(&mut server)
                .await?;
        }
        let client = redis::Client::open(testing::redis_url())?;
        let mut redis = client.get_multiplexed_async_connection().await?;
        let mut cursor: u64 = 0;
        // Bounded: a test's keyspace is small; 10,000 rounds of 1,000 is far beyond it.
        for _ in 0..10_000 {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(format!("{}*", self.key_prefix))
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut redis)
                .await?;
            if !keys.is_empty() {
                redis::cmd("DEL")
                    .arg(&keys)
                    .query_async::<()>(&mut redis)
                    .await?;
            }
            cursor = next;
            if cursor == 0 {
                break;
            }
        }
        Ok(())
    }
}

async fn terminate(child: &mut Child) -> anyhow::Result<bool> {
    let Some(pid) = child.id() else {
        return Ok(child.try_wait()?.is_some_and(|status| status.success()));
    };
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await?;
    ensure!(sent.success(), "kill -TERM {pid} failed");
    match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
        Ok(status) => Ok(status?.success()),
        Err(_) => {
            child.kill().await?;
            Ok(false)
        }
    }
}

fn database_name(run_id: &str, service: Service) -> String {
    format!(
        "{}e2e_{run_id}_{}",
        testing::TEST_DATABASE_PREFIX,
        service.name()
    )
}

fn database_url(run_id: &str, service: Service) -> anyhow::Result<String> {
    let mut url = url::Url::parse(&testing::server_url())?;
    url.set_path(&format!("/{}", database_name(run_id, service)));
    Ok(url.to_string())
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Tokens the services of a stack accept.
pub fn operator_token() -> String {
    testing::token(Role::Operator, None)
}

pub fn service_token() -> String {
    testing::token(Role::Service, None)
}

pub fn customer_token(customer_id: &str) -> String {
    testing::token(Role::Customer, Some(customer_id))
}
