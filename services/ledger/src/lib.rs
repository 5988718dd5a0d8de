//! Ledger: the double-entry ledger and loan book on Postgres, and the end-of-day
//! batch (DESIGN §3, §4). Owns accounts, transfers, loans, schedules, the business
//! date and the outbox.
#![forbid(unsafe_code)]

pub mod book;
pub mod config;
pub mod error;
pub mod expiry;
pub mod gl;
pub mod grpc;
pub mod store;

use std::future::Future;

use microloan_events::Events;
use microloan_platform::{App, cache::Cache, config::Env, db, server::GrpcServer};
use microloan_proto::{
    FILE_DESCRIPTOR_SET, ledger::v1::ledger_service_server::LedgerServiceServer,
};
use tokio::net::TcpListener;

pub use config::Config;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Serves the ledger service on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let pool = db::connect_and_migrate_all(&config.common, &Ledger::migrators()).await?;
    let cache = Cache::connect(&config.common).await?;
    let server = GrpcServer::new(&config.common, grpc::permissions(), FILE_DESCRIPTOR_SET);
    // Every service relays its own outbox; consumers are registered with `events.consume`.
    let events = Events::start(
        config.events.clone(),
        pool.clone(),
        cache.clone(),
        server.metrics().registry(),
    )?;
    // The expiry sweep runs beside the server and stops with it (aborted: an open
    // sweep transaction rolls back).
    let sweeper = tokio::spawn(expiry::run(pool.clone(), config.expiry_sweep_interval));
    let api = grpc::LedgerApi::new(pool, cache, config.book.clone());
    let service = LedgerServiceServer::new(api)
        .max_decoding_message_size(config.common.message_bytes_max)
        .max_encoding_message_size(config.common.message_bytes_max);
    let served =
        microloan_events::serve_with(events, server.serve(service, listener, shutdown)).await;
    sweeper.abort();
    served
}

/// Ties the ledger service into the shared process lifecycle ([`microloan_platform::launch`]).
#[derive(Debug)]
pub enum Ledger {}

impl App for Ledger {
    const IDENTITY: microloan_platform::config::ServiceIdentity = config::IDENTITY;
    type Config = Config;
    const MIGRATOR: &'static sqlx::migrate::Migrator = &MIGRATOR;
    const MIGRATORS_SHARED: &'static [&'static sqlx::migrate::Migrator] = &[
        &microloan_events::MIGRATOR,
        &microloan_platform::idempotency::MIGRATOR,
    ];

    fn config_from_env(env: &Env<'_>) -> Result<Config, microloan_platform::config::ConfigError> {
        Config::from_env(env)
    }

    fn common(config: &Config) -> &microloan_platform::config::CommonConfig {
        &config.common
    }

    fn run(
        config: Config,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
        run(config, listener, shutdown)
    }
}
