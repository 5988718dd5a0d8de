//! Shared by tests/evaluate.rs and tests/fraud.rs: a hand-built scorecard artefact
//! (exact points, so every score is known in advance), a scoring server pointed at it,
//! and request and signal builders.
#![allow(dead_code, reason = "each test file uses its own subset")]

use std::path::PathBuf;

use microloan_platform::{auth::Role, testing};
use microloan_proto::{
    common::v1::{DecisionPurpose, Money},
    google::r#type::Date,
    scoring::v1::{
        BehaviourCategory, BehaviourEvent, BehaviourFlow, EvaluateRequest, EvaluateResponse,
        EvaluationContext, ExplainDecisionRequest, ExplainDecisionResponse, IdentifierKind,
        IdentitySighting, IngestSignalsRequest, RepaymentOutcome, RepaymentOutcomeKind,
        SightingContext, Signal, SocialEdge, SocialEdgeKind,
        scoring_service_client::ScoringServiceClient, signal::Kind,
    },
};
use prost_types::Timestamp;
use scoring::{
    Scoring,
    model::{
        artefact::{Artefact, FORMAT, Provenance, ScoreDistribution, TrainingMetrics},
        binning::{Bin, BinRule, FeatureBinning, FeatureKind},
        metrics::Discrimination,
        scaling::ScorecardScaling,
        scorecard::{FitSummary, Scorecard, TrainOptions},
    },
};
use sqlx::PgPool;
use uuid::Uuid;

pub const BASE_POINTS: i32 = 555;
pub const MODEL_VERSION: &str = "test-card.1";

fn bin(rule: BinRule, points: i32, woe: f64) -> Bin {
    Bin {
        rule,
        goods: 90.0,
        bads: 10.0,
        woe,
        points,
    }
}

fn range(lower: Option<f64>, upper: Option<f64>) -> BinRule {
    BinRule::Range { lower, upper }
}

fn feature(name: &str, bins: Vec<Bin>) -> FeatureBinning {
    FeatureBinning {
        name: name.to_owned(),
        kind: FeatureKind::Numeric,
        iv: 0.3,
        special_values: Vec::new(),
        fallback_bin: 0,
        coefficient: 1.0,
        bins,
    }
}

/// Points: on_time_ratio missing 10, ≤ 0.8 0, > 0.8 40; risky_spend_share missing 20,
/// ≤ 0.1 30, > 0.1 0; degree ≤ 2 5, > 2 15. A thin file scores 555 + 10 + 20 + 5 = 590.
pub fn artefact() -> Artefact {
    let scorecard = Scorecard {
        scaling: ScorecardScaling::default(),
        intercept: 2.5,
        base_points: BASE_POINTS,
        features: vec![
            feature(
                "on_time_ratio",
                vec![
                    bin(BinRule::Missing, 10, 0.1),
                    bin(range(None, Some(0.8)), 0, -0.5),
                    bin(range(Some(0.8), None), 40, 0.9),
                ],
            ),
            feature(
                "risky_spend_share",
                vec![
                    bin(BinRule::Missing, 20, 0.3),
                    bin(range(None, Some(0.1)), 30, 0.6),
                    bin(range(Some(0.1), None), 0, -0.7),
                ],
            ),
            feature(
                "degree",
                vec![
                    bin(range(None, Some(2.0)), 5, -0.1),
                    bin(range(Some(2.0), None), 15, 0.2),
                ],
            ),
        ],
        rejected: Vec::new(),
        fit: FitSummary {
            iterations: 5,
            converged: true,
        },
    };
    Artefact {
        format: FORMAT.to_owned(),
        model_version: MODEL_VERSION.to_owned(),
        created_from: Provenance {
            data_file: "test.csv".into(),
            data_sha256: "0".repeat(64),
            rows: 1000,
            train_rows: 700,
            holdout_rows: 300,
            holdout_share: 0.3,
            seed: 1,
            target: "bad".into(),
            bad_value: "1".into(),
            good_value: "0".into(),
            categorical: Vec::new(),
        },
        options: TrainOptions::default(),
        scorecard,
        metrics: TrainingMetrics {
            train: Discrimination {
                rows: 700,
                auc: 0.8,
                ks: 0.45,
                gini: 0.6,
            },
            holdout: Some(Discrimination {
                rows: 300,
                auc: 0.78,
                ks: 0.42,
                gini: 0.56,
            }),
        },
        // Training scores: half at or below 590, half above.
        training_scores: Some(ScoreDistribution {
            edges: vec![590],
            shares: vec![0.5, 0.5],
        }),
        sha256: None,
    }
    .sealed()
}

/// Writes the artefact to a fresh file and returns its path.
pub fn model_file() -> PathBuf {
    let path = std::env::temp_dir().join(format!("scoring-test-model-{}.json", Uuid::new_v4()));
    std::fs::write(&path, artefact().to_pretty_json()).expect("write model");
    path
}

pub struct Harness {
    pub app: testing::TestApp,
    pub pool: PgPool,
    pub client: ScoringServiceClient<tonic::transport::Channel>,
    pub token: String,
    model: PathBuf,
}

