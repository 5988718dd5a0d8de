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
            .expect_err("an empty customer_id");
        // Past auth: the handler itself refuses the empty id.
        assert_eq!(status.code(), Code::InvalidArgument, "{}", status.message());
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

#[test]
fn pii_keys_are_required_base64_of_32_bytes_and_the_lookup_key_is_its_own() {
    let base = testing::test_env("account");
    let cases: [(&str, Option<&str>, &str); 5] = [
        ("PII_ENCRYPTION_KEY", None, "PII_ENCRYPTION_KEY"),
        ("PII_LOOKUP_KEY", None, "PII_LOOKUP_KEY"),
        ("PII_ENCRYPTION_KEY", Some("c2hvcnQ="), "PII_ENCRYPTION_KEY"),
        (
            "PII_DECRYPT_ONLY_KEY",
            Some("not base64!"),
            "PII_DECRYPT_ONLY_KEY",
        ),
        (
            "PII_LOOKUP_KEY",
            Some(testing::TEST_PII_ENCRYPTION_KEY),
            "PII_LOOKUP_KEY",
        ),
    ];
    for (variable, value, named) in cases {
        let mut vars = base.clone();
        match value {
            Some(value) => vars.insert(variable.to_owned(), value.to_owned()),
            None => vars.remove(variable),
        };
        let err = testing::config_from::<Account>(&vars).expect_err(variable);
        assert_eq!(err.variable, named, "{variable}={value:?}");
        assert!(
            !err.reason.contains(testing::TEST_PII_ENCRYPTION_KEY),
            "a key never appears in an error"
        );
    }
    assert!(testing::config_from::<Account>(&base).is_ok());
}
