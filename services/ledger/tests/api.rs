//! The ledger served in-process on port 0, against real Postgres and Redis.

use std::time::Duration;

use ledger::Ledger;
use microloan_platform::{
    auth::{Claims, ISSUER, Role, TokenKeys, unix_now},
    testing::{self, TEST_JWT_SECRET},
};
use microloan_proto::ledger::v1::{
    DisburseRequest, GetBusinessDateRequest, RunEndOfDayRequest,
    ledger_service_client::LedgerServiceClient, ledger_service_server::SERVICE_NAME,
};
use tonic::Code;

#[tokio::test]
async fn serves_health_and_reflection() {
    let app = testing::spawn::<Ledger>(&[]).await;
    testing::assert_serves_health_and_reflection(&app, SERVICE_NAME).await;
    app.stop().await.expect("clean stop");
}

fn expired_token() -> String {
    TokenKeys::from_secret(TEST_JWT_SECRET.as_bytes())
        .sign(&Claims {
            sub: "alice".into(),
            role: Role::Operator,
            customer_id: None,
            iss: ISSUER.into(),
            iat: unix_now() - 7200,
            exp: unix_now() - 3600,
        })
        .expect("sign")
}

fn forged_token() -> String {
    TokenKeys::from_secret(b"not-the-server-secret-not-the-server-secret")
        .mint("mallory", Role::Operator, None, Duration::from_secs(60))
        .expect("mint")
}

fn error_info(status: &tonic::Status) -> (String, String) {
    use tonic_types::StatusExt;
    let info = status
        .get_error_details()
        .error_info()
        .cloned()
        .unwrap_or_else(|| panic!("no ErrorInfo on {status:?}"));
    (info.reason, info.domain)
}

#[tokio::test]
async fn auth_gives_each_refusal_its_code_reason_and_the_ledger_domain() {
    let app = testing::spawn::<Ledger>(&[]).await;
    let mut ledger = LedgerServiceClient::new(app.channel().await);

    let no_token = ledger
        .run_end_of_day(RunEndOfDayRequest::default())
        .await
        .expect_err("no token");
    assert_eq!(no_token.code(), Code::Unauthenticated);
    assert_eq!(
        error_info(&no_token),
        ("TOKEN_MISSING".into(), "microloan.ledger".into())
    );

    let customer = testing::token(Role::Customer, Some("0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f"));
    let cases = [
        (forged_token(), Code::Unauthenticated, "TOKEN_BAD_SIGNATURE"),
        (expired_token(), Code::Unauthenticated, "TOKEN_EXPIRED"),
        ("garbage".to_owned(), Code::Unauthenticated, "TOKEN_INVALID"),
        // Customers never reach the ledger directly.
        (customer, Code::PermissionDenied, "ROLE_NOT_ALLOWED"),
    ];
    for (token, want_code, want_reason) in cases {
        let status = ledger
            .run_end_of_day(testing::with_token(RunEndOfDayRequest::default(), &token))
            .await
            .expect_err(want_reason);
        assert_eq!(status.code(), want_code, "{}", status.message());
        assert_eq!(
            error_info(&status),
            (want_reason.to_owned(), "microloan.ledger".to_owned())
        );
    }
    // RunEndOfDay is "Roles: operator, service": both get past auth.
    for role in [Role::Operator, Role::Service] {
        let token = testing::token(role, None);
        let status = ledger
            .run_end_of_day(testing::with_token(RunEndOfDayRequest::default(), &token))
            .await
            .expect_err("past auth");
        assert_ne!(status.code(), Code::PermissionDenied, "{role:?}");
        assert_ne!(status.code(), Code::Unauthenticated, "{role:?}");
    }
    // Disburse is "Roles: service": operators move money through account instead.
    let operator = testing::token(Role::Operator, None);
    let status = ledger
        .disburse(testing::with_token(DisburseRequest::default(), &operator))
        .await
        .expect_err("operators may not disburse");
    assert_eq!(status.code(), Code::PermissionDenied);
    assert_eq!(
        error_info(&status),
        ("ROLE_NOT_ALLOWED".into(), "microloan.ledger".into())
    );
    app.stop().await.expect("clean stop");
}

