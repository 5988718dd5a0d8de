//! Prometheus metrics for every RPC (count and latency histogram by method and status
//! code) and the admin HTTP server that exposes them at `/metrics`.
//!
//! The status code of a gRPC call is in the response headers when the call failed
//! before any message ("trailers-only"), and otherwise in the trailers at the end of
//! the body; the body is wrapped so both are counted, and a body dropped before its
//! trailers (the client went away) counts as CANCELLED.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Instant,
};

use axum::{Router, extract::State, routing::get};
use futures::future::BoxFuture;
use http_body::{Body as HttpBody, Frame};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};
use tonic::{Code, body::Body};
use tracing::Instrument;

use crate::{
    auth::{PermissionTable, is_open_path},
    telemetry,
};

/// Latency buckets in seconds: 0.5 ms to 10 s, dense where a healthy RPC lands.
const LATENCY_BUCKETS_SECONDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The metrics of one server process. Each server has its own registry, so several
/// servers in one test process never share counters.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    handled_total: IntCounterVec,
    handling_seconds: HistogramVec,
    in_flight: IntGauge,
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let handled_total = IntCounterVec::new(
            Opts::new(
                "grpc_server_handled_total",
                "RPCs completed on the server, by method and gRPC status code",
            ),
            &["grpc_service", "grpc_method", "grpc_code"],
        )
        .expect("static metric definition is valid");
        let handling_seconds = HistogramVec::new(
            HistogramOpts::new(
                "grpc_server_handling_seconds",
                "Time from request headers to the end of the response, by method and code",
            )
            .buckets(LATENCY_BUCKETS_SECONDS.to_vec()),
            &["grpc_service", "grpc_method", "grpc_code"],
        )
        .expect("static metric definition is valid");
        let in_flight = IntGauge::new("grpc_server_in_flight", "RPCs being served right now")
            .expect("static metric definition is valid");
        for collector in [
            Box::new(handled_total.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(handling_seconds.clone()),
            Box::new(in_flight.clone()),
        ] {
            registry
                .register(collector)
                .expect("each metric is registered once");
        }
        Self {
            registry,
            handled_total,
            handling_seconds,
            in_flight,
        }
    }

    /// The registry behind `/metrics`, for libraries that add their own metrics (the
    /// events relay and consumers).
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        String::from_utf8(buffer).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Serves `GET /metrics` until `shutdown` resolves.
pub async fn serve_admin(
    listener: tokio::net::TcpListener,
    metrics: Metrics,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(render_metrics))
        .with_state(metrics);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn render_metrics(State(metrics): State<Metrics>) -> String {
    metrics.render()
}

/// Labels of one call. Paths outside the service's known methods are folded into
/// `unknown` so a client cannot grow the label set without bound.
fn labels(path: &str, known: &PermissionTable) -> (String, String) {
    if !(is_open_path(path) || known.roles(path).is_some()) {
        return ("unknown".into(), "unknown".into());
    }
    let trimmed = path.trim_start_matches('/');
    match trimmed.split_once('/') {
        Some((service, method)) => (service.to_owned(), method.to_owned()),
        None => ("unknown".into(), "unknown".into()),
    }
}

/// Records one call exactly once, whichever way it ends: the first `finish` counts,
/// and a call dropped before it finished (the client went away before the response or
/// its trailers) counts as CANCELLED, so `grpc_server_in_flight` never drifts.
struct CallRecord {
    metrics: Metrics,
    service: String,
    method: String,
    started: Instant,
    span: tracing::Span,
    finished: bool,
}

impl CallRecord {
    fn finish(&mut self, code: Code) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let elapsed = self.started.elapsed().as_secs_f64();
        let code_name = code_label(code);
        self.metrics
            .handled_total
            .with_label_values(&[&self.service, &self.method, code_name])
            .inc();
        self.metrics
            .handling_seconds
            .with_label_values(&[&self.service, &self.method, code_name])
            .observe(elapsed);
        self.metrics.in_flight.dec();
        self.span.record("rpc.grpc.status_code", code as i32);
        tracing::debug!(parent: &self.span, grpc_code = code_name, elapsed_ms = elapsed * 1e3, "rpc finished");
    }
}

impl Drop for CallRecord {
    fn drop(&mut self) {
        self.finish(Code::Cancelled);
    }
}

/// The code names of the gRPC spec (`OK`, `CANCELLED` → `Canceled` as grpc-go spells
/// them), so dashboards made for go-grpc-prometheus work unchanged.
fn code_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

fn code_from_headers(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .map(|value| Code::from_bytes(value.as_bytes()))
}

pin_project_lite::pin_project! {
    /// A response body that records its call when the trailers arrive (or, through
    /// `CallRecord`'s drop, as CANCELLED when it is dropped before them).
    struct RecordingBody {
        #[pin]
        inner: Body,
        record: CallRecord,
    }
}

impl HttpBody for RecordingBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.record
                        .finish(code_from_headers(trailers).unwrap_or(Code::Unknown));
                }
            }
            Poll::Ready(Some(Err(_))) => this.record.finish(Code::Internal),
            Poll::Ready(None) => this.record.finish(Code::Unknown),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Tower layer: one tracing span per call, continuing the caller's W3C trace, plus
/// the RPC metrics. Outermost layer, so refused calls (auth, limits) are seen too.
#[derive(Debug, Clone)]
pub struct ObserveLayer {
    metrics: Metrics,
    known: Arc<PermissionTable>,
}

impl ObserveLayer {
    pub fn new(metrics: Metrics, known: PermissionTable) -> Self {
        Self {
            metrics,
            known: Arc::new(known),
        }
    }
}

impl<S> tower_layer::Layer<S> for ObserveLayer {
    type Service = ObserveService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        ObserveService {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ObserveService<S> {
    inner: S,
    layer: ObserveLayer,
}

impl<S> tower_service::Service<http::Request<Body>> for ObserveService<S>
where
    S: tower_service::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let path = request.uri().path().to_owned();
        let (service, method) = labels(&path, &self.layer.known);
        let span = tracing::info_span!(
            "grpc.server",
            otel.name = %path,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        telemetry::continue_remote_trace(&span, request.headers());
        self.layer.metrics.in_flight.inc();
        let mut record = CallRecord {
            metrics: self.layer.metrics.clone(),
            service,
            method,
            started: Instant::now(),
            span: span.clone(),
            finished: false,
        };
        let future = self.inner.call(request);
        Box::pin(
            async move {
                let response = future.await;
                match response {
                    Ok(response) => {
                        if let Some(code) = code_from_headers(response.headers()) {
                            record.finish(code);
                            return Ok(response);
                        }
                        let (parts, body) = response.into_parts();
                        let body = Body::new(RecordingBody {
                            inner: body,
                            record,
                        });
                        Ok(http::Response::from_parts(parts, body))
                    }
                    Err(err) => {
                        record.finish(Code::Internal);
                        Err(err)
                    }
                }
            }
            .instrument(span),
        )
    }
}
