//! Reading an inbound Kafka message for logging: which checkout it is about
//! (request_id) and which trace it continues, the same way in every
//! consumer (the checkout worker, blazing_sun's `checkout_finished` handler,
//! the gateway's status tail, the dead-letter replay tool).
//!
//! - request_id: the payload's JSON `request_id`, else the
//!   [`HEADER_REQUEST_ID`] header; each only when non-empty and at most
//!   [`MAX_REQUEST_ID_BYTES`] long (a malformed message still names its
//!   checkout when it can, and a huge value never reaches a log line).
//! - trace: the [`HEADER_TRACEPARENT`] header, else the trace every hop
//!   derives from a UUID request_id ([`TraceContext::for_request`]).
//!
//! [`Inbound::record`] writes both into a span that declares `request_id`
//! and `trace_id`; [`inbound_span!`](crate::inbound_span) makes that span
//! with the caller's name. Dead-lettering lives next door in
//! [`crate::dead_letter`].

use std::borrow::Cow;
use std::fmt;

use rdkafka::Message;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use tracing::Span;
use tracing::field::display;

use crate::RequestId;
use crate::kafka::{HEADER_REQUEST_ID, HEADER_TRACEPARENT, header};
use crate::trace::TraceContext;

#[doc(hidden)]
pub use tracing as __tracing;

/// Longest request_id taken from a message, in bytes (real ones are
/// 36-byte UUIDs; this bounds what a malformed message can put in a log).
pub const MAX_REQUEST_ID_BYTES: usize = 255;

/// What an inbound message says about its checkout.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inbound {
    request_id: Option<String>,
    header_trace: Option<TraceContext>,
    trace: Option<TraceContext>,
}

impl Inbound {
    /// Reads `message`: request_id from the payload's JSON, else the header;
    /// trace from the header, else derived from the request_id.
    pub fn read<M: Message>(message: &M) -> Self {
        let from_payload = message.payload().and_then(payload_request_id);
        Self::read_parsed(message, from_payload.as_deref())
    }

    /// [`Self::read`] for a caller that already parsed the payload: its
    /// `request_id` (when it had one) is taken instead of parsing again.
    pub fn read_parsed<M: Message>(message: &M, payload_request_id: Option<&str>) -> Self {
        let request_id = payload_request_id
            .and_then(bounded)
            .or_else(|| header(message, HEADER_REQUEST_ID).and_then(bounded))
            .map(str::to_owned);
        let header_trace = header_trace(message);
        Self::new(request_id, header_trace)
    }

    fn new(request_id: Option<String>, header_trace: Option<TraceContext>) -> Self {
        let trace = header_trace.or_else(|| {
            let id = RequestId::parse(request_id.as_deref()?).ok()?;
            Some(TraceContext::for_request(&id))
        });
        Self {
            request_id,
            header_trace,
            trace,
        }
    }

    /// The checkout's request_id, when the message names one.
    pub fn request_id(&self) -> Option<&str> {
        self.request_id.as_deref()
    }

    /// The trace this message continues: its `traceparent` header's, else
    /// the one derived from a UUID request_id.
    pub fn trace(&self) -> Option<TraceContext> {
        self.trace
    }

    /// The trace of the `traceparent` header only (what a producer sent).
    pub fn header_trace(&self) -> Option<TraceContext> {
        self.header_trace
    }

    /// Records `request_id` and `trace_id` into `span` (which must declare
    /// both, usually as `Empty`, and not be entered yet); a field the message
    /// does not tell stays empty.
    pub fn record(&self, span: &Span) {
        if let Some(id) = &self.request_id {
            span.record("request_id", display(id));
        }
        if let Some(trace) = &self.trace {
            span.record("trace_id", display(trace.trace_id()));
            // The span continues the message's trace when spans are exported.
            trace.parent_of(span);
        }
    }
}

