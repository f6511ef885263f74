//! W3C Trace Context (`traceparent`): parse, format, start a trace, continue
//! one, and make it the OpenTelemetry context of a span when spans are
//! exported (see [`crate::telemetry`]).
//!
//! A checkout's trace travels: gRPC metadata (gateway) -> Kafka header
//! [`crate::kafka::HEADER_TRACEPARENT`] on `checkout.requests` -> the
//! `session_created` record's header, which the webhook's outcome continues
//! -> the `checkout.finished` header -> blazing_sun and the gateway's
//! stream. Every hop logs inside a span with `request_id` and `trace_id`.
//!
//! Each hop starts its span with [`TraceContext::continue_in`]: with export
//! on, the span becomes the child of the inbound context and the hop's
//! context is the span's own (so the next hop names it as its parent);
//! without export, the hop's context is a child with a new span id, as the
//! W3C spec asks of any participant. [`TraceContext::within`] does the same
//! for a span inside a hop (a produce, a Stripe call).
//! <https://www.w3.org/TR/trace-context/#traceparent-header>

use std::fmt;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
};
use tracing::Span;
use tracing::field::display;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The metadata key (gRPC, Stripe session metadata) and Kafka header name.
pub const TRACEPARENT: &str = "traceparent";

/// One position in a trace: the trace id shared by every hop, this hop's
/// span id and the sampling flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

impl TraceContext {
    /// A new trace (sampled), for a call that arrived without one.
    pub fn new_root() -> Self {
        let random = *uuid::Uuid::new_v4().as_bytes();
        let mut trace_id = [0; 16];
        trace_id.copy_from_slice(&random);
        Self {
            trace_id,
            span_id: new_span_id(),
            flags: 1,
        }
    }

    /// Parses a `traceparent` value. Accepts version `00` exactly and, as
    /// the spec asks, higher versions by their first four fields; refuses
    /// version `ff`, all-zero ids, upper-case hex and anything longer than
    /// a header should be.
    pub fn parse(value: &str) -> Option<Self> {
        let value = value.trim();
        if value.len() < 55 || value.len() > 512 {
            return None;
        }
        let mut parts = value.splitn(5, '-');
        let version = hex::<1>(parts.next()?)?[0];
        let trace_id = hex::<16>(parts.next()?)?;
        let span_id = hex::<8>(parts.next()?)?;
        let flags = hex::<1>(parts.next()?)?[0];
        let rest = parts.next();
        let valid_version = match version {
            0 => rest.is_none(),
            0xff => false,
            _ => true,
        };
        if !valid_version || trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            flags,
        })
    }

    /// A trace derived from a request_id, the same on every redelivery: for
    /// requests that arrived without a `traceparent` (Stripe's idempotency
    /// needs the session metadata to be the same on every attempt).
    pub fn for_request(request_id: &crate::RequestId) -> Self {
        let bytes = *request_id.as_uuid().as_bytes();
        let mut span_id = [0; 8];
        span_id.copy_from_slice(&bytes[8..]);
        if span_id == [0; 8] {
            span_id[7] = 1;
        }
        Self {
            trace_id: bytes,
            span_id,
            flags: 1,
        }
    }

    /// The same trace with a new span id: the next hop.
    pub fn child(&self) -> Self {
        Self {
            span_id: new_span_id(),
            ..*self
        }
    }

    /// This hop's context, in `span`: a child of `parent`, or a new trace
    /// without one. With spans exported, `span` is made the child of `parent`
    /// and the hop's context is the span's own; without, it is a child with a
    /// new span id. Records `trace_id` in `span` (when it declares the field).
    pub fn continue_in(parent: Option<Self>, span: &Span) -> Self {
        let hop = match parent {
            Some(parent) => parent.adopt(span).unwrap_or_else(|| parent.child()),
            None => exported(span).unwrap_or_else(Self::new_root),
        };
        span.record("trace_id", display(hop.trace_id()));
        hop
    }

    /// The context of `span`, a span inside this hop (a produce, a Stripe
    /// call): the span's own when spans are exported, else this one.
    pub fn within(&self, span: &Span) -> Self {
        self.adopt(span).unwrap_or(*self)
    }

    /// Makes `span` (not yet entered) the child of this context in the
    /// exported trace, and returns the span's own context; `None` when spans
    /// are not exported (or `span` is disabled).
    fn adopt(&self, span: &Span) -> Option<Self> {
        self.parent_of(span);
        exported(span)
    }

    /// Makes `span` (not yet entered) the child of this context in the
    /// exported trace; nothing without export.
    pub(crate) fn parent_of(&self, span: &Span) {
        let remote = SpanContext::new(
            TraceId::from_bytes(self.trace_id),
            SpanId::from_bytes(self.span_id),
            TraceFlags::new(self.flags),
            true,
            TraceState::default(),
        );
        // Fails only without the OpenTelemetry layer, or for a span already
        // entered: both leave the span as it is.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }

    /// 32 lowercase hex digits, the same on every hop.
    pub fn trace_id(&self) -> String {
        to_hex(&self.trace_id)
    }

    /// 16 lowercase hex digits, this hop's.
    pub fn span_id(&self) -> String {
        to_hex(&self.span_id)
    }

    /// The header value (`00-<trace_id>-<span_id>-<flags>`).
    pub fn header(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{}-{}-{:02x}",
            self.trace_id(),
            self.span_id(),
            self.flags
        )
    }
}

