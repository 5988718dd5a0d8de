//! IngestSignals, the event consumer and the feature store, against a real gRPC server on
//! port 0, real Postgres and real Redis.

use std::time::Duration;

use microloan_events::{NewEvent, append};
use microloan_platform::{auth::Role, testing};
use microloan_proto::{
    common::v1::Money,
    events::v1::{CustomerCreated, LoanWrittenOff, event::Payload},
    google::r#type::Date,
    scoring::v1::{
        BehaviourCategory, BehaviourEvent, BehaviourFlow, IdentifierKind, IdentitySighting,
        IngestSignalsRequest, IngestSignalsResponse, RepaymentOutcome, RepaymentOutcomeKind,
        SightingContext, Signal, SocialEdge, SocialEdgeKind,
        scoring_service_client::ScoringServiceClient, signal::Kind,
    },
};
use prost_types::Timestamp;
use scoring::{
    Scoring,
    features::{FeatureVector, features_for, graph::PageRankOptions},
    store::{features::is_known_defaulter, pagerank::refresh_pagerank},
};
use sqlx::PgPool;
use tonic::Code;
use tonic_types::StatusExt;
use uuid::Uuid;

const HASH_A: &str = "0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a";

struct Harness {
    app: testing::TestApp,
    pool: PgPool,
    client: ScoringServiceClient<tonic::transport::Channel>,
    token: String,
}

impl Harness {
    async fn start() -> Self {
        let app = testing::spawn::<Scoring>(&[]).await;
        let pool = PgPool::connect(&app.database_url).await.expect("connect");
        let client = ScoringServiceClient::new(app.channel().await);
        Self {
            app,
            pool,
            client,
            token: testing::token(Role::Service, None),
        }
    }

    async fn ingest(
        &mut self,
        batches: Vec<IngestSignalsRequest>,
    ) -> Result<IngestSignalsResponse, tonic::Status> {
        let request = testing::with_token(tokio_stream::iter(batches), &self.token);
        self.client
            .ingest_signals(request)
            .await
            .map(tonic::Response::into_inner)
    }

