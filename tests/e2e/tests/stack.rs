//! The harness itself, on the four real binaries: they start on free ports, answer
//! through gRPC, survive SIGKILL and a restart on the same database, and drain on
//! SIGTERM.

use e2e::{Service, Stack, operator_token, with_token};
use microloan_proto::ledger::v1::{
    GetBusinessDateRequest, GetTrialBalanceRequest, VerifyIntegrityRequest,
    ledger_service_client::LedgerServiceClient,
};

#[tokio::test]
async fn four_services_serve_survive_sigkill_and_drain_on_sigterm() {
    let mut stack = Stack::start().await.expect("the four services start");
    let operator = operator_token();
    let mut ledger = LedgerServiceClient::new(stack.channel(Service::Ledger));

    let before = ledger
        .get_business_date(with_token(GetBusinessDateRequest {}, &operator))
        .await
        .expect("business date")
        .into_inner();
    assert_eq!(before.time_zone, "Asia/Shanghai");
    let trial = ledger
        .get_trial_balance(with_token(GetTrialBalanceRequest::default(), &operator))
        .await
        .expect("trial balance")
        .into_inner();
    assert!(trial.balanced, "an empty ledger balances: {trial:?}");

    stack.kill(Service::Ledger).await.expect("SIGKILL");
    let refused = ledger
        .get_business_date(with_token(GetBusinessDateRequest {}, &operator))
        .await
        .expect_err("a killed ledger does not answer");
    // UNAVAILABLE once the client knows the connection is gone; CANCELLED when the call
    // raced the closing connection (hyper: "connection closed").
    assert!(
        matches!(
            refused.code(),
            tonic::Code::Unavailable | tonic::Code::Cancelled
        ),
        "{refused:?}"
    );

    stack.restart(Service::Ledger).await.expect("restart");
    let after = ledger
        .get_business_date(with_token(GetBusinessDateRequest {}, &operator))
        .await
        .expect("business date after restart")
        .into_inner();
    assert_eq!(after.business_date, before.business_date, "same database");
    let integrity = ledger
        .verify_integrity(with_token(VerifyIntegrityRequest::default(), &operator))
        .await
        .expect("integrity")
        .into_inner();
    assert!(integrity.ok, "{integrity:?}");

    stack
        .stop()
        .await
        .expect("every service drains and exits 0");
}
