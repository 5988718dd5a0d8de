//! W3C trace context crosses a gRPC call: the server's span joins the caller's trace.
//! Its own test binary, since it installs the process-wide tracing subscriber.

use std::time::Duration;

use ledger::Ledger;
use microloan_platform::{
    auth::TokenKeys,
    client::{self, ClientOptions},
    telemetry,
    testing::{self, TEST_JWT_SECRET},
};
use microloan_proto::ledger::v1::{
    GetBusinessDateRequest, ledger_service_client::LedgerServiceClient,
};
use opentelemetry::trace::{SpanKind, TraceContextExt, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

const SERVER_SPAN: &str = "/microloan.ledger.v1.LedgerService/GetBusinessDate";

async fn server_spans(exporter: &InMemorySpanExporter, count: usize) -> Vec<SpanData> {
    for _ in 0..200 {
        let spans: Vec<SpanData> = exporter
            .get_finished_spans()
            .expect("spans")
            .into_iter()
            .filter(|span| span.name == SERVER_SPAN)
            .collect();
        if spans.len() >= count {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("server spans never arrived");
}

#[tokio::test]
async fn a_peer_call_keeps_the_callers_trace_id_on_the_server() {
    let exporter = InMemorySpanExporter::default();
    let _telemetry = telemetry::init_with_exporter("trace-test", exporter.clone()).expect("init");
    let app = testing::spawn::<Ledger>(&[]).await;

    // The caller side, as a service calls its peer: the platform client.
    let options = ClientOptions::new(
        "account",
        TokenKeys::from_secret(TEST_JWT_SECRET.as_bytes()),
    );
    let mut ledger =
        LedgerServiceClient::new(client::connect(&app.url(), &options).expect("connect"));
    let caller_span = tracing::info_span!("account.borrow");
    let (caller_trace_id, caller_span_id) = {
        let context = caller_span.context();
        let span_context = context.span().span_context().clone();
        (span_context.trace_id(), span_context.span_id())
    };
    assert_ne!(caller_trace_id, TraceId::INVALID);
    // The service token gets the call past auth.
    ledger
        .get_business_date(GetBusinessDateRequest::default())
        .instrument(caller_span)
        .await
        .expect("a service may read the business date");

    let spans = server_spans(&exporter, 1).await;
    let server = &spans[0];
    assert_eq!(server.span_kind, SpanKind::Server);
    assert_eq!(server.span_context.trace_id(), caller_trace_id);
    assert_eq!(server.parent_span_id, caller_span_id);

    // Control: a call that carries no trace context starts a trace of its own.
    let mut plain = LedgerServiceClient::new(app.channel().await);
    let _ = plain
        .get_business_date(GetBusinessDateRequest::default())
        .await;
    let spans = server_spans(&exporter, 2).await;
    let other = spans
        .iter()
        .find(|span| span.span_context.span_id() != server.span_context.span_id())
        .expect("second server span");
    assert_ne!(other.span_context.trace_id(), caller_trace_id);
    app.stop().await.expect("clean stop");
}