    async fn features(&self, customer: Uuid) -> FeatureVector {
        let mut conn = self.pool.acquire().await.expect("acquire");
        features_for(&mut conn, customer).await.expect("features")
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    async fn stop(self) {
        self.pool.close().await;
        self.app.stop().await.expect("clean stop");
    }
}

fn at(seconds: i64) -> Option<Timestamp> {
    Some(Timestamp { seconds, nanos: 0 })
}

fn cny(minor_units: i64) -> Option<Money> {
    Some(Money {
        currency_code: "CNY".into(),
        minor_units,
    })
}

fn batch(request_id: &str, signals: Vec<Kind>) -> IngestSignalsRequest {
    IngestSignalsRequest {
        request_id: request_id.into(),
        signals: signals
            .into_iter()
            .map(|kind| Signal { kind: Some(kind) })
            .collect(),
    }
}

fn edge(source: &str, target: &str, kind: SocialEdgeKind, weight: &str) -> Kind {
    Kind::SocialEdge(SocialEdge {
        source_party_id: source.into(),
        target_party_id: target.into(),
        kind: kind as i32,
        weight: weight.into(),
        occur_time: at(1_760_000_000),
    })
}

fn contact(source: Uuid, target: Uuid) -> Kind {
    edge(
        &source.to_string(),
        &target.to_string(),
        SocialEdgeKind::Contact,
        "",
    )
}

fn spend(customer: Uuid, category: BehaviourCategory, fen: i64) -> Kind {
    Kind::BehaviourEvent(BehaviourEvent {
        customer_id: customer.to_string(),
        flow: BehaviourFlow::Spend as i32,
        category: category as i32,
        amount: cny(fen),
        occur_time: at(1_760_000_000),
        counterparty_id: String::new(),
    })
}

fn device(customer: Uuid, fingerprint: &str) -> Kind {
    Kind::IdentitySighting(IdentitySighting {
        customer_id: customer.to_string(),
        kind: IdentifierKind::Device as i32,
        identifier: fingerprint.into(),
        context: SightingContext::Login as i32,
        observe_time: at(1_760_000_000),
    })
}

fn outcome(customer: Uuid, kind: RepaymentOutcomeKind, days_past_due: i32) -> Kind {
    Kind::RepaymentOutcome(RepaymentOutcome {
        customer_id: customer.to_string(),
        loan_id: Uuid::now_v7().to_string(),
        installment_sequence: 1,
        due_date: Some(Date {
            year: 2026,
            month: 1,
            day: 15,
        }),
        outcome: kind as i32,
        days_past_due,
        amount_due: cny(10_000),
        amount_paid: cny(10_000),
        observe_time: at(1_760_000_000),
    })
}

fn value(features: &FeatureVector, name: &str) -> Option<f64> {
    features.get(name).expect("a known feature")
}

fn request_id() -> String {
    Uuid::now_v7().to_string()
}

#[tokio::test]
async fn bad_signals_are_rejected_by_batch_and_signal_index_with_their_field_and_the_rest_stored() {
    let mut harness = Harness::start().await;
    let customer = Uuid::now_v7();
    let summary = harness
        .ingest(vec![
            batch(
                &request_id(),
                vec![
                    contact(customer, Uuid::now_v7()),
                    spend(customer, BehaviourCategory::Dining, 0),
                    device(customer, "device-1"),
                ],
            ),
            batch(
                &request_id(),
                vec![
                    outcome(customer, RepaymentOutcomeKind::OnTime, 0),
                    edge("ext:a", "ext:a", SocialEdgeKind::Call, "2"),
                    spend(customer, BehaviourCategory::Gambling, 500),
                ],
            ),
        ])
        .await
        .expect("summary");
    let rejections: Vec<(i32, i32, &str)> = summary
        .rejections
        .iter()
        .map(|r| (r.batch_index, r.signal_index, r.field.as_str()))
        .collect();
    assert_eq!(
        rejections,
        [
            (0, 1, "behaviour_event.amount.minor_units"),
            (1, 1, "social_edge.target_party_id"),
        ]
    );
    assert_eq!(
        (
            summary.batches_received,
            summary.duplicate_batches,
            summary.signals_accepted,
            summary.signals_rejected,
        ),
        (2, 0, 4, 2)
    );
    assert_eq!(
        (
            summary.social_edges,
            summary.behaviour_events,
            summary.identity_sightings,
            summary.repayment_outcomes,
        ),
        (1, 1, 1, 1)
    );
    assert_eq!(harness.count("social_edges").await, 1);
    assert_eq!(harness.count("behaviour_events").await, 1);
    assert_eq!(harness.count("identity_sightings").await, 1);
    assert_eq!(harness.count("repayment_outcomes").await, 1);
    let metrics = testing::http_get(harness.app.admin_addr, "/metrics").await;
    for line in [
        "scoring_signal_batches_total{result=\"applied\"} 2",
        "scoring_signals_accepted_total{kind=\"behaviour_event\"} 1",
        "scoring_signals_rejected_total 2",
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    harness.stop().await;
}

#[tokio::test]
async fn a_batch_over_1000_signals_aborts_the_stream_and_earlier_batches_stay() {
    let mut harness = Harness::start().await;
    let customer = Uuid::now_v7();
    let too_many = (0..1001)
        .map(|_| spend(customer, BehaviourCategory::Dining, 100))
        .collect();
    let status = harness
        .ingest(vec![
            batch(
                &request_id(),
                vec![spend(customer, BehaviourCategory::Dining, 100)],
            ),
            batch(&request_id(), too_many),
            batch(
                &request_id(),
                vec![spend(customer, BehaviourCategory::Dining, 100)],
            ),
        ])
        .await
        .expect_err("aborted");
    assert_eq!(status.code(), Code::InvalidArgument);
    let fields: Vec<String> = status
        .get_error_details()
        .bad_request()
        .expect("bad request")
        .field_violations
        .iter()
        .map(|violation| violation.field.clone())
        .collect();
    assert_eq!(fields, ["signals"]);
    assert_eq!(
        harness.count("behaviour_events").await,
        1,
        "the first batch stays"
    );

    // An empty request_id aborts likewise.
    let status = harness
        .ingest(vec![batch(
            "",
            vec![spend(customer, BehaviourCategory::Dining, 100)],
        )])
        .await
        .expect_err("aborted");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status
            .get_error_details()
            .bad_request()
            .expect("details")
            .field_violations[0]
            .field,
        "request_id"
    );
    assert_eq!(harness.count("behaviour_events").await, 1);
    harness.stop().await;
}

#[tokio::test]
async fn a_replayed_batch_is_counted_as_duplicate_and_stored_once() {
    let mut harness = Harness::start().await;
    let customer = Uuid::now_v7();
    let replayed = batch(
        &request_id(),
        vec![
            spend(customer, BehaviourCategory::Dining, 100),
            spend(customer, BehaviourCategory::Dining, 0),
        ],
    );
    let summary = harness
        .ingest(vec![replayed.clone(), replayed.clone()])
        .await
        .expect("summary");
    assert_eq!(
        (
            summary.batches_received,
            summary.duplicate_batches,
            summary.signals_accepted,
            summary.signals_rejected
        ),
        (2, 1, 1, 1)
    );
    // A later stream retrying it.
    let summary = harness.ingest(vec![replayed]).await.expect("summary");
    assert_eq!(
        (summary.duplicate_batches, summary.signals_accepted),
        (1, 0)
    );
    assert_eq!(harness.count("behaviour_events").await, 1);
    harness.stop().await;
}

#[tokio::test]
async fn a_request_id_reused_with_another_body_is_already_exists_idempotency_key_reused() {
    let mut harness = Harness::start().await;
    let customer = Uuid::now_v7();
    let key = request_id();
    harness
        .ingest(vec![batch(
            &key,
            vec![spend(customer, BehaviourCategory::Dining, 100)],
        )])
        .await
        .expect("first");
    let status = harness
        .ingest(vec![batch(
            &key,
            vec![spend(customer, BehaviourCategory::Dining, 200)],
        )])
        .await
        .expect_err("reused");
    assert_eq!(status.code(), Code::AlreadyExists);
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .expect("info");
    assert_eq!(info.reason, "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(info.domain, "microloan.scoring");
    assert_eq!(harness.count("behaviour_events").await, 1);
    harness.stop().await;
}

#[tokio::test]
async fn an_unknown_customer_is_accepted_and_a_customer_without_signals_is_a_thin_file() {
    let mut harness = Harness::start().await;
    let unknown = Uuid::now_v7();
    let summary = harness
        .ingest(vec![batch(
            &request_id(),
            vec![spend(unknown, BehaviourCategory::Lottery, 100)],
        )])
        .await
        .expect("accepted");
    assert_eq!((summary.signals_accepted, summary.signals_rejected), (1, 0));
    assert_eq!(
        value(&harness.features(unknown).await, "risky_spend_share"),
        Some(1.0)
    );

    let thin = harness.features(Uuid::now_v7()).await;
    let want: Vec<(&str, Option<f64>)> = vec![
        ("degree", Some(0.0)),
        ("weighted_degree_transfer_fen", Some(0.0)),
        ("weighted_degree_red_packet_fen", Some(0.0)),
        ("weighted_degree_messages", Some(0.0)),
        ("weighted_degree_calls", Some(0.0)),
        ("weighted_degree_contacts", Some(0.0)),
        ("weighted_degree_group_members", Some(0.0)),
        ("one_hop_bad_rate", None),
        ("two_hop_bad_rate", None),
        ("defaulter_pagerank", Some(0.0)),
        ("component_size", Some(1.0)),
        ("component_bad_rate", None),
        ("income_monthly_mean", None),
        ("income_stability", None),
        ("spend_volatility", None),
        ("risky_spend_share", None),
        ("distinct_lenders", Some(0.0)),
        ("on_time_ratio", None),
        ("max_days_past_due", None),
        ("utilisation", None),
        ("customers_per_device", Some(0.0)),
        ("customers_per_phone", Some(0.0)),
    ];
    let got: Vec<(&str, Option<f64>)> = thin
        .features
        .iter()
        .map(|feature| (feature.name, feature.value))
        .collect();
    assert_eq!(got, want);
    harness.stop().await;
}

/// Polls `check` for up to five seconds.
async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..250 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what} did not happen within 5 s");
}

