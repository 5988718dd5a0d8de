//! The scoring service served in-process on port 0, against real Postgres and Redis.

use microloan_platform::{auth::Role, testing};
use microloan_proto::scoring::v1::{
    EvaluateRequest, IngestSignalsRequest, RunPortfolioReviewRequest,
    scoring_service_client::ScoringServiceClient, scoring_service_server::SERVICE_NAME,
};
use scoring::Scoring;
use tonic::Code;

#[tokio::test]
async fn serves_health_and_reflection() {
    let app = testing::spawn::<Scoring>(&[]).await;
    testing::assert_serves_health_and_reflection(&app, SERVICE_NAME).await;
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn only_staff_reach_scoring() {
    let app = testing::spawn::<Scoring>(&[]).await;
    let mut scoring = ScoringServiceClient::new(app.channel().await);
    let customer = testing::token(Role::Customer, Some("0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f"));
    let service = testing::token(Role::Service, None);

    let status = scoring
        .evaluate(testing::with_token(EvaluateRequest::default(), &customer))
        .await
        .expect_err("customers never call scoring");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = scoring
        .run_portfolio_review(testing::with_token(
            RunPortfolioReviewRequest::default(),
            &service,
        ))
        .await
        .expect_err("no request_id");
    assert_eq!(status.code(), Code::InvalidArgument);
    // Client streaming goes through the same auth layer.
    let stream = tokio_stream::iter([IngestSignalsRequest::default()]);
    let status = scoring.ingest_signals(stream).await.expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    app.stop().await.expect("clean stop");
}
