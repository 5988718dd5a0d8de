//! Notification: templates, channels, delivery with retries and the in-app stream
//! (DESIGN §6). Owns templates, preferences, notifications and delivery attempts.
//! docs/notification.md has the design, the knobs, the metrics and the decisions.
#![forbid(unsafe_code)]

pub mod compose;
pub mod config;
pub mod consumer;
pub mod delivery;
pub mod directory;
pub mod error;
pub mod grpc;
pub mod metrics;
pub mod model;
pub mod notices;
pub mod parse;
pub mod policy;
pub mod signals;
pub mod store;
pub mod stream;
pub mod templates;

use std::future::Future;

use microloan_events::{Events, GroupStart};
use microloan_platform::{
    App,
    cache::Cache,
    client::{self, ClientOptions},
    config::Env,
    db,
    server::GrpcServer,
};
use microloan_proto::{
    FILE_DESCRIPTOR_SET, account::v1::account_service_client::AccountServiceClient,
    notification::v1::notification_service_server::NotificationServiceServer,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

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
    let metrics = metrics::Metrics::register(server.metrics().registry())?;
    let mut events = Events::start(
        config.events.clone(),
        pool.clone(),
        cache.clone(),
        server.metrics().registry(),
    )?;
    let options = ClientOptions::for_service(&config.common);
    let directory = directory::Directory::new(AccountServiceClient::new(client::connect(
        &config.account_url,
        &options,
    )?));
    let signals = signals::Signals::default();
    // Every event type is notified; a first deployment starts with the events published
    // after it (the group's default), not the retained history.
    events.consume(
        consumer::GROUP,
        consumer::Notifier {
            directory: directory.clone(),
            metrics: metrics.clone(),
            signals: signals.clone(),
            log_channel_enabled: config.delivery.log_channel_enabled,
        },
        GroupStart::NewEvents,
    );
    // Stops the delivery workers and closes the Subscribe streams when the server is
    // told to shut down, so the drain is not held up by open streams.
    let stop = CancellationToken::new();
    let deliverer = delivery::Deliverer::new(
        pool.clone(),
        config.delivery.clone(),
        directory.clone(),
        metrics.clone(),
        signals.clone(),
    )?;
    let workers = tokio::spawn(deliverer.run(stop.clone()));
    let retention = tokio::spawn(store::retention::run(
        pool.clone(),
        config.retention,
        stop.clone(),
    ));
    let api = grpc::NotificationApi::new(
        pool,
        directory,
        metrics,
        signals,
        config.stream.clone(),
        config.delivery.log_channel_enabled,
        stop.clone(),
    );
    let service = NotificationServiceServer::new(api)
        .max_decoding_message_size(config.common.message_bytes_max)
        .max_encoding_message_size(config.common.message_bytes_max);
    let stopping = stop.clone();
    let shutdown = async move {
        shutdown.await;
        stopping.cancel();
    };
    let served =
        microloan_events::serve_with(events, server.serve(service, listener, shutdown)).await;
    stop.cancel();
    // A worker that does not stop in time is abandoned: its claims expire.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), workers).await;
    // A sweep cut short rolls back its statement; the next start sweeps again.
    retention.abort();
    served
}

/// Ties the notification service into the shared process lifecycle ([`microloan_platform::launch`]).
#[derive(Debug)]
pub enum Notification {}

impl App for Notification {
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