/// The exported context of `span`, when there is one.
fn exported(span: &Span) -> Option<TraceContext> {
    let context = span.context();
    let otel = context.span();
    let otel = otel.span_context();
    otel.is_valid().then(|| TraceContext {
        trace_id: otel.trace_id().to_bytes(),
        span_id: otel.span_id().to_bytes(),
        flags: otel.trace_flags().to_u8(),
    })
}

fn new_span_id() -> [u8; 8] {
    loop {
        let random = uuid::Uuid::new_v4().as_u128().to_le_bytes();
        let mut id = [0; 8];
        id.copy_from_slice(&random[..8]);
        if id != [0; 8] {
            return id;
        }
    }
}

fn hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N
        || !s
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    let mut out = [0; N];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        hex.push(char::from(DIGITS[usize::from(b >> 4)]));
        hex.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC_EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn parses_and_formats_the_specs_example() {
        let t = TraceContext::parse(SPEC_EXAMPLE).unwrap();
        assert_eq!(t.trace_id(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.span_id(), "00f067aa0ba902b7");
        assert_eq!(t.header(), SPEC_EXAMPLE);
    }

    #[test]
    fn a_child_keeps_the_trace_and_gets_a_new_span() {
        let parent = TraceContext::parse(SPEC_EXAMPLE).unwrap();
        // Without an exporter, the span does not decide the ids.
        let child = TraceContext::continue_in(Some(parent), &Span::none());
        assert_eq!(child.trace_id(), parent.trace_id());
        assert_ne!(child.span_id(), parent.span_id());
        assert_eq!(TraceContext::parse(&child.header()), Some(child));
        assert_eq!(child.within(&Span::none()), child);
        let root = TraceContext::continue_in(None, &Span::none());
        assert_ne!(root.trace_id(), parent.trace_id());
        assert_eq!(TraceContext::parse(&root.header()), Some(root));
        assert_ne!(TraceContext::new_root().trace_id(), root.trace_id());
        let id = crate::RequestId::parse("550e8400-e29b-41d4-a716-446655440000").unwrap();
        let derived = TraceContext::for_request(&id);
        assert_eq!(derived, TraceContext::for_request(&id));
        assert_eq!(derived.trace_id(), "550e8400e29b41d4a716446655440000");
    }

    #[test]
    fn malformed_values_are_refused() {
        for bad in [
            "",
            "garbage",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0é",
        ] {
            assert_eq!(TraceContext::parse(bad), None, "{bad:?}");
        }
        let future = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more";
        assert!(TraceContext::parse(future).is_some());
        let long = format!("{SPEC_EXAMPLE}{}", "-x".repeat(300));
        assert_eq!(TraceContext::parse(&long), None);
    }
}
