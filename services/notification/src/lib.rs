//! Notification: templates, channels, delivery with retries and the in-app stream
//! (DESIGN §6). Owns templates, preferences, notifications and delivery attempts.
#![forbid(unsafe_code)]

pub mod config;
pub mod grpc;

use std::future::Future;

use microloan_events::Events;
use microloan_platform::{App, cache::Cache, config::Env, db, server::GrpcServer};
use microloan_proto::{
    FILE_DESCRIPTOR_SET, notification::v1::notification_service_server::NotificationServiceServer,
};
use tokio::net::TcpListener;

pub use config::Config;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Serves the notification service on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let pool = db::connect_and_migrate_all(&config.common, &Notification::migrators()).await?;
    let cache = Cache::connect(&config.common).await?;
    let server = GrpcServer::new(&config.common, grpc::permissions(), FILE_DESCRIPTOR_SET);
    // Every service relays its own outbox; consumers are registered with `events.consume`.
    let events = Events::start(
        config.events.clone(),
        pool.clone(),
        cache.clone(),
        server.metrics().registry(),
    )?;
    let api = grpc::NotificationApi::new(pool, cache);
    let service = NotificationServiceServer::new(api)
        .max_decoding_message_size(config.common.message_bytes_max)
        .max_encoding_message_size(config.common.message_bytes_max);
    microloan_events::serve_with(events, server.serve(service, listener, shutdown)).await
}

/// Ties the notification service into the shared process lifecycle ([`microloan_platform::launch`]).
#[derive(Debug)]
pub enum Notification {}

impl App for Notification {
    const IDENTITY: microloan_platform::config::ServiceIdentity = config::IDENTITY;
    type Config = Config;
    const MIGRATOR: &'static sqlx::migrate::Migrator = &MIGRATOR;
    const MIGRATORS_SHARED: &'static [&'static sqlx::migrate::Migrator] =
        &[&microloan_events::MIGRATOR];

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
