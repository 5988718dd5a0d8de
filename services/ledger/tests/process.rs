//! The `ledger` binary as a process: configuration errors and graceful shutdown.

use std::{
    process::{Command, Stdio},
    time::Duration,
};

use microloan_platform::testing;
use tokio::sync::mpsc;
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest,
};

const BINARY: &str = env!("CARGO_BIN_EXE_ledger");

fn run_with(env: &[(&str, &str)]) -> std::process::Output {
    Command::new(BINARY)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .expect("run ledger")
}

#[test]
fn a_missing_database_url_exits_64_naming_it() {
    let output = run_with(&[
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("AUTH_JWT_SECRET", testing::TEST_JWT_SECRET),
    ]);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

#[test]
fn a_malformed_listen_addr_exits_64_naming_it() {
    let output = run_with(&[
        ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledger"),
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("AUTH_JWT_SECRET", testing::TEST_JWT_SECRET),
        ("LISTEN_ADDR", "127.0.0.1:not-a-port"),
    ]);
    assert_eq!(output.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("LISTEN_ADDR"), "{stderr}");
}

#[test]
fn an_unknown_subcommand_exits_64() {
    let output = run_with(&[]);
    assert_eq!(output.status.code(), Some(64), "config checked first");
    let output = Command::new(BINARY)
        .arg("frobnicate")
        .output()
        .expect("run");
    assert_eq!(output.status.code(), Some(64));
}

fn list_services() -> ServerReflectionRequest {
    ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    }
}