/// The trace of `message`'s `traceparent` header, if it has a valid one.
pub fn header_trace<M: Message>(message: &M) -> Option<TraceContext> {
    header(message, HEADER_TRACEPARENT).and_then(TraceContext::parse)
}

/// The `request_id` of a JSON payload, trimmed, when it is a non-empty
/// string of at most [`MAX_REQUEST_ID_BYTES`]. Reads only that field: the
/// rest of the payload may be anything (a poison message still names its
/// checkout).
pub fn payload_request_id(payload: &[u8]) -> Option<String> {
    let RequestIdField(id) = serde_json::from_slice(payload).ok()?;
    bounded(&id?).map(str::to_owned)
}

/// The string `request_id` of a JSON object, every other field skipped
/// unread (a derived struct would also take `["..."]`, and a `Value` would
/// build the whole payload).
struct RequestIdField(Option<String>);

impl<'de> Deserialize<'de> for RequestIdField {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = RequestIdField;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut id = None;
                while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                    if key == "request_id" {
                        id = match map.next_value::<serde_json::Value>()? {
                            serde_json::Value::String(s) => Some(s),
                            _ => None,
                        };
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(RequestIdField(id))
            }
        }
        deserializer.deserialize_map(Fields)
    }
}

fn bounded(id: &str) -> Option<&str> {
    let id = id.trim();
    (!id.is_empty() && id.len() <= MAX_REQUEST_ID_BYTES).then_some(id)
}

