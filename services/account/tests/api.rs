//! The account service served in-process on port 0, against real Postgres and Redis.

use account::Account;
use microloan_platform::{auth::Role, testing};
use microloan_proto::account::v1::{
    AdjustCreditLineRequest, GetCustomerRequest, account_service_client::AccountServiceClient,
    account_service_server::SERVICE_NAME,
};
use tonic::Code;

const CUSTOMER_ID: &str = "0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f";

#[tokio::test]
async fn serves_health_and_reflection() {
    let app = testing::spawn::<Account>(&[]).await;
    testing::assert_serves_health_and_reflection(&app, SERVICE_NAME).await;
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn customers_pass_auth_on_their_rpcs_but_not_on_staff_ones() {
    let app = testing::spawn::<Account>(&[]).await;
    let mut account = AccountServiceClient::new(app.channel().await);
    let customer = testing::token(Role::Customer, Some(CUSTOMER_ID));
    let operator = testing::token(Role::Operator, None);

    let no_token = account
        .get_customer(GetCustomerRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(no_token.code(), Code::Unauthenticated);
    for token in [&customer, &operator] {
        let status = account
            .get_customer(testing::with_token(GetCustomerRequest::default(), token))
            .await
            .expect_err("not implemented yet");
        assert_eq!(status.code(), Code::Unimplemented, "{}", status.message());
    }
    // Line adjustments come from scoring's policy or an operator, never a customer.
    let status = account
        .adjust_credit_line(testing::with_token(
            AdjustCreditLineRequest::default(),
            &customer,
        ))
        .await
        .expect_err("customer may not adjust");
    assert_eq!(status.code(), Code::PermissionDenied);
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn a_bad_peer_url_stops_start_up_with_its_name() {
    let vars = {
        let mut vars = testing::test_env("account");
        vars.insert("LEDGER_URL".into(), "ledger:50053".into());
        vars
    };
    let err = testing::config_from::<Account>(&vars).expect_err("no scheme");
    assert_eq!(err.variable, "LEDGER_URL");
}
