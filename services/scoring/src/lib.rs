//! Scoring: signals, features, the scorecard, anti-fraud, pricing and limit policy
//! (DESIGN §5). Owns signals, features, models, decisions and fraud lists; line changes
//! it decides go through account.
#![forbid(unsafe_code)]

pub mod config;
pub mod consumer;
pub mod decision;
pub mod error;
pub mod features;
pub mod fraud;
pub mod group_commit;
pub mod grpc;
pub mod ingest;
pub mod metrics;
pub mod model;
pub mod policy;
pub mod refresh;
pub mod review;
pub mod scorer;
pub mod signals;
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
    FILE_DESCRIPTOR_SET, account::v1::account_service_client::AccountServiceClient,
    ledger::v1::ledger_service_client::LedgerServiceClient,
    scoring::v1::scoring_service_server::ScoringServiceServer,
};
use tokio::net::TcpListener;

pub use config::Config;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Serves the scoring service on `listener` until `shutdown` resolves.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> anyhow::Result<()> {
    let pool = db::connect_and_migrate_all(&config.common, &Scoring::migrators()).await?;
    let cache = Cache::connect(&config.common).await?;
    let server = GrpcServer::new(&config.common, grpc::permissions(), FILE_DESCRIPTOR_SET);
    // Every service relays its own outbox; consumers are registered with `events.consume`.
    let mut events = Events::start(
        config.events.clone(),
        pool.clone(),
        cache.clone(),
        server.metrics().registry(),
    )?;
    // History features are built from the ledger's events: a first deployment reads the
    // retained history (each event applies once, deduplicated on its id).
    let metrics = metrics::Metrics::register(server.metrics().registry())?;
    // New known defaulters (from either path) ask for an early PageRank refresh.
    let trigger = refresh::PageRankTrigger::default();
    // Evaluate's neighbourhood features, dropped by the changes this process applies.
    let graph = features::cache::GraphCache::new(config.graph_cache_ttl);

    let pagerank = tokio::spawn(refresh::refresh_pagerank(
        pool.clone(),
        config.pagerank_refresh,
        trigger.clone(),
        metrics.clone(),
        graph.clone(),
    ));
    let options = ClientOptions::for_service(&config.common);
    let peers = grpc::Peers {
        account: AccountServiceClient::new(client::connect(&config.account_url, &options)?),
        ledger: LedgerServiceClient::new(client::connect(&config.ledger_url, &options)?),
    };
    events.consume(
        consumer::GROUP,
        consumer::SignalsFromEvents {
            pagerank: trigger.clone(),
            graph: graph.clone(),
            lines: Some(consumer::LivePolicy {
                account: peers.account.clone(),
                rules: review::LineRules::of(&config.policy),
            }),
        },
        GroupStart::Beginning,
    );
    let decisions = decision::Decisions::new(
        pool.clone(),
        cache,
        scorer::load(&config.model_path),
        config.policy.clone(),
        config.fraud.clone(),
        graph.clone(),
    );
    let api = grpc::ScoringApi::new(
        pool,
        peers,
        metrics,
        trigger,
        graph,
        decisions,
        config.policy.clone(),
    );
    let service = ScoringServiceServer::new(api)
        .max_decoding_message_size(config.common.message_bytes_max)
        .max_encoding_message_size(config.common.message_bytes_max);
    let outcome =
        microloan_events::serve_with(events, server.serve(service, listener, shutdown)).await;
    pagerank.abort();
    outcome
}

/// Ties the scoring service into the shared process lifecycle ([`microloan_platform::launch`]).
#[derive(Debug)]
pub enum Scoring {}

impl App for Scoring {
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