#[tokio::test]
async fn a_write_off_event_makes_a_known_defaulter_and_moves_a_neighbours_one_hop_rate() {
    let mut harness = Harness::start().await;
    let (neighbour, debtor, good) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
    harness
        .ingest(vec![batch(
            &request_id(),
            vec![
                contact(neighbour, debtor),
                contact(neighbour, good),
                outcome(debtor, RepaymentOutcomeKind::OnTime, 0),
                outcome(good, RepaymentOutcomeKind::OnTime, 0),
            ],
        )])
        .await
        .expect("ingested");
    let before = harness.features(neighbour).await;
    assert_eq!(value(&before, "one_hop_bad_rate"), Some(0.0));

    // The ledger's LoanWrittenOff and account's CustomerCreated (the debtor's and the
    // good customer's shared device), through the outbox, the stream and the consumer.
    let mut tx = harness.pool.begin().await.expect("begin");
    for (customer, device) in [(debtor, "shared-device"), (good, "shared-device")] {
        append(
            &mut tx,
            "account",
            NewEvent {
                customer_id: customer,
                business_date: None,
                payload: Payload::CustomerCreated(CustomerCreated {
                    customer_id: customer.to_string(),
                    locale: "en".into(),
                    device_id: device.into(),
                }),
            },
        )
        .await
        .expect("append");
    }
    append(
        &mut tx,
        "ledger",
        NewEvent {
            customer_id: debtor,
            business_date: None,
            payload: Payload::LoanWrittenOff(LoanWrittenOff {
                loan_id: Uuid::now_v7().to_string(),
                days_past_due: 180,
                total: cny(120_000),
                ..LoanWrittenOff::default()
            }),
        },
    )
    .await
    .expect("append");
    tx.commit().await.expect("commit");

    let pool = harness.pool.clone();
    eventually("the debtor becoming a known defaulter", async || {
        let mut conn = pool.acquire().await.expect("acquire");
        is_known_defaulter(&mut conn, debtor).await.expect("read")
    })
    .await;
    eventually("both devices recorded", async || {
        let mut conn = pool.acquire().await.expect("acquire");
        let features = features_for(&mut conn, good).await.expect("features");
        value(&features, "customers_per_device") == Some(2.0)
    })
    .await;
    let after = harness.features(neighbour).await;
    assert_eq!(value(&after, "one_hop_bad_rate"), Some(0.5));
    let debtor_features = harness.features(debtor).await;
    assert_eq!(value(&debtor_features, "max_days_past_due"), Some(180.0));
    // The good customer shares a device with a defaulter: a component of 2, the other
    // member bad.
    let good_features = harness.features(good).await;
    assert_eq!(value(&good_features, "component_size"), Some(2.0));
    assert_eq!(value(&good_features, "component_bad_rate"), Some(1.0));
    harness.stop().await;
}

