//! Logs and traces. Logs go to stderr, human-readable or JSON lines. Every span is also
//! an OpenTelemetry span, exported over OTLP/gRPC when `OTEL_EXPORTER_OTLP_ENDPOINT` is
//! set; W3C `traceparent` travels in gRPC metadata so one request keeps one trace id
//! across services (see [`inject`] and [`extract`]).

use std::io::IsTerminal;

use opentelemetry::{
    Context, global,
    propagation::{Extractor, Injector},
    trace::TracerProvider as _,
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{SdkTracerProvider, SpanExporter},
};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::{CommonConfig, LogFormat};

/// Keeps the tracer provider alive; [`Telemetry::shutdown`] flushes buffered spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Flushes and stops span export. Blocking work, so it runs off the async workers.
    pub async fn shutdown(self) {
        let provider = self.provider;
        match tokio::task::spawn_blocking(move || provider.shutdown()).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => eprintln!("telemetry flush failed: {err}"),
            Err(err) => eprintln!("telemetry flush panicked: {err}"),
        }
    }
}

/// Installs the global subscriber and propagator for a service process. Must run inside
/// the Tokio runtime (the OTLP exporter's gRPC client lives on it).
pub fn init(config: &CommonConfig) -> anyhow::Result<Telemetry> {
    let mut builder = SdkTracerProvider::builder().with_resource(resource(config));
    if let Some(endpoint) = &config.otlp_endpoint {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.clone())
            .build()?;
        builder = builder.with_batch_exporter(exporter);
    }
    install(
        builder.build(),
        &config.otel_service_name,
        config.log_format,
    )
}

/// Like [`init`] but exporting to the given exporter synchronously: for tests that
/// assert on the spans a call produced.
pub fn init_with_exporter<E: SpanExporter + 'static>(
    service_name: &str,
    exporter: E,
) -> anyhow::Result<Telemetry> {
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build();
    install(provider, service_name, LogFormat::Human)
}

fn resource(config: &CommonConfig) -> Resource {
    Resource::builder()
        .with_service_name(config.otel_service_name.clone())
        .build()
}

fn install(
    provider: SdkTracerProvider,
    service_name: &str,
    log_format: LogFormat,
) -> anyhow::Result<Telemetry> {
    global::set_text_map_propagator(TraceContextPropagator::new());
    global::set_tracer_provider(provider.clone());
    let tracer = provider.tracer(service_name.to_owned());
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let otel = tracing_opentelemetry::layer().with_tracer(tracer);
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    match log_format {
        LogFormat::Human => registry
            .with(
                tracing_subscriber::fmt::layer()
                    // Colour only on a terminal: logs redirected to a file stay plain.
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_writer(std::io::stderr),
            )
            .try_init()?,
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_writer(std::io::stderr),
            )
            .try_init()?,
    }
    Ok(Telemetry { provider })
}

struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::header::HeaderName::from_bytes(key.as_bytes()),
            http::header::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|value| value.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes the current span's trace context (`traceparent`, `tracestate`) into headers.
pub fn inject(headers: &mut http::HeaderMap) {
    let context = tracing::Span::current().context();
    global::get_text_map_propagator(|propagator| {
        propagator.inject_context(&context, &mut HeaderInjector(headers));
    });
}

/// Reads a caller's trace context from headers (empty context when there is none).
pub fn extract(headers: &http::HeaderMap) -> Context {
    global::get_text_map_propagator(|propagator| propagator.extract(&HeaderExtractor(headers)))
}

/// Makes `span` a child of the remote caller's span found in `headers`.
pub fn continue_remote_trace(span: &tracing::Span, headers: &http::HeaderMap) {
    let parent = extract(headers);
    // Fails only when the span is disabled by the filter; then there is nothing to link.
    let _ = span.set_parent(parent);
}

/// The current span's trace id as 32 hex digits (all zeros outside any trace).
pub fn current_trace_id() -> String {
    use opentelemetry::trace::TraceContextExt;
    tracing::Span::current()
        .context()
        .span()
        .span_context()
        .trace_id()
        .to_string()
}
