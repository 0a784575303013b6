//! Logs and traces: `tracing` with JSON (or text) logs that carry the current OpenTelemetry
//! trace and span ids, and spans exported over OTLP/gRPC with a W3C TraceContext propagator.

use std::{fmt, time::Duration};

use opentelemetry::{
    KeyValue,
    trace::{SpanId, TraceContextExt, TraceId, TracerProvider as _},
};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{Sampler, SdkTracerProvider},
};
use tracing::{Event, Subscriber};
use tracing_subscriber::{
    EnvFilter, Layer, Registry,
    filter::LevelFilter,
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{self, Writer},
    },
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
};

use crate::{
    config::{LogFormat, ServiceArgs, TelemetryArgs, TracesSampler},
    error::{Error, Result},
};

/// How long the exporter may take per batch, and the provider to flush at shutdown.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// Installs the global tracing subscriber and OpenTelemetry tracer provider for
/// `service_name` (overridden by `OTEL_SERVICE_NAME`) at `args.server.service_version`.
/// Call once per process, inside the Tokio runtime (the OTLP exporter needs it), and keep the
/// guard until the end: [`crate::server::GrpcServer::with_telemetry`] flushes it after draining.
pub fn init(service_name: &str, args: &ServiceArgs) -> Result<TelemetryGuard> {
    init_with(service_name, &args.server.service_version, &args.telemetry)
}

/// [`init`] with the version and telemetry settings given separately (tools, tests).
pub fn init_with(service_name: &str, service_version: &str, args: &TelemetryArgs) -> Result<TelemetryGuard> {
    // The default propagator is a no-op: without this, every service starts its own trace.
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());

    let log_filter = EnvFilter::builder()
        .parse(&args.log_filter)
        .map_err(|source| Error::LogFilter {
            filter: args.log_filter.clone(),
            source,
        })?;
    let json = args.log_format == LogFormat::Json;
    let fmt_layer = match args.log_format {
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .event_format(WithTraceIds {
                inner: format()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
                json,
            })
            .with_filter(log_filter)
            .boxed(),
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .event_format(WithTraceIds {
                inner: format(),
                json,
            })
            .with_filter(log_filter)
            .boxed(),
    };
    let mut layers: Vec<Box<dyn Layer<Registry> + Send + Sync>> = vec![fmt_layer];

    let provider = if args.otel_sdk_disabled {
        None
    } else {
        let name = args.otel_service_name.as_deref().unwrap_or(service_name);
        let resource = Resource::builder()
            .with_service_name(name.to_owned())
            .with_attribute(KeyValue::new("service.version", service_version.to_owned()))
            .build();
        let mut builder = SdkTracerProvider::builder()
            .with_resource(resource)
            .with_sampler(sampler(args));
        if let Some(endpoint) = &args.otel_exporter_otlp_endpoint {
            if tokio::runtime::Handle::try_current().is_err() {
                return Err(Error::NoRuntime("telemetry::init with an OTLP endpoint"));
            }
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(endpoint.clone())
                .with_timeout(EXPORT_TIMEOUT)
                .build()?;
            builder = builder.with_batch_exporter(exporter);
        }
        let provider = builder.build();
        opentelemetry::global::set_tracer_provider(provider.clone());
        // Spans are exported whatever RUST_LOG says about log lines; the exporter's own
        // transport (tonic, h2, hyper) logs at debug/trace and so never loops back into it.
        let otel_layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer(name.to_owned()))
            .with_filter(LevelFilter::INFO)
            .boxed();
        layers.push(otel_layer);
        Some(provider)
    };

    tracing_subscriber::registry().with(layers).try_init()?;
    tracing::info!(
        service = service_name,
        version = service_version,
        otlp_endpoint = args.otel_exporter_otlp_endpoint.as_deref().unwrap_or("none"),
        otel_disabled = args.otel_sdk_disabled,
        "telemetry initialised"
    );
    Ok(TelemetryGuard { provider })
}

fn format() -> format::Format {
    format::Format::default().with_ansi(false)
}

fn sampler(args: &TelemetryArgs) -> Sampler {
    let ratio = args.otel_traces_sampler_arg;
    let parent_based = |root: Sampler| Sampler::ParentBased(Box::new(root));
    match args.otel_traces_sampler {
        TracesSampler::AlwaysOn => Sampler::AlwaysOn,
        TracesSampler::AlwaysOff => Sampler::AlwaysOff,
        TracesSampler::TraceIdRatio => Sampler::TraceIdRatioBased(ratio),
        TracesSampler::ParentBasedAlwaysOn => parent_based(Sampler::AlwaysOn),
        TracesSampler::ParentBasedAlwaysOff => parent_based(Sampler::AlwaysOff),
        TracesSampler::ParentBasedTraceIdRatio => parent_based(Sampler::TraceIdRatioBased(ratio)),
    }
}

/// Flushes and shuts down the tracer provider. Prefer [`TelemetryGuard::shutdown`]; dropping
/// it does the same on a multi-thread runtime or outside any runtime.
#[must_use = "dropping the guard at once shuts tracing down"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl TelemetryGuard {
    /// A guard with nothing to flush (telemetry set up elsewhere, or not at all).
    pub fn noop() -> Self {
        Self { provider: None }
    }

    /// Exports buffered spans and stops the exporter. Safe on a current-thread runtime: the
    /// blocking shutdown runs on the blocking pool while this runtime keeps driving the
    /// exporter's connection.
    pub async fn shutdown(mut self) {
        if let Some(provider) = self.provider.take() {
            match tokio::task::spawn_blocking(move || provider.shutdown()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("telemetry: tracer provider shutdown: {e}"),
                Err(e) => eprintln!("telemetry: tracer provider shutdown task: {e}"),
            }
        }
    }
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        let Some(provider) = self.provider.take() else {
            return;
        };
        use tokio::runtime::{Handle, RuntimeFlavor};
        let result = match Handle::try_current().map(|h| h.runtime_flavor()) {
            Ok(RuntimeFlavor::MultiThread) => tokio::task::block_in_place(|| provider.shutdown()),
            // Blocking here would stall the very runtime that drives the exporter (5 s timeout,
            // spans lost), so refuse loudly instead.
            Ok(_) => {
                eprintln!("telemetry: guard dropped on a current-thread runtime; call shutdown().await");
                return;
            }
            Err(_) => provider.shutdown(),
        };
        if let Err(e) = result {
            eprintln!("telemetry: tracer provider shutdown: {e}");
        }
    }
}

/// The trace and span id of `id`'s OpenTelemetry span, if it has a valid one.
fn otel_ids(id: &tracing::span::Id) -> Option<(TraceId, SpanId)> {
    // The global dispatcher is reachable from inside an event callback (no re-entrancy guard
    // on the global fast path); a scoped one is not, and then logs simply lack the ids.
    let dispatch = tracing::dispatcher::get_default(Clone::clone);
    let cx = tracing_opentelemetry::get_otel_context(id, &dispatch)?;
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
}

/// Adds `trace_id` and `span_id` of the event's span to each line the inner format writes.
struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        let Some((trace_id, span_id)) = span.and_then(|s| otel_ids(&s.id())) else {
            return self.inner.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        let line = line.trim_end_matches('\n');
        match line.strip_suffix('}').filter(|_| self.json) {
            Some(object) => writeln!(
                writer,
                r#"{object},"trace_id":"{trace_id}","span_id":"{span_id}"}}"#
            ),
            None => writeln!(writer, "{line} trace_id={trace_id} span_id={span_id}"),
        }
    }
}
