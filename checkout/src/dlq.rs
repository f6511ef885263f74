//! Poison messages on `checkout.requests`: bytes that are not JSON, or JSON
//! that misses required fields. They must not stall their partition, so the
//! worker copies each one, byte for byte with its key and headers, to
//! `checkout.requests.dlq` with the reason in header `dlq-reason`, publishes
//! `failed` when a request_id can be recovered (so the caller is not left
//! waiting), and moves on. Called by [`crate::checkout_request`].

use std::time::Duration;

use checkout_contract::domain::{DEFAULT_CURRENCY, DEFAULT_PURPOSE};
use checkout_contract::events::now;
use checkout_contract::kafka::HEADER_DLQ_REASON;
use checkout_contract::{CheckoutFinishedEvent, CheckoutStatus};
use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

/// Header on dead-letter copies naming where the original was.
pub const HEADER_DLQ_ORIGIN: &str = "dlq-origin";

/// Longest reason kept in the header.
const MAX_REASON_BYTES: usize = 512;

/// The request_id of a broken request, if its JSON still has a non-empty string one.
pub fn recover_request_id(payload: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(payload).ok()?;
    let id = value.get("request_id")?.as_str()?.trim();
    (!id.is_empty() && id.len() <= 128).then(|| id.to_owned())
}

/// The `failed` event for a broken request, when its request_id can be
/// recovered; the other fields are taken from the JSON where they have the
/// right type.
pub fn failed_event(payload: &[u8], reason: &str) -> Option<CheckoutFinishedEvent> {
    let request_id = recover_request_id(payload)?;
    let value: Value = serde_json::from_slice(payload).ok()?;
    let text = |key: &str, default: &str| {
        value
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_owned()
    };
    Some(CheckoutFinishedEvent {
        request_id,
        user_id: value.get("user_id").and_then(Value::as_i64).unwrap_or(0),
        amount_cents: value
            .get("amount_cents")
            .and_then(Value::as_i64)
            .unwrap_or(0),
        currency: text("currency", DEFAULT_CURRENCY),
        purpose: text("purpose", DEFAULT_PURPOSE),
        status: CheckoutStatus::Failed,
        session_id: None,
        session_url: None,
        payment_intent_id: None,
        error_message: Some(format!("invalid checkout request: {reason}")),
        timestamp: now(),
    })
}

/// Copies `message` to `topic` with its key, payload and headers, plus
/// `dlq-reason` and `dlq-origin` (`topic/partition/offset`), and waits for
/// the broker's acknowledgement.
///
/// # Errors
/// When the broker does not acknowledge the copy.
pub async fn forward(
    producer: &FutureProducer,
    topic: &str,
    message: &OwnedMessage,
    reason: &str,
) -> Result<(), KafkaError> {
    let reason = truncate(reason, MAX_REASON_BYTES);
    let origin = format!(
        "{}/{}/{}",
        message.topic(),
        message.partition(),
        message.offset()
    );
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for h in original.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    headers = headers
        .insert(Header {
            key: HEADER_DLQ_REASON,
            value: Some(reason),
        })
        .insert(Header {
            key: HEADER_DLQ_ORIGIN,
            value: Some(origin.as_str()),
        });
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(topic).headers(headers);
    if let Some(payload) = message.payload() {
        record = record.payload(payload);
    }
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    producer
        .send(record, Duration::ZERO)
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_id_is_recovered_from_incomplete_json_only() {
        assert_eq!(
            recover_request_id(br#"{"request_id":"r-1","user_id":"x"}"#).as_deref(),
            Some("r-1")
        );
        assert_eq!(recover_request_id(br#"{"user_id":1}"#), None);
        assert_eq!(recover_request_id(br#"{"request_id":42}"#), None);
        assert_eq!(recover_request_id(br#"{"request_id":"  "}"#), None);
        assert_eq!(recover_request_id(b"not json {"), None);
        assert_eq!(recover_request_id(b"[1,2]"), None);
    }

    #[test]
    fn failed_event_keeps_what_the_json_has() {
        let event = failed_event(
            br#"{"request_id":"r-1","user_id":7,"currency":"usd"}"#,
            "missing field `amount_cents`",
        )
        .unwrap();
        assert_eq!(event.request_id, "r-1");
        assert_eq!(event.user_id, 7);
        assert_eq!(event.amount_cents, 0);
        assert_eq!(event.currency, "usd");
        assert_eq!(event.purpose, "balance_topup");
        assert_eq!(event.status, CheckoutStatus::Failed);
        assert!(event.error_message.unwrap().contains("amount_cents"));
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let reason = "é".repeat(400);
        let cut = truncate(&reason, MAX_REASON_BYTES);
        assert!(cut.len() <= MAX_REASON_BYTES);
        assert!(reason.starts_with(cut));
    }
}
