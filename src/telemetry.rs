//! Logs and traces.
//!
//! Logs are human-readable in a terminal or one JSON object per line, filtered by `RUST_LOG` or `log.level`. Traces
//! go, when `telemetry.otlp_endpoint` names a collector, over OTLP/HTTP (protobuf) in batches sent from the tokio
//! runtime; then a JSON line logged inside a traced span carries that span's `trace_id` and `span_id`, in hex as the
//! collector shows them, so a trace leads to its log lines and a log line to its trace. Human lines leave them out:
//! they are read in a terminal, not joined with a trace store.
//!
//! The spans that follow a purchase (its HTTP request, its shard's handling, its journal append and batch, its
//! projection) are DEBUG spans, and each layer has a filter of its own. The log layer's is the configured level, so
//! at the usual `info` it never enables them; with no endpoint there is no trace layer at all, and creating one of
//! those spans is an atomic load that finds it disabled — no allocation, lock or formatting on the purchase path.
//! The trace layer, when there is one, takes this crate's spans from DEBUG, and INFO events inside them become events
//! on them. Other crates' spans stay out (ractor's span an actor's whole life, which is no request's trace).

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{ExporterBuildError, Protocol, WithExportConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor;
use opentelemetry_sdk::trace::{BatchConfigBuilder, Sampler, SdkTracerProvider, SpanData, SpanExporter};
use opentelemetry_sdk::{runtime, Resource};
use tracing::level_filters::LevelFilter;
use tracing::subscriber::Interest;
use tracing::{span, Event, Level, Metadata, Subscriber};
use tracing_subscriber::filter::{filter_fn, EnvFilter};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{self, FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::layer::{Context as LayerContext, Filter, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{Layer, Registry};

use crate::config::{ConfigError, LogFormat, Settings, TelemetrySettings};

/// A layer of the process's subscriber.
type Boxed = Box<dyn Layer<Registry> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("cannot build the OTLP exporter: {0}")]
    Exporter(#[from] ExporterBuildError),
}

/// What was set up, to be shut down once the service has stopped.
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
}

/// Sets up logging, and tracing if an endpoint is configured. Call it inside the tokio runtime: the trace exporter
/// runs there.
pub fn init(settings: &Settings) -> Result<Telemetry, TelemetryError> {
    let log = &settings.log;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&log.level));
    let mut layers = vec![log_layer(log.format, filter, std::io::stdout)];
    let url = settings.telemetry.traces_url()?;
    let traces = match &url {
        Some(url) => {
            // A journal batch and a projection run link every span they carry.
            let links = settings.journal.max_batch.max(settings.projector.batch);
            let provider = tracer_provider(&settings.telemetry, url, u32::try_from(links).unwrap_or(u32::MAX))?;
            layers.push(trace_layer(&provider));
            Some(provider)
        }
        None => None,
    };
    let _ = tracing_subscriber::registry().with(layers).try_init();
    if let Some(url) = url {
        let collector = collector_of(&url);
        tracing::info!(collector, sample_ratio = settings.telemetry.sample_ratio, "traces are exported");
    }
    Ok(Telemetry { traces })
}

impl Telemetry {
    /// Sends the spans still waiting and stops the exporter: called after the service stopped, so its last spans go
    /// too.
    pub async fn shutdown(self) {
        let Some(provider) = self.traces else { return };
        // The batch processor's shutdown blocks until its task on this runtime has sent what waits: not on a worker.
        let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        if let Ok(Err(err)) = stopped {
            tracing::warn!(error = %err, "not every span was exported at shutdown");
        }
    }
}

/// The collector's host and port, without whatever credentials its URL carries.
fn collector_of(url: &str) -> &str {
    let authority = url.trim_start_matches("http://").split('/').next().unwrap_or_default();
    authority.rsplit_once('@').map_or(authority, |(_, host)| host)
}

/// The log layer, writing to `writer`, with the configured level or `RUST_LOG` as its own filter.
fn log_layer<W>(format: LogFormat, filter: EnvFilter, writer: W) -> Boxed
where
    W: for<'writer> MakeWriter<'writer> + Send + Sync + 'static,
{
    let layer = fmt::layer().with_target(false).with_writer(writer);
    let filter = AskEveryTime(filter);
    match format {
        LogFormat::Human => layer.with_filter(filter).boxed(),
        LogFormat::Json => layer.json().flatten_event(true).map_event_format(TraceIds).with_filter(filter).boxed(),
    }
}

/// A layer's own filter, asked for every span and event it lets through rather than once per callsite.
///
/// tracing-subscriber carries each layer's verdict from `enabled` to that layer's `on_event` through a thread-local
/// (tokio-rs/tracing#2519). A callsite every layer takes for ever skips `enabled` and reads whatever the last
/// `enabled` on that thread left there; if nothing followed that one (`span_enabled!`, `log_enabled!`, a `log`
/// record no layer wanted), the log line is dropped unseen. With this filter no callsite is taken for ever, so
/// every line is decided afresh. A callsite it never takes stays so: a disabled span still costs one load.
struct AskEveryTime<F>(F);

