//! Tracing set-up for the binaries: `RUST_LOG`-style filtering (default
//! `info`) on stderr, in the format `LOG_FORMAT` names:
//!
//! - `text` (default): human-readable lines.
//! - `json`: one JSON object per line for log shippers: `timestamp`,
//!   `level`, `target`, `message`, the event's fields, the fields of every
//!   span the event is in (outermost first, an inner span's value wins:
//!   `request_id`, `trace_id` wherever a span carries them) and `spans`, the
//!   span names from the outermost in.
//!
//! Any other value stops the binary at start-up with exit code 64, as a bad
//! configuration variable does.
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, the spans are also exported over
//! OTLP/gRPC (OpenTelemetry), configured by the standard `OTEL_*` variables;
//! unset, nothing is exported and nothing is added to the subscriber. How a
//! span joins a checkout's trace is [`crate::trace`]'s part.

use std::fmt;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Map, Value};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How log lines look (`LOG_FORMAT`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// A `LOG_FORMAT` value; unset or empty is [`LogFormat::Text`].
    ///
    /// # Errors
    /// Any value but `text` and `json`, naming the variable.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::trim) {
            None | Some("" | "text") => Ok(Self::Text),
            Some("json") => Ok(Self::Json),
            Some(other) => Err(format!(
                "LOG_FORMAT={other:?}: must be `text` (the default) or `json`"
            )),
        }
    }
}

/// What [`init`] set up. Keep it for the life of the process and call
/// [`Telemetry::shutdown`] before exiting, so the last spans are exported.
#[must_use = "spans still batched are lost unless shutdown() is awaited"]
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still batched and stops the exporter (bounded by
    /// the exporter's own timeout, `OTEL_EXPORTER_OTLP_TIMEOUT`).
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            // Blocking: it waits for the batch thread, whose export runs on
            // this runtime's other workers.
            let stopped = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = stopped {
                eprintln!("telemetry: the last spans could not be exported: {e}");
            }
        }
    }
}

/// Installs the global subscriber: log lines on stderr in the `LOG_FORMAT`
/// the environment asks for, and spans exported over OTLP when
/// `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`)
/// is set and `OTEL_SDK_DISABLED` is not `true`. The exporter follows the
/// standard variables (`OTEL_SERVICE_NAME`, default the binary's name;
/// `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
/// `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP_TIMEOUT`).
/// Must run inside the Tokio runtime (the exporter's gRPC client lives on
/// it). A second call installs nothing and exports nothing.
///
/// A bad `LOG_FORMAT` or exporter setting ends the process with exit code
/// 64 and says why on stderr, as a bad configuration variable does.
pub fn init(default_filter: &str) -> Telemetry {
    let fail = |e: String| -> ! {
        eprintln!("configuration error: {e}");
        std::process::exit(64);
    };
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let format = LogFormat::parse(var("LOG_FORMAT").as_deref()).unwrap_or_else(|e| fail(e));
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let exporting = (var("OTEL_EXPORTER_OTLP_ENDPOINT").is_some()
        || var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some())
        && !var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    let provider = exporting.then(|| {
        otlp_provider(None, &binary_name()).unwrap_or_else(|e| fail(format!("OTEL_*: {e}")))
    });
    // The filter outside the layers' Vec: only there does it filter for all.
    let mut layers = vec![log_layer(format, std::io::stderr)];
    layers.extend(provider.as_ref().map(span_layer));
    let subscriber = tracing_subscriber::registry().with(filter).with(layers);
    if subscriber.try_init().is_err() {
        return Telemetry::default();
    }
    Telemetry { provider }
}

/// A tracer provider that batches spans to an OTLP/gRPC receiver: at
/// `endpoint` (e.g. `http://127.0.0.1:4317`), or where the standard
/// `OTEL_EXPORTER_OTLP_*` variables say. The service is called
/// `default_service` unless `OTEL_SERVICE_NAME` or `OTEL_RESOURCE_ATTRIBUTES`
/// name it. Must be called inside the Tokio runtime.
///
/// # Errors
/// The exporter cannot be built (a malformed endpoint, say).
pub fn otlp_provider(
    endpoint: Option<&str>,
    default_service: &str,
) -> Result<SdkTracerProvider, String> {
    use opentelemetry_otlp::WithExportConfig as _;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    if let Some(endpoint) = endpoint {
        exporter = exporter.with_endpoint(endpoint);
    }
    let exporter = exporter.build().map_err(|e| e.to_string())?;
    let mut resource = Resource::builder().build();
    let named = resource
        .get(&opentelemetry::Key::from_static_str("service.name"))
        .is_some_and(|name| !name.as_str().starts_with("unknown_service"));
    if !named {
        resource = Resource::builder()
            .with_service_name(default_service.to_owned())
            .build();
    }
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}

