//! The notification service served in-process on port 0, against real Postgres and Redis.

use microloan_platform::{auth::Role, testing};
use microloan_proto::notification::v1::{
    GetPreferencesRequest, SendRequest, SubscribeRequest,
    notification_service_client::NotificationServiceClient,
    notification_service_server::SERVICE_NAME,
};
use notification::Notification;
use tonic::Code;

#[tokio::test]
async fn serves_health_and_reflection() {
    let app = testing::spawn::<Notification>(&[]).await;
    testing::assert_serves_health_and_reflection(&app, SERVICE_NAME).await;
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn customers_may_subscribe_but_not_send() {
    let app = testing::spawn::<Notification>(&[]).await;
    let mut notification = NotificationServiceClient::new(app.channel().await);
    let customer = testing::token(Role::Customer, Some("0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f"));

    let status = notification
        .send(testing::with_token(SendRequest::default(), &customer))
        .await
        .expect_err("customers do not send");
    assert_eq!(status.code(), Code::PermissionDenied);
    let status = notification
        .subscribe(testing::with_token(SubscribeRequest::default(), &customer))
        .await
        .expect_err("no customer_id");
    assert_eq!(status.code(), Code::InvalidArgument);
    let status = notification
        .get_preferences(GetPreferencesRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(status.code(), Code::Unauthenticated);
    app.stop().await.expect("clean stop");
}
