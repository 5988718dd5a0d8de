//! W3C trace context crosses the bus: the span that appended an event is the parent
//! of the consumer's handler span. Its own test binary, since it installs the
//! process-wide tracing subscriber. Runs the whole machinery as a service does
//! (`Events::start` + `consume`) and checks its metrics on the service's registry.

mod common;

use common::{Record, World, event_of, eventually};
use microloan_events::{Events, GroupStart, append};
use microloan_platform::{metrics::Metrics, telemetry, testing};
use opentelemetry::trace::{SpanKind, TraceContextExt, TraceId};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use uuid::Uuid;

fn handler_spans(exporter: &InMemorySpanExporter) -> Vec<SpanData> {
    exporter
        .get_finished_spans()
        .expect("spans")
        .into_iter()
        .filter(|span| span.name == "EVENT_TYPE_INSTALLMENT_DUE_SOON process")
        .collect()
}

#[tokio::test]
async fn the_span_that_appended_an_event_is_the_parent_of_the_handler_span() {
    let exporter = InMemorySpanExporter::default();
    let _telemetry =
        telemetry::init_with_exporter("events-trace-test", exporter.clone()).expect("init");
    let world = World::new(&testing::redis_url(), |_| {}).await;
    let server_metrics = Metrics::new();
    let mut events = Events::start(
        (*world.config).clone(),
        world.pool.clone(),
        world.cache.clone(),
        server_metrics.registry(),
    )
    .expect("start events");
    events.consume("trace-test", Record, GroupStart::Beginning);

    let producer_span = tracing::info_span!("ledger.disburse");
    let (trace_id, span_id) = {
        let context = producer_span.context();
        let span_context = context.span().span_context().clone();
        (span_context.trace_id(), span_context.span_id())
    };
    assert_ne!(trace_id, TraceId::INVALID);
    let customer = Uuid::new_v4();
    let pool = world.pool.clone();
    let appended = async move {
        let mut tx = pool.begin().await.expect("begin");
        let appended = append(&mut tx, "test", event_of(customer, 0))
            .await
            .expect("append");
        tx.commit().await.expect("commit");
        appended
    }
    .instrument(producer_span)
    .await;
    assert!(appended.event.traceparent.contains(&trace_id.to_string()));

    eventually("the handler span is exported", || async {
        !handler_spans(&exporter).is_empty()
    })
    .await;
    let spans = handler_spans(&exporter);
    let handler = &spans[0];
    assert_eq!(handler.span_kind, SpanKind::Consumer);
    assert_eq!(handler.span_context.trace_id(), trace_id);
    assert_eq!(handler.parent_span_id, span_id);
    // The span ends when the handler returns; the commit and XACK follow.
    eventually("the event is applied and acknowledged", || async {
        world.effects().await.len() == 1
            && server_metrics
                .render()
                .contains("events_consumed_total{group=\"trace-test\"} 1")
    })
    .await;

    // The metrics are on the server's registry, so /metrics serves them.
    let rendered = server_metrics.render();
    for line in [
        "events_published_total 1",
        "events_consumed_total{group=\"trace-test\"} 1",
        "events_outbox_backlog",
        "events_outbox_oldest_unpublished_age_seconds",
    ] {
        assert!(rendered.contains(line), "{line} missing from:\n{rendered}");
    }
    events.stop().await;
    world.finish().await;
}
