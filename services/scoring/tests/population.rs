//! The synthetic population and the shipped model (docs/scoring-population.md): training
//! features equal the served ones, the artefact is reproducible, and the social features
//! earn their place.

use microloan_platform::{auth::Role, testing};
use microloan_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use population::{Population, PopulationConfig, batches};
use scoring::{
    Scoring,
    features::{features_for, graph::PageRankOptions},
    model::{
        artefact::Artefact,
        population::{PopulationRun, feature_table, train_population},
    },
    store::pagerank::refresh_pagerank,
};
use sqlx::PgPool;

/// A population ingested through IngestSignals (a real server, real Postgres) reads back
/// through `features_for` as exactly the vectors training computes in memory: the model
/// is trained on the numbers it is served.
#[tokio::test]
async fn offline_features_equal_the_live_features_of_an_ingested_population() {
    let mut config = PopulationConfig::new(21, 240);
    config.fraud_rings = 2;
    config.fraud_ring_size = 4;
    let population = Population::generate(&config);
    let (offline, _) = feature_table(&population).expect("valid signals");

    let app = testing::spawn::<Scoring>(&[]).await;
    let pool = PgPool::connect(&app.database_url).await.expect("connect");
    let mut client = ScoringServiceClient::new(app.channel().await);
    let token = testing::token(Role::Service, None);
    let requests = batches(population.observed_signals(), "population-21", 1_000);
    let sent: usize = requests.iter().map(|batch| batch.signals.len()).sum();
    let summary = client
        .ingest_signals(testing::with_token(tokio_stream::iter(requests), &token))
        .await
        .expect("ingested")
        .into_inner();
    assert_eq!(summary.signals_rejected, 0, "{:?}", summary.rejections);
    assert_eq!(summary.signals_accepted, sent as i64);
    let run = refresh_pagerank(&pool, PageRankOptions::default())
        .await
        .expect("refresh")
        .expect("the only refresher");
    assert!(run.seeds > 0, "the population has known defaulters");

    let mut conn = pool.acquire().await.expect("acquire");
    let mut compared = 0;
    let mut social = 0;
    for (person, want) in population.people.iter().zip(&offline) {
        let live = features_for(&mut conn, person.customer_id)
            .await
            .expect("features");
        assert_eq!(live.features.len(), want.features.len());
        for (got, want) in live.features.iter().zip(&want.features) {
            assert_eq!(got.name, want.name);
            match (got.value, want.value) {
                // The PageRank sums arcs in table order live, in id order offline.
                (Some(got_value), Some(want_value)) if got.name == "defaulter_pagerank" => {
                    let scale = want_value.abs().max(1e-12);
                    assert!(
                        (got_value - want_value).abs() / scale < 1e-9,
                        "{}: {got_value} vs {want_value}",
                        got.name
                    );
                }
                (got_value, want_value) => assert_eq!(
                    got_value, want_value,
                    "{} of {}",
                    got.name, person.customer_id
                ),
            }
        }
        social += usize::from(want.get("one_hop_bad_rate").flatten().is_some());
        compared += 1;
    }
    assert_eq!(compared, 240);
    assert!(social > 50, "neighbours with history: {social}");
    drop(conn);
    pool.close().await;
    app.stop().await.expect("clean stop");
}

/// Same seed, same bytes and sha256; another seed, another model.
#[test]
fn the_same_seed_trains_the_same_artefact() {
    let first = train_population(&PopulationRun::new(5, 1_500)).expect("trained");
    let again = train_population(&PopulationRun::new(5, 1_500)).expect("trained");
    assert_eq!(
        first.artefact.to_pretty_json(),
        again.artefact.to_pretty_json()
    );
    assert_eq!(first.summary.sha256, again.summary.sha256);
    assert!(first.artefact.verify());
    let other = train_population(&PopulationRun::new(6, 1_500)).expect("trained");
    assert_ne!(other.summary.sha256, first.summary.sha256);
}

/// The targets on a moderate population: hold-out AUC ≥ 0.75 with the social
/// features and at least 0.05 above the same pipeline without them.
#[test]
fn the_social_features_lift_the_hold_out_auc() {
    let model = train_population(&PopulationRun::new(42, 6_000)).expect("trained");
    let summary = &model.summary;
    assert!(summary.holdout_auc >= 0.75, "{summary:?}");
    assert!(summary.social_lift >= 0.05, "{summary:?}");
    assert!((0.08..0.25).contains(&summary.default_rate), "{summary:?}");
    // The social group is in the model, not just beside it.
    assert!(
        summary
            .features
            .iter()
            .any(|name| name == "defaulter_pagerank" || name.ends_with("_bad_rate")),
        "{summary:?}"
    );
}

/// The shipped model is the one `make train-model` writes: it verifies, and names the
/// population it came from.
#[test]
fn the_shipped_model_verifies() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/model/default.json");
    let bytes = std::fs::read(path).expect("services/scoring/model/default.json ships");
    let artefact: Artefact = serde_json::from_slice(&bytes).expect("an artefact");
    assert!(artefact.verify());
    assert!(
        artefact
            .model_version
            .starts_with("population-n10000.seed42."),
        "{}",
        artefact.model_version
    );
    let holdout = artefact.metrics.holdout.expect("measured on a hold-out");
    assert!(holdout.auc >= 0.75, "{holdout:?}");
}