/// The 5-node star of the PageRank unit test, stored through IngestSignals: centre c,
/// leaves l1..l4, l1 a known defaulter (MISSED at 90 days). By hand (damping 0.85):
/// c = 17/37, l1 = 733/2960, other leaves 289/2960. Plus per-kind weights, behaviour
/// and identity on the same customers.
#[tokio::test]
async fn features_on_a_small_graph_match_hand_computed_values() {
    let mut harness = Harness::start().await;
    let centre = Uuid::now_v7();
    let leaves: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let (c, l1, l2) = (
        centre.to_string(),
        leaves[0].to_string(),
        leaves[1].to_string(),
    );
    let mut signals: Vec<Kind> = leaves.iter().map(|leaf| contact(centre, *leaf)).collect();
    signals.extend([
        edge(&c, &l1, SocialEdgeKind::Transfer, "1500"),
        edge(&l1, &c, SocialEdgeKind::Transfer, "500"),
        edge(&c, &l2, SocialEdgeKind::Message, "12"),
        edge(&c, &l2, SocialEdgeKind::Contact, "ignored"),
        outcome(leaves[0], RepaymentOutcomeKind::Missed, 90),
        outcome(leaves[1], RepaymentOutcomeKind::OnTime, 0),
        outcome(centre, RepaymentOutcomeKind::Early, 0),
        outcome(centre, RepaymentOutcomeKind::Late, 12),
        spend(centre, BehaviourCategory::Gambling, 2_500),
        spend(centre, BehaviourCategory::Groceries, 7_500),
        device(centre, "phone-model-x"),
        device(leaves[2], "phone-model-x"),
        device(leaves[3], "phone-model-x"),
        Kind::IdentitySighting(IdentitySighting {
            customer_id: centre.to_string(),
            kind: IdentifierKind::Phone as i32,
            identifier: HASH_A.into(),
            context: SightingContext::Application as i32,
            observe_time: at(1_760_000_000),
        }),
    ]);
    let mut lenders = Vec::new();
    for lender in ["1", "2", "1"] {
        lenders.push(Kind::BehaviourEvent(BehaviourEvent {
            customer_id: centre.to_string(),
            flow: BehaviourFlow::Spend as i32,
            category: BehaviourCategory::OtherLender as i32,
            amount: cny(10_000),
            occur_time: at(1_760_000_000),
            counterparty_id: lender.repeat(64),
        }));
    }
    let summary = harness
        .ingest(vec![
            batch(&request_id(), signals),
            batch(&request_id(), lenders),
        ])
        .await
        .expect("ingested");
    assert_eq!(summary.signals_rejected, 0, "{:?}", summary.rejections);

    // The background refresher (at start-up, and asked by the new defaulter) may hold
    // the lock for a moment: retry until this call runs the refresh itself.
    let mut run = None;
    for _ in 0..250 {
        run = refresh_pagerank(&harness.pool, PageRankOptions::default())
            .await
            .expect("refresh");
        if run.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let run = run.expect("the refresh ran within 5 s");
    assert_eq!((run.parties, run.arcs, run.seeds), (5, 8, 1));

    let features = harness.features(centre).await;
    let close = |name: &str, want: f64| {
        let got = value(&features, name).expect("defined");
        assert!((got - want).abs() < 1e-8, "{name}: {got} vs {want}");
    };
    close("degree", 4.0);
    close("weighted_degree_transfer_fen", 2000.0);
    close("weighted_degree_messages", 12.0);
    close("weighted_degree_contacts", 4.0);
    close("weighted_degree_calls", 0.0);
    // Neighbours with history: l1 (defaulter) and l2 (good).
    close("one_hop_bad_rate", 0.5);
    close("defaulter_pagerank", 17.0 / 37.0);
    // Spend 25 + 75 + 3 x 100 CNY; risky: gambling 25 and other lenders 300.
    close("risky_spend_share", 325.0 / 400.0);
    close("distinct_lenders", 2.0);
    close("on_time_ratio", 0.5);
    close("max_days_past_due", 12.0);
    close("customers_per_device", 3.0);
    close("customers_per_phone", 1.0);
    close("component_size", 3.0);
    close("component_bad_rate", 0.0);
    assert_eq!(
        value(&features, "two_hop_bad_rate"),
        None,
        "a star has no second hop"
    );

    let leaf = harness.features(leaves[1]).await;
    // l2's two-hop parties: l1 (bad), l3, l4 (no history) → 1/1.
    assert_eq!(value(&leaf, "two_hop_bad_rate"), Some(1.0));
    let pagerank = value(&leaf, "defaulter_pagerank").expect("defined");
    assert!((pagerank - 289.0 / 2960.0).abs() < 1e-8);
    harness.stop().await;
}

/// Two streams at once link customers through two devices sharing one customer: the
/// components merge into one of 20, whatever the interleaving.
#[tokio::test]
async fn concurrent_streams_merge_identity_components_consistently() {
    let harness = Harness::start().await;
    let customers: Vec<Uuid> = (0..20).map(|_| Uuid::now_v7()).collect();
    let streams = [
        ("device-x", &customers[..10]),
        ("device-y", &customers[9..]),
    ]
    .map(|(fingerprint, members)| {
        let mut client = harness.client.clone();
        let token = harness.token.clone();
        let batches: Vec<IngestSignalsRequest> = members
            .iter()
            .map(|customer| batch(&request_id(), vec![device(*customer, fingerprint)]))
            .collect();
        tokio::spawn(async move {
            client
                .ingest_signals(testing::with_token(tokio_stream::iter(batches), &token))
                .await
                .expect("ingested")
                .into_inner()
        })
    });
    for stream in streams {
        assert_eq!(stream.await.expect("joined").signals_rejected, 0);
    }
    for customer in &customers {
        let features = harness.features(*customer).await;
        assert_eq!(value(&features, "component_size"), Some(20.0));
    }
    assert_eq!(harness.count("identity_component_stats").await, 1);
    harness.stop().await;
}

/// The instalment-state rule as stored (the SQL twin of `merge_installment_state`):
/// paid after MISSED is LATE, WRITTEN_OFF is final, days past due only grow.
#[tokio::test]
async fn an_instalment_paid_after_missed_is_late_and_a_write_off_stays() {
    let mut harness = Harness::start().await;
    let customer = Uuid::now_v7();
    let (late_loan, lost_loan) = (Uuid::now_v7().to_string(), Uuid::now_v7().to_string());
    let observed = |loan: &str, kind: RepaymentOutcomeKind, days: i32, seconds: i64| {
        let Kind::RepaymentOutcome(mut signal) = outcome(customer, kind, days) else {
            unreachable!("an outcome")
        };
        signal.loan_id = loan.to_owned();
        signal.observe_time = at(seconds);
        Kind::RepaymentOutcome(signal)
    };
    for step in [
        vec![
            observed(&late_loan, RepaymentOutcomeKind::Missed, 30, 100),
            observed(&lost_loan, RepaymentOutcomeKind::WrittenOff, 180, 100),
        ],
        vec![
            observed(&late_loan, RepaymentOutcomeKind::OnTime, 0, 200),
            observed(&lost_loan, RepaymentOutcomeKind::Early, 0, 200),
        ],
    ] {
        harness
            .ingest(vec![batch(&request_id(), step)])
            .await
            .expect("ingested");
    }
    let states: Vec<(i16, i32)> = sqlx::query_as(
        "SELECT outcome, days_past_due FROM installment_states WHERE customer_id = $1 \
         ORDER BY loan_id = $2::uuid DESC",
    )
    .bind(customer)
    .bind(Uuid::parse_str(&late_loan).expect("uuid"))
    .fetch_all(&harness.pool)
    .await
    .expect("states");
    assert_eq!(
        states,
        [
            (RepaymentOutcomeKind::Late as i16, 30),
            (RepaymentOutcomeKind::WrittenOff as i16, 180)
        ]
    );
    let features = harness.features(customer).await;
    assert_eq!(value(&features, "on_time_ratio"), Some(0.0));
    assert_eq!(value(&features, "max_days_past_due"), Some(180.0));
    let mut conn = harness.pool.acquire().await.expect("acquire");
    assert!(is_known_defaulter(&mut conn, customer).await.expect("read"));
    drop(conn);
    harness.stop().await;
}

/// Ingests a contact of a new known defaulter and waits until a PageRank refresh
/// gives the contact a positive score (5 s at most).
async fn new_defaulter_reaches_a_friend(harness: &mut Harness) {
    let (debtor, friend) = (Uuid::now_v7(), Uuid::now_v7());
    harness
        .ingest(vec![batch(
            &request_id(),
            vec![
                contact(friend, debtor),
                outcome(debtor, RepaymentOutcomeKind::Missed, 90),
            ],
        )])
        .await
        .expect("ingested");
    let pool = harness.pool.clone();
    eventually("a refresh reaching the friend", async || {
        let mut conn = pool.acquire().await.expect("acquire");
        let features = features_for(&mut conn, friend).await.expect("features");
        value(&features, "defaulter_pagerank").is_some_and(|score| score > 0.0)
    })
    .await;
}

/// With the schedule off, a new known defaulter still asks for a refresh: its
/// neighbour's PageRank becomes positive within seconds.
#[tokio::test]
async fn a_new_known_defaulter_triggers_a_pagerank_refresh() {
    let app = testing::spawn::<Scoring>(&[("SCORING_PAGERANK_REFRESH_SECONDS", "0")]).await;
    let pool = PgPool::connect(&app.database_url).await.expect("connect");
    let mut harness = Harness {
        client: ScoringServiceClient::new(app.channel().await),
        app,
        pool,
        token: testing::token(Role::Service, None),
    };
    new_defaulter_reaches_a_friend(&mut harness).await;
    assert_eq!(harness.count("pagerank_runs").await, 1);
    harness.stop().await;
}

/// With the schedule on (its first refresh at start), new known defaulters asked for
/// one after the other are each reflected within seconds: a request waits for the
/// settle and the last refresh's duration, not a minute after the last refresh.
#[tokio::test]
async fn requested_pagerank_refreshes_run_promptly_one_after_another() {
    let mut harness = Harness::start().await;
    for _ in 0..2 {
        new_defaulter_reaches_a_friend(&mut harness).await;
    }
    // The start-up refresh and one per request (requests made while none was running).
    assert!(harness.count("pagerank_runs").await >= 3);
    harness.stop().await;
}

#[tokio::test]
async fn only_the_first_100_rejections_are_detailed_but_all_are_counted() {
    let mut harness = Harness::start().await;
    let customer = Uuid::now_v7();
    let bad = |count: usize| {
        (0..count)
            .map(|_| spend(customer, BehaviourCategory::Dining, -5))
            .collect()
    };
    let summary = harness
        .ingest(vec![
            batch(&request_id(), bad(60)),
            batch(&request_id(), bad(90)),
        ])
        .await
        .expect("summary");
    assert_eq!(summary.signals_rejected, 150);
    assert_eq!(summary.rejections.len(), 100);
    let last = summary.rejections.last().expect("rejections");
    assert_eq!((last.batch_index, last.signal_index), (1, 39));
    harness.stop().await;
}

/// Several IngestSignals streams at once over the same parties, devices and customers
/// (edges both ways, shared devices, outcomes making defaulters), beside the consumer
/// applying CustomerCreated events of the same customers and devices: every stream
/// succeeds (the demo saw `deadlock detected` here) and every signal is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_over_the_same_parties_all_succeed() {
    const STREAMS: usize = 4;
    const BATCHES: usize = 6;
    const SIGNALS: usize = 200;
    let harness = Harness::start().await;
    let parties: Vec<Uuid> = (0..40).map(|_| Uuid::now_v7()).collect();
    // A small deterministic mix, so streams touch the same rows in different orders.
    let pick = |seed: usize, i: usize| (seed.wrapping_mul(2_654_435_761) ^ (i * 40_503)) % 40;
    let mut streams = Vec::new();
    for stream in 0..STREAMS {
        let mut batches = Vec::new();
        for b in 0..BATCHES {
            let signals = (0..SIGNALS)
                .map(|i| {
                    let seed = stream * 1_000_003 + b * 10_007 + i;
                    let (a, z) = (parties[pick(seed, i)], parties[pick(seed + 17, i + 5)]);
                    match i % 4 {
                        0 | 1 if a != z => contact(a, z),
                        0 | 1 => contact(a, parties[(pick(seed, i) + 1) % 40]),
                        2 => device(a, &format!("device-{}", pick(seed, i) % 8)),
                        _ if i % 20 == 3 => outcome(a, RepaymentOutcomeKind::Missed, 90),
                        _ => outcome(a, RepaymentOutcomeKind::OnTime, 0),
                    }
                })
                .collect();
            batches.push(batch(&request_id(), signals));
        }
        streams.push(batches);
    }
    // The consumer's transactions apply several events each, in their own order.
    let mut tx = harness.pool.begin().await.expect("begin");
    for (index, customer) in parties.iter().rev().enumerate() {
        append(
            &mut tx,
            "account",
            NewEvent {
                customer_id: *customer,
                business_date: None,
                payload: Payload::CustomerCreated(CustomerCreated {
                    customer_id: customer.to_string(),
                    locale: "en".into(),
                    device_id: format!("device-{}", index % 8),
                }),
            },
        )
        .await
        .expect("append");
    }
    tx.commit().await.expect("commit");

    let calls = streams.into_iter().map(|batches| {
        let mut client = harness.client.clone();
        let request = testing::with_token(tokio_stream::iter(batches), &harness.token);
        async move { client.ingest_signals(request).await }
    });
    let answers = futures::future::join_all(calls).await;
    for answer in answers {
        let summary = answer.expect("every stream succeeds").into_inner();
        assert_eq!(summary.batches_received, BATCHES as i64);
        assert_eq!(summary.signals_accepted, (BATCHES * SIGNALS) as i64);
        assert_eq!(summary.signals_rejected, 0);
    }
    let edges_sent = (STREAMS * BATCHES * SIGNALS / 2) as i64;
    assert_eq!(harness.count("social_edges").await, edges_sent);
    let pool = harness.pool.clone();
    eventually("the consumer's sightings", async || {
        let sightings: i64 =
            sqlx::query_scalar("SELECT count(*) FROM identity_sightings WHERE context = $1")
                .bind(SightingContext::Onboarding as i16)
                .fetch_one(&pool)
                .await
                .expect("count");
        sightings == parties.len() as i64
    })
    .await;
    // The identifier counts agree with the links whoever added them.
    let mismatched: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM identifier_customers i WHERE customers <> \
         (SELECT count(*) FROM identity_links l WHERE l.kind = i.kind AND l.identifier = i.identifier)",
    )
    .fetch_one(&harness.pool)
    .await
    .expect("count");
    assert_eq!(mismatched, 0);
    harness.stop().await;
}
