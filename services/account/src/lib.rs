//! Account: customer-facing orchestration (DESIGN §2, §5): customers (PII encrypted),
//! credit-line terms, idempotency records and the audit log. Calls scoring for
//! decisions, the ledger for every movement of money and limit, and notification.
#![forbid(unsafe_code)]

pub mod apply;
pub mod config;
pub mod consumer;
pub mod customers;
pub mod error;
pub mod grpc;
pub mod identity;
pub mod increase;
pub mod line_cache;
pub mod lines;
pub mod loans;
pub mod peers;
pub mod pii;
pub mod rate_limit;
pub mod reencrypt;
pub mod store;

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
    FILE_DESCRIPTOR_SET, account::v1::account_service_server::AccountServiceServer,
    ledger::v1::ledger_service_client::LedgerServiceClient,
    notification::v1::notification_service_client::NotificationServiceClient,
    scoring::v1::scoring_service_client::ScoringServiceClient,
};
use tokio::net::TcpListener;

pub use config::Config;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Serves the account service on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let pool = db::connect_and_migrate_all(&config.common, &Account::migrators()).await?;
    let cache = Cache::connect(&config.common).await?;
    let server = GrpcServer::new(&config.common, grpc::permissions(), FILE_DESCRIPTOR_SET);
    // Every service relays its own outbox; consumers are registered with `events.consume`.
    let mut events = Events::start(
        config.events.clone(),
        pool.clone(),
        cache.clone(),
        server.metrics().registry(),
    )?;
    // Only balance moves from now on matter to the cache: older ones are already in
    // what the ledger answers on a miss.
    events.consume(
        consumer::GROUP,
        consumer::LinesFromEvents {
            cache: line_cache::LineCache::new(cache.clone(), config.lines.cache_ttl),
        },
        GroupStart::NewEvents,
    );
    let options = ClientOptions::for_service(&config.common);
    let peers = grpc::Peers {
        scoring: ScoringServiceClient::new(client::connect(&config.scoring_url, &options)?),
        ledger: LedgerServiceClient::new(client::connect(&config.ledger_url, &options)?),
        notification: NotificationServiceClient::new(client::connect(
            &config.notification_url,
            &options,
        )?),
    };
    let rules = grpc::Rules {
        pii: config.pii.clone(),
        age_band: config.age_band,
        product: config.product.clone(),
        lines: config.lines,
        rate_limits: config.rate_limits,
    };
    let api = grpc::AccountApi::new(pool, cache, peers, rules);
    let service = AccountServiceServer::new(api)
        .max_decoding_message_size(config.common.message_bytes_max)
        .max_encoding_message_size(config.common.message_bytes_max);
    microloan_events::serve_with(events, server.serve(service, listener, shutdown)).await
}

/// Ties the account service into the shared process lifecycle ([`microloan_platform::launch`]).
#[derive(Debug)]
pub enum Account {}

impl App for Account {
    const IDENTITY: microloan_platform::config::ServiceIdentity = config::IDENTITY;
    type Config = Config;
    const MIGRATOR: &'static sqlx::migrate::Migrator = &MIGRATOR;
    const MIGRATORS_SHARED: &'static [&'static sqlx::migrate::Migrator] = &[
        &microloan_events::MIGRATOR,
        &microloan_platform::idempotency::MIGRATOR,
    ];

    const COMMANDS: &'static [(&'static str, &'static str)] = &[(
        "reencrypt",
        "reseal every customer's PII under PII_ENCRYPTION_KEY (key rotation step 3)",
    )];

    fn config_from_env(env: &Env<'_>) -> Result<Config, microloan_platform::config::ConfigError> {
        Config::from_env(env)
    }

    fn run_command(
        name: &str,
        config: Config,
    ) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
        let name = name.to_owned();
        async move {
            anyhow::ensure!(name == "reencrypt", "no command `{name}`");
            let pool = db::connect_and_migrate_all(&config.common, &Account::migrators()).await?;
            let report = reencrypt::reencrypt_all(&pool, &config.pii).await?;
            println!("{}", serde_json::to_string(&report)?);
            anyhow::ensure!(
                report.remaining_customers == 0,
                "{} customers are still under another key; run it again",
                report.remaining_customers
            );
            Ok(())
        }
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