impl Harness {
    /// A server on the test model plus `overrides`.
    pub async fn start(overrides: &[(&str, &str)]) -> Self {
        let model = model_file();
        let model_text = model.to_string_lossy().into_owned();
        let mut vars: Vec<(&str, &str)> = vec![("SCORING_MODEL_PATH", model_text.as_str())];
        vars.extend_from_slice(overrides);
        let app = testing::spawn::<Scoring>(&vars).await;
        let pool = PgPool::connect(&app.database_url).await.expect("connect");
        let client = ScoringServiceClient::new(app.channel().await);
        Self {
            app,
            pool,
            client,
            token: testing::token(Role::Service, None),
            model,
        }
    }

    pub async fn evaluate(
        &mut self,
        request: EvaluateRequest,
    ) -> Result<EvaluateResponse, tonic::Status> {
        self.client
            .evaluate(testing::with_token(request, &self.token))
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn explain(&mut self, decision_id: &str) -> ExplainDecisionResponse {
        self.client
            .explain_decision(testing::with_token(
                ExplainDecisionRequest {
                    decision_id: decision_id.to_owned(),
                },
                &self.token,
            ))
            .await
            .expect("explain")
            .into_inner()
    }

    pub async fn ingest(&mut self, signals: Vec<Signal>) {
        let batch = IngestSignalsRequest {
            request_id: Uuid::new_v4().to_string(),
            signals,
        };
        let summary = self
            .client
            .ingest_signals(testing::with_token(
                tokio_stream::iter([batch]),
                &self.token,
            ))
            .await
            .expect("ingest")
            .into_inner();
        assert_eq!(summary.signals_rejected, 0, "{:?}", summary.rejections);
    }

    pub async fn decisions_stored(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM decisions")
            .fetch_one(&self.pool)
            .await
            .expect("count")
    }

    pub async fn stop(self) {
        self.pool.close().await;
        self.app.stop().await.expect("clean stop");
        let _ = std::fs::remove_file(&self.model);
    }
}

pub fn cny(fen: i64) -> Option<Money> {
    Some(Money {
        currency_code: "CNY".into(),
        minor_units: fen,
    })
}

/// A credit-line application with a 120,000 CNY income.
pub fn application(customer: Uuid) -> EvaluateRequest {
    EvaluateRequest {
        request_id: Uuid::new_v4().to_string(),
        customer_id: customer.to_string(),
        purpose: DecisionPurpose::CreditLineApplication as i32,
        annual_income: cny(12_000_000),
        ..EvaluateRequest::default()
    }
}

pub fn with_context(
    mut request: EvaluateRequest,
    device: &str,
    phone_hash: &str,
    national_id_hash: &str,
) -> EvaluateRequest {
    request.context = Some(EvaluationContext {
        device_id: device.to_owned(),
        phone_hash: phone_hash.to_owned(),
        national_id_hash: national_id_hash.to_owned(),
    });
    request
}

pub fn drawdown(customer: Uuid, amount_fen: i64, current_limit_fen: i64) -> EvaluateRequest {
    EvaluateRequest {
        request_id: Uuid::new_v4().to_string(),
        customer_id: customer.to_string(),
        purpose: DecisionPurpose::Drawdown as i32,
        drawdown_amount: cny(amount_fen),
        current_limit: cny(current_limit_fen),
        ..EvaluateRequest::default()
    }
}

pub fn now() -> Timestamp {
    microloan_platform::convert::timestamp(chrono::Utc::now())
}

pub fn sighting(customer: Uuid, kind: IdentifierKind, identifier: &str) -> Signal {
    Signal {
        kind: Some(Kind::IdentitySighting(IdentitySighting {
            customer_id: customer.to_string(),
            kind: kind as i32,
            identifier: identifier.to_owned(),
            context: SightingContext::Login as i32,
            observe_time: Some(now()),
        })),
    }
}

pub fn outcome(customer: Uuid, loan: Uuid, sequence: i32, kind: RepaymentOutcomeKind) -> Signal {
    let late = kind == RepaymentOutcomeKind::Late;
    Signal {
        kind: Some(Kind::RepaymentOutcome(RepaymentOutcome {
            customer_id: customer.to_string(),
            loan_id: loan.to_string(),
            installment_sequence: sequence,
            due_date: Some(Date {
                year: 2026,
                month: 10,
                day: 15,
            }),
            outcome: kind as i32,
            days_past_due: if late { 5 } else { 0 },
            amount_due: cny(10_000),
            amount_paid: cny(10_000),
            observe_time: Some(now()),
        })),
    }
}

pub fn spend(customer: Uuid, category: BehaviourCategory, fen: i64) -> Signal {
    Signal {
        kind: Some(Kind::BehaviourEvent(BehaviourEvent {
            customer_id: customer.to_string(),
            flow: BehaviourFlow::Spend as i32,
            category: category as i32,
            amount: cny(fen),
            occur_time: Some(now()),
            counterparty_id: String::new(),
        })),
    }
}

pub fn contact(customer: Uuid, other: &str) -> Signal {
    Signal {
        kind: Some(Kind::SocialEdge(SocialEdge {
            source_party_id: customer.to_string(),
            target_party_id: other.to_owned(),
            kind: SocialEdgeKind::Contact as i32,
            weight: "1".into(),
            occur_time: Some(now()),
        })),
    }
}

/// 64 lowercase hex: a keyed hash as the proto wants it.
pub fn hash(seed: char) -> String {
    std::iter::repeat_n(seed, 64).collect()
}