/// The layer that turns `tracing` spans into exported OpenTelemetry spans:
/// span fields become attributes, events inside a span its events, and an
/// `error`-level event marks the span failed.
pub fn span_layer<S>(provider: &SdkTracerProvider) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("blazing-sun-checkout"))
        .boxed()
}

/// The log lines on `writer`, in `format`.
fn log_layer<S, W>(format: LogFormat, writer: W) -> Box<dyn Layer<S> + Send + Sync>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let lines = tracing_subscriber::fmt::layer().with_writer(writer);
    match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines
            .fmt_fields(JsonFields::new())
            .event_format(JsonLines)
            .boxed(),
    }
}

/// This binary's file name (`gateway`, `checkout-stack`, ...): the service
/// name spans are exported under when the environment names none.
fn binary_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "blazing-sun-checkout".to_owned())
}

/// The `LOG_FORMAT=json` subscriber, writing to `writer`.
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::registry()
        .with(filter)
        .with(log_layer(LogFormat::Json, writer))
}

/// Formats an event as one JSON object with its spans' fields at the top level.
struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        let mut spans = Vec::new();
        for span in ctx.event_scope().into_iter().flat_map(|s| s.from_root()) {
            spans.push(Value::from(span.name()));
            if let Some(fields) = span.extensions().get::<FormattedFields<N>>() {
                line.extend(json_object(fields));
            }
        }
        let mut fields = String::new();
        ctx.format_fields(Writer::new(&mut fields), event)?;
        line.extend(json_object(&fields));
        if !spans.is_empty() {
            line.insert("spans".into(), spans.into());
        }
        writeln!(writer, "{}", Value::Object(line))
    }
}

/// The fields `JsonFields` wrote (an object, or nothing for no fields).
fn json_object(text: &str) -> Map<String, Value> {
    match serde_json::from_str(text) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_the_span_fields_at_the_top_level() {
        let captured = testkit::CapturedLogs::default();
        let sink = captured.clone();
        let subscriber = json_subscriber(EnvFilter::new("info"), move || sink.clone());
        tracing::subscriber::with_default(subscriber, || {
            let checkout = tracing::info_span!(
                "checkout",
                request_id = "550e8400-e29b-41d4-a716-446655440000",
                trace_id = "4bf92f3577b34da6a3ce929d0e0e4736",
            );
            let _checkout = checkout.enter();
            let stripe = tracing::info_span!("stripe", attempt = 2_u64);
            let _stripe = stripe.enter();
            tracing::info!(amount_cents = 500_i64, "created a \"session\"");
            drop(_stripe);
            drop(_checkout);
            tracing::warn!("outside any span");
            tracing::debug!("filtered out");
        });
        let text = captured.text();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("every line is one JSON object"))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let event = &lines[0];
        assert_eq!(event["request_id"], "550e8400-e29b-41d4-a716-446655440000");
        assert_eq!(event["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(event["attempt"], 2);
        assert_eq!(event["amount_cents"], 500);
        assert_eq!(event["message"], "created a \"session\"");
        assert_eq!(event["level"], "INFO");
        assert_eq!(event["target"], module_path!());
        assert_eq!(event["spans"], serde_json::json!(["checkout", "stripe"]));
        assert!(chrono::DateTime::parse_from_rfc3339(event["timestamp"].as_str().unwrap()).is_ok());
        let outside = &lines[1];
        assert_eq!(outside["level"], "WARN");
        assert!(outside.get("request_id").is_none() && outside.get("spans").is_none());
    }

    #[test]
    fn log_format_is_text_json_or_a_clear_error() {
        assert_eq!(LogFormat::parse(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("")), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("text")), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("json")), Ok(LogFormat::Json));
        let err = LogFormat::parse(Some("logfmt")).unwrap_err();
        assert!(
            err.contains("LOG_FORMAT=\"logfmt\"") && err.contains("json"),
            "{err}"
        );
    }
}