/// A span named `$name` (a string literal; INFO unless a level comes
/// first) with the `request_id` and `trace_id` of an [`Inbound`]:
///
/// ```
/// use checkout_contract::inbound::Inbound;
/// # let message = rdkafka::message::OwnedMessage::new(None, None, "t".into(),
/// #     rdkafka::Timestamp::NotAvailable, 0, 0, None);
/// let inbound = Inbound::read(&message);
/// let span = checkout_contract::inbound_span!("checkout_finished", inbound);
/// let quiet = checkout_contract::inbound_span!(tracing::Level::DEBUG, "status_update", inbound);
/// # drop((span, quiet));
/// ```
#[macro_export]
macro_rules! inbound_span {
    ($level:expr, $name:literal, $inbound:expr) => {{
        let span = $crate::inbound::__tracing::span!(
            $level,
            $name,
            request_id = $crate::inbound::__tracing::field::Empty,
            trace_id = $crate::inbound::__tracing::field::Empty,
        );
        $crate::inbound::Inbound::record(&$inbound, &span);
        span
    }};
    ($name:literal, $inbound:expr) => {
        $crate::inbound_span!($crate::inbound::__tracing::Level::INFO, $name, $inbound)
    };
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;
    use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};

    use super::*;

    const ID: &str = "550e8400-e29b-41d4-a716-446655440000";
    const OTHER: &str = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn message(payload: Option<&[u8]>, headers: &[(&str, &str)]) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for (key, value) in headers {
            h = h.insert(Header {
                key,
                value: Some(*value),
            });
        }
        OwnedMessage::new(
            payload.map(<[u8]>::to_vec),
            None,
            "t".into(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(h),
        )
    }

    fn derived(id: &str) -> TraceContext {
        TraceContext::for_request(&RequestId::parse(id).unwrap())
    }

    #[test]
    fn the_payloads_request_id_wins_over_the_header() {
        let payload = format!(r#"{{"request_id":"{ID}","user_id":"not a number"}}"#);
        let m = message(Some(payload.as_bytes()), &[(HEADER_REQUEST_ID, OTHER)]);
        let inbound = Inbound::read(&m);
        assert_eq!(inbound.request_id(), Some(ID));
        assert_eq!(inbound.trace(), Some(derived(ID)));
        assert_eq!(inbound.header_trace(), None);
    }

    #[test]
    fn the_header_names_the_checkout_when_the_payload_does_not() {
        for payload in [
            &b"not json {"[..],
            br#"{"request_id":42}"#,
            br#"{"request_id":"   "}"#,
            br#"{"user_id":1}"#,
            b"[1,2]",
            br#"["550e8400-e29b-41d4-a716-446655440000"]"#,
        ] {
            let m = message(Some(payload), &[(HEADER_REQUEST_ID, OTHER)]);
            let inbound = Inbound::read(&m);
            assert_eq!(
                inbound.request_id(),
                Some(OTHER),
                "{}",
                String::from_utf8_lossy(payload)
            );
            assert_eq!(inbound.trace(), Some(derived(OTHER)));
        }
        let empty = message(None, &[(HEADER_REQUEST_ID, OTHER)]);
        assert_eq!(Inbound::read(&empty).request_id(), Some(OTHER));
    }

    #[test]
    fn request_ids_are_bounded_and_non_empty() {
        let long = "x".repeat(MAX_REQUEST_ID_BYTES + 1);
        let payload = format!(r#"{{"request_id":"{long}"}}"#);
        let m = message(Some(payload.as_bytes()), &[(HEADER_REQUEST_ID, "")]);
        assert_eq!(Inbound::read(&m), Inbound::default());

        let fits = "x".repeat(MAX_REQUEST_ID_BYTES);
        assert_eq!(
            payload_request_id(format!(r#"{{"request_id":" {fits} "}}"#).as_bytes()).as_deref(),
            Some(fits.as_str())
        );
    }

    #[test]
    fn the_traceparent_header_wins_over_the_derived_trace() {
        let payload = format!(r#"{{"request_id":"{ID}"}}"#);
        let m = message(Some(payload.as_bytes()), &[(HEADER_TRACEPARENT, PARENT)]);
        let inbound = Inbound::read(&m);
        let parent = TraceContext::parse(PARENT).unwrap();
        assert_eq!(inbound.trace(), Some(parent));
        assert_eq!(inbound.header_trace(), Some(parent));
    }

    #[test]
    fn a_request_id_that_is_not_a_uuid_has_no_trace_unless_the_header_has_one() {
        let m = message(Some(br#"{"request_id":"order-1"}"#), &[]);
        let inbound = Inbound::read(&m);
        assert_eq!(inbound.request_id(), Some("order-1"));
        assert_eq!(inbound.trace(), None);

        let m = message(
            Some(br#"{"request_id":"order-1"}"#),
            &[(HEADER_TRACEPARENT, "garbage")],
        );
        assert_eq!(Inbound::read(&m).trace(), None);
    }

    #[test]
    fn an_already_parsed_request_id_is_used_as_the_payloads() {
        let m = message(Some(b"not parsed again"), &[(HEADER_REQUEST_ID, OTHER)]);
        assert_eq!(Inbound::read_parsed(&m, Some(ID)).request_id(), Some(ID));
        assert_eq!(Inbound::read_parsed(&m, None).request_id(), Some(OTHER));
        assert_eq!(Inbound::read_parsed(&m, Some("")).request_id(), Some(OTHER));
    }

    #[test]
    fn the_span_carries_request_id_and_trace_id() {
        let (_guard, logs) = testkit::capture_logs();
        let payload = format!(r#"{{"request_id":"{ID}"}}"#);
        let inbound = Inbound::read(&message(Some(payload.as_bytes()), &[]));
        let span = crate::inbound_span!("test_span", inbound);
        span.in_scope(|| tracing::info!("inside"));
        let untold = crate::inbound_span!(
            tracing::Level::INFO,
            "untold",
            Inbound::read(&message(None, &[]))
        );
        untold.in_scope(|| tracing::info!("nothing known"));
        let text = logs.text();
        let trace_id = derived(ID).trace_id();
        assert!(
            text.contains(&format!("test_span{{request_id={ID} trace_id={trace_id}}}")),
            "{text}"
        );
        assert!(text.contains("untold: "), "{text}");
    }
}
