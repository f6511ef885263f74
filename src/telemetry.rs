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

use std::fmt;

use serde_json::{Map, Value};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

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

/// Installs the global subscriber, in the `LOG_FORMAT` the environment asks
/// for. Safe to call twice (the second call is a no-op).
///
/// A `LOG_FORMAT` that is neither `text` nor `json` ends the process with
/// exit code 64 and says why on stderr.
pub fn init(default_filter: &str) {
    let format = match LogFormat::parse(std::env::var("LOG_FORMAT").ok().as_deref()) {
        Ok(format) => format,
        Err(e) => {
            eprintln!("configuration error: {e}");
            std::process::exit(64);
        }
    };
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let _ = match format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .try_init(),
        LogFormat::Json => {
            tracing::subscriber::set_global_default(json_subscriber(filter, std::io::stderr))
                .map_err(Into::into)
        }
    };
}

/// The `LOG_FORMAT=json` subscriber, writing to `writer`.
pub fn json_subscriber<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .fmt_fields(JsonFields::new())
        .event_format(JsonLines)
        .finish()
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