impl<S, F: Filter<S>> Filter<S> for AskEveryTime<F> {
    fn enabled(&self, metadata: &Metadata<'_>, cx: &LayerContext<'_, S>) -> bool {
        self.0.enabled(metadata, cx)
    }

    fn callsite_enabled(&self, metadata: &'static Metadata<'static>) -> Interest {
        let interest = self.0.callsite_enabled(metadata);
        if interest.is_always() {
            Interest::sometimes()
        } else {
            interest
        }
    }

    fn event_enabled(&self, event: &Event<'_>, cx: &LayerContext<'_, S>) -> bool {
        self.0.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: LayerContext<'_, S>) {
        self.0.on_new_span(attrs, id, ctx);
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, ctx: LayerContext<'_, S>) {
        self.0.on_record(id, values, ctx);
    }

    fn on_enter(&self, id: &span::Id, ctx: LayerContext<'_, S>) {
        self.0.on_enter(id, ctx);
    }

    fn on_exit(&self, id: &span::Id, ctx: LayerContext<'_, S>) {
        self.0.on_exit(id, ctx);
    }

    fn on_close(&self, id: span::Id, ctx: LayerContext<'_, S>) {
        self.0.on_close(id, ctx);
    }
}

/// The trace layer: this crate's spans from DEBUG, with the INFO events inside them, exported by `provider`.
fn trace_layer(provider: &SdkTracerProvider) -> Boxed {
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("seckill"))
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(filter_fn(traced).with_max_level_hint(LevelFilter::DEBUG))
        .boxed()
}

/// What the trace layer takes. The exporter's own events are left out, so that exporting never traces itself.
fn traced(metadata: &Metadata<'_>) -> bool {
    let target = metadata.target();
    if metadata.is_span() {
        (target == "seckill" || target.starts_with("seckill::")) && *metadata.level() <= Level::DEBUG
    } else {
        !target.starts_with("opentelemetry") && *metadata.level() <= Level::INFO
    }
}

/// Spans sampled at `ratio` where a trace starts (a span with a parent follows its parent's decision), batched and
/// sent to `url` from a task on the tokio runtime.
fn tracer_provider(
    settings: &TelemetrySettings,
    url: &str,
    max_links: u32,
) -> Result<SdkTracerProvider, ExporterBuildError> {
    let timeout = Duration::from_millis(settings.export_timeout_ms);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(url)
        .with_timeout(timeout)
        .build()?;
    let batches = BatchConfigBuilder::default()
        .with_max_queue_size(settings.max_queue)
        .with_scheduled_delay(Duration::from_millis(settings.export_interval_ms))
        // The HTTP client gives up at `timeout` and says why; this is the backstop behind it.
        .with_max_export_timeout(timeout + Duration::from_secs(1))
        .build();
    let exporter = Reported { exporter, failing: AtomicBool::new(false) };
    let processor = BatchSpanProcessor::builder(exporter, runtime::Tokio).with_batch_config(batches).build();
    let resource = Resource::builder()
        .with_service_name(settings.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio))))
        .with_max_links_per_span(max_links)
        .with_resource(resource)
        .build())
}

/// The OTLP exporter, saying in the log when exports start failing and when they work again (the SDK keeps quiet),
/// so that a collector that is down or refuses is noticed.
#[derive(Debug)]
struct Reported {
    exporter: opentelemetry_otlp::SpanExporter,
    failing: AtomicBool,
}

impl SpanExporter for Reported {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let exported = self.exporter.export(batch).await;
        match &exported {
            Ok(()) if self.failing.swap(false, Ordering::Relaxed) => tracing::info!("spans are exported again"),
            Err(err) if !self.failing.swap(true, Ordering::Relaxed) => {
                tracing::warn!(error = %err, spans, "span export failed; spans are dropped until the collector takes them")
            }
            _ => {}
        }
        exported
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.exporter.shutdown_with_timeout(timeout)
    }

    fn force_flush(&mut self) -> OTelSdkResult {
        self.exporter.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.exporter.set_resource(resource);
    }
}