#[tokio::test]
async fn metrics_count_each_call_by_method_and_code() {
    let app = testing::spawn::<Ledger>(&[]).await;
    let mut ledger = LedgerServiceClient::new(app.channel().await);
    let operator = testing::token(Role::Operator, None);
    for _ in 0..3 {
        let _ = ledger
            .get_business_date(GetBusinessDateRequest::default())
            .await;
    }
    let _ = ledger
        .get_business_date(testing::with_token(
            GetBusinessDateRequest::default(),
            &operator,
        ))
        .await;

    let metrics = testing::http_get(app.admin_addr, "/metrics").await;
    let line = |code: &str| {
        format!(
            "grpc_server_handled_total{{grpc_code=\"{code}\",grpc_method=\"GetBusinessDate\",grpc_service=\"{SERVICE_NAME}\"}}"
        )
    };
    assert!(
        metrics.contains(&format!("{} 3", line("Unauthenticated"))),
        "{metrics}"
    );
    assert!(metrics.contains(&format!("{} 1", line("OK"))), "{metrics}");
    let latency_count = format!(
        "grpc_server_handling_seconds_count{{grpc_code=\"Unauthenticated\",grpc_method=\"GetBusinessDate\",grpc_service=\"{SERVICE_NAME}\"}} 3"
    );
    assert!(metrics.contains(&latency_count), "{metrics}");
    app.stop().await.expect("clean stop");
}

/// A client whose connection dies mid-call is counted as Canceled, and the in-flight
/// gauge comes back to zero.
#[tokio::test]
async fn a_call_cut_off_by_its_client_counts_as_canceled() {
    use std::sync::{Arc, Mutex};
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest,
    };
    let app = testing::spawn::<Ledger>(&[]).await;
    // Keep a second handle on the client's socket so the test can cut it.
    let socket: Arc<Mutex<Option<std::net::TcpStream>>> = Arc::default();
    let connector_socket = socket.clone();
    let grpc_addr = app.grpc_addr;
    let channel = tonic::transport::Endpoint::from_shared(app.url())
        .expect("url")
        .connect_with_connector(tower::service_fn(move |_: http::Uri| {
            let connector_socket = connector_socket.clone();
            async move {
                let stream = std::net::TcpStream::connect(grpc_addr)?;
                stream.set_nonblocking(true)?;
                *connector_socket.lock().expect("socket") = Some(stream.try_clone()?);
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::TcpStream::from_std(stream)?,
                ))
            }
        }))
        .await
        .expect("connect");
    let (requests, request_stream) = tokio::sync::mpsc::channel(1);
    requests
        .send(ServerReflectionRequest {
            host: String::new(),
            message_request: Some(MessageRequest::ListServices(String::new())),
        })
        .await
        .expect("send");
    let mut responses = ServerReflectionClient::new(channel)
        .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(request_stream))
        .await
        .expect("open stream")
        .into_inner();
    assert!(responses.message().await.expect("answer").is_some());
    let metrics = testing::http_get(app.admin_addr, "/metrics").await;
    assert!(metrics.contains("grpc_server_in_flight 1"), "{metrics}");

    socket
        .lock()
        .expect("socket")
        .take()
        .expect("connected")
        .shutdown(std::net::Shutdown::Both)
        .expect("cut the connection");

    let canceled = "grpc_server_handled_total{grpc_code=\"Canceled\",grpc_method=\"ServerReflectionInfo\",grpc_service=\"grpc.reflection.v1.ServerReflection\"} 1";
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = testing::http_get(app.admin_addr, "/metrics").await;
        if metrics.contains(canceled) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(metrics.contains(canceled), "{metrics}");
    assert!(metrics.contains("grpc_server_in_flight 0"), "{metrics}");
    drop((requests, responses));
    app.stop().await.expect("clean stop");
}