/// SIGTERM while a call is in flight: the call completes, new calls are refused,
/// the process exits 0. The in-flight call is a reflection stream that the client
/// holds open across the signal.
#[tokio::test]
async fn sigterm_drains_in_flight_calls_refuses_new_ones_and_exits_0() {
    let mut env = testing::test_env("ledger");
    let grpc_addr = testing::free_local_addr().await;
    env.insert("LISTEN_ADDR".into(), grpc_addr.to_string());
    env.insert("ADMIN_LISTEN_ADDR".into(), "127.0.0.1:0".into());
    let database_url = env["DATABASE_URL"].clone();
    let mut child = tokio::process::Command::new(BINARY)
        .env_clear()
        .envs(&env)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ledger");
    let pid = child.id().expect("pid");

    let url = format!("http://{grpc_addr}");
    let channel = {
        let mut attempts = 0;
        loop {
            match tonic::transport::Channel::from_shared(url.clone())
                .expect("url")
                .connect()
                .await
            {
                Ok(channel) => break channel,
                Err(_) if attempts < 250 => {
                    attempts += 1;
                    tokio::time::sleep(Duration::from_millis(40)).await;
                }
                Err(err) => panic!("ledger never listened: {err}"),
            }
        }
    };

    let (requests, request_stream) = mpsc::channel(4);
    requests.send(list_services()).await.expect("send");
    let mut reflection = ServerReflectionClient::new(channel.clone());
    let mut responses = reflection
        .server_reflection_info(tokio_stream::wrappers::ReceiverStream::new(request_stream))
        .await
        .expect("open stream")
        .into_inner();
    assert!(responses.message().await.expect("first").is_some());

    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());

    // New connections are refused once the listener has closed.
    let mut refused = false;
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(grpc_addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(refused, "listener still accepting after SIGTERM");
    // New calls, even on the already-open connection, are refused. HTTP/2 shuts down in
    // two steps (GOAWAY with the maximum stream id, a PING round trip, then the final
    // GOAWAY), so a call sent in the first instant after SIGTERM may still be served:
    // poll, bounded, until the client has seen the final GOAWAY.
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let mut refused_call = None;
    for _ in 0..100 {
        match health
            .check(tonic_health::pb::HealthCheckRequest::default())
            .await
        {
            Ok(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            Err(status) => {
                refused_call = Some(status);
                break;
            }
        }
    }
    let refused_call = refused_call.expect("new calls still served 2 s after SIGTERM");
    // GOAWAY refuses the stream (CANCELLED); a reconnect finds no listener (UNAVAILABLE).
    assert!(
        matches!(
            refused_call.code(),
            tonic::Code::Cancelled | tonic::Code::Unavailable
        ),
        "{refused_call:?}"
    );

    // The call that was in flight still gets its answers and completes normally.
    requests
        .send(list_services())
        .await
        .expect("send after SIGTERM");
    assert!(responses.message().await.expect("second").is_some());
    drop(requests);
    assert!(responses.message().await.expect("clean end").is_none());

    let exit = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .expect("exited within the grace period")
        .expect("wait");
    assert_eq!(exit.code(), Some(0));
    testing::drop_database(&database_url)
        .await
        .expect("drop db");
}

/// A real OTLP/gRPC collector endpoint that keeps the names of the spans it receives,
/// with the `service.name` of the resource they came from.
#[derive(Clone, Default)]
struct Collector {
    spans: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
}

#[tonic::async_trait]
impl opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceService
    for Collector
{
    async fn export(
        &self,
        request: tonic::Request<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest,
        >,
    ) -> Result<
        tonic::Response<
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse,
        >,
        tonic::Status,
    > {
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        let mut spans = self.spans.lock().expect("spans");
        for resource_spans in request.into_inner().resource_spans {
            let service_name = resource_spans
                .resource
                .iter()
                .flat_map(|resource| resource.attributes.iter())
                .find(|attribute| attribute.key == "service.name")
                .and_then(|attribute| attribute.value.as_ref()?.value.clone())
                .map(|value| match value {
                    Value::StringValue(name) => name,
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            for scope_spans in resource_spans.scope_spans {
                for span in scope_spans.spans {
                    spans.push((service_name.clone(), span.name));
                }
            }
        }
        Ok(tonic::Response::new(Default::default()))
    }
}

/// With OTEL_EXPORTER_OTLP_ENDPOINT set, the server's spans reach the collector, at the
/// latest when SIGTERM flushes them.
#[tokio::test]
async fn spans_are_exported_over_otlp_and_flushed_on_sigterm() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
    let collector = Collector::default();
    let collector_listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let collector_addr = collector_listener.local_addr().expect("addr");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(
                collector_listener,
            )),
    );

    let mut env = testing::test_env("ledger");
    let grpc_addr = testing::free_local_addr().await;
    env.insert("LISTEN_ADDR".into(), grpc_addr.to_string());
    env.insert("ADMIN_LISTEN_ADDR".into(), "127.0.0.1:0".into());
    env.insert(
        "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
        format!("http://{collector_addr}"),
    );
    env.insert("OTEL_SERVICE_NAME".into(), "ledger-under-test".into());
    env.insert("LOG_FORMAT".into(), "json".into());
    let database_url = env["DATABASE_URL"].clone();
    let mut child = tokio::process::Command::new(BINARY)
        .env_clear()
        .envs(&env)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn ledger");

    let url = format!("http://{grpc_addr}");
    let mut health = None;
    for _ in 0..250 {
        if let Ok(channel) = tonic::transport::Channel::from_shared(url.clone())
            .expect("url")
            .connect()
            .await
        {
            health = Some(tonic_health::pb::health_client::HealthClient::new(channel));
            break;
        }
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    let mut health = health.expect("ledger never listened");
    health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health");

    let pid = child.id().expect("pid");
    let status = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let output = tokio::time::timeout(Duration::from_secs(15), async {
        use tokio::io::AsyncReadExt;
        let mut stderr = String::new();
        let mut pipe = child.stderr.take().expect("stderr");
        pipe.read_to_string(&mut stderr).await.expect("read stderr");
        (child.wait().await.expect("wait"), stderr)
    })
    .await
    .expect("exited");
    assert_eq!(output.0.code(), Some(0));

    let spans = collector.spans.lock().expect("spans").clone();
    assert!(
        spans.contains(&(
            "ledger-under-test".to_owned(),
            "/grpc.health.v1.Health/Check".to_owned()
        )),
        "{spans:?}"
    );
    // LOG_FORMAT=json: every log line on stderr is one JSON object.
    let log_lines: Vec<&str> = output.1.lines().filter(|line| !line.is_empty()).collect();
    assert!(!log_lines.is_empty());
    for line in log_lines {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not a JSON log line: {line}"
        );
    }
    testing::drop_database(&database_url)
        .await
        .expect("drop db");
}