/// The JSON format, with the `trace_id` and `span_id` of the traced span the event was logged in, if any.
struct TraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for TraceIds<F>
where
    S: Subscriber + for<'lookup> LookupSpan<'lookup>,
    N: for<'writer> FormatFields<'writer> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        // The trace layer makes the entered span's context the current one (the log layer does not see those spans).
        let ids = Context::map_current(|cx| {
            let span = cx.span();
            let context = span.span_context();
            context.is_valid().then(|| (context.trace_id(), context.span_id()))
        });
        let Some((trace_id, span_id)) = ids else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        // The JSON format writes one object and a line break: the ids go in before the object's closing brace.
        match line.trim_end().strip_suffix('}') {
            Some(object) => writeln!(writer, "{object},\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\"}}"),
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    use super::*;

    /// Log lines written into memory.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'writer> MakeWriter<'writer> for Lines {
        type Writer = Lines;

        fn make_writer(&'writer self) -> Lines {
            self.clone()
        }
    }

    impl Lines {
        fn json(&self) -> Vec<serde_json::Value> {
            let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
            text.lines().map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}"))).collect()
        }
    }

    #[test]
    fn a_json_line_logged_inside_a_traced_span_carries_its_trace_and_span_ids() {
        // Spans are sampled and given ids whether or not anything exports them.
        let provider = SdkTracerProvider::builder().build();
        let lines = Lines::default();
        let layers = vec![log_layer(LogFormat::Json, EnvFilter::new("info"), lines.clone()), trace_layer(&provider)];
        let (trace_id, span_id) = tracing::subscriber::with_default(Registry::default().with(layers), || {
            tracing::info!(answer = 42, "outside");
            let request = tracing::debug_span!("request");
            let _entered = request.enter();
            tracing::info!(answer = 42, "inside");
            let context = request.context().span().span_context().clone();
            (context.trace_id().to_string(), context.span_id().to_string())
        });
        let [outside, inside] = &lines.json()[..] else { panic!("two lines: {:?}", lines.json()) };
        assert_eq!((&outside["message"], &outside["answer"]), (&"outside".into(), &42.into()));
        assert!(outside.get("trace_id").is_none() && outside.get("span_id").is_none(), "{outside}");
        assert_eq!((&inside["message"], &inside["answer"]), (&"inside".into(), &42.into()), "the line as it was");
        assert_eq!(inside["trace_id"], trace_id.as_str(), "{inside}");
        assert_eq!(inside["span_id"], span_id.as_str(), "{inside}");
        assert_eq!((trace_id.len(), span_id.len()), (32, 16), "hex, as OpenTelemetry shows them");
    }

    #[test]
    fn a_line_after_a_question_no_span_followed_is_still_written() {
        let provider = SdkTracerProvider::builder().build();
        let lines = Lines::default();
        let layers = vec![log_layer(LogFormat::Json, EnvFilter::new("info"), lines.clone()), trace_layer(&provider)];
        tracing::subscriber::with_default(Registry::default().with(layers), || {
            for round in 0..3 {
                // Asked of every layer's filter, as a library may (`log_enabled!`, or a `log` record the log level
                // lets through to tracing), with nothing made of the answer.
                let _ = tracing::span_enabled!(Level::DEBUG);
                let _ = tracing::event_enabled!(target: "reqwest", Level::DEBUG);
                tracing::info!(round, "written");
            }
        });
        assert_eq!(lines.json().len(), 3, "every line: {:?}", lines.json());
    }

    #[test]
    fn the_collector_is_logged_without_credentials() {
        assert_eq!(collector_of("http://collector:4318/v1/traces"), "collector:4318");
        assert_eq!(collector_of("http://user:secret@collector:4318/v1/traces"), "collector:4318");
    }

    #[test]
    fn without_a_trace_layer_the_request_spans_are_disabled_and_lines_carry_no_ids() {
        let lines = Lines::default();
        let layers = vec![log_layer(LogFormat::Json, EnvFilter::new("info"), lines.clone())];
        tracing::subscriber::with_default(Registry::default().with(layers), || {
            let request = tracing::debug_span!("request");
            assert!(request.is_disabled(), "a DEBUG span costs nothing at the usual level");
            let _entered = request.enter();
            tracing::info!("inside");
        });
        let [line] = &lines.json()[..] else { panic!("one line: {:?}", lines.json()) };
        assert!(line.get("trace_id").is_none(), "{line}");
    }

    #[test]
    fn the_trace_layer_takes_this_crates_debug_spans_and_never_the_exporters_own_events() {
        let provider = SdkTracerProvider::builder().build();
        tracing::subscriber::with_default(Registry::default().with(vec![trace_layer(&provider)]), || {
            assert!(!tracing::debug_span!("request").is_disabled(), "this crate's DEBUG spans");
            assert!(tracing::trace_span!("detail").is_disabled(), "not its TRACE ones");
            assert!(tracing::info_span!(target: "ractor", "Actor").is_disabled(), "not other crates' spans");
            assert!(tracing::event_enabled!(Level::INFO), "events from INFO, as events on their span");
            assert!(!tracing::event_enabled!(Level::DEBUG));
            assert!(!tracing::event_enabled!(target: "opentelemetry_sdk", Level::ERROR), "never the exporter's own");
        });
    }
}
