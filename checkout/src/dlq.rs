//! Poison messages on `checkout.requests`: bytes that are not JSON, or JSON
//! that misses required fields. They must not stall their partition, so the
//! worker copies each one to `checkout.requests.dlq` with the contract's
//! [`dead_letter`](checkout_contract::dead_letter::dead_letter) (byte for
//! byte with key and headers, plus `dlq-reason` and `dlq-source`),
//! publishes `failed` when a request_id can be recovered (so the caller is
//! not left waiting), and moves on. Called by [`crate::checkout_request`].

use checkout_contract::domain::{DEFAULT_CURRENCY, DEFAULT_PURPOSE};
use checkout_contract::events::now;
use checkout_contract::inbound::payload_request_id;
use checkout_contract::{CheckoutFinishedEvent, CheckoutStatus};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use serde_json::Value;

/// The request_id of a broken request, if its JSON still has a non-empty
/// string one (the contract's [`payload_request_id`]).
pub fn recover_request_id(payload: &[u8]) -> Option<String> {
    payload_request_id(payload)
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

/// Copies `message` to the dead-letter `topic` with `reason` (see
/// [`checkout_contract::dead_letter::dead_letter`]) and waits for the
/// broker's acknowledgement.
///
/// # Errors
/// When the broker does not acknowledge the copy.
pub async fn forward(
    producer: &FutureProducer,
    topic: &str,
    message: &OwnedMessage,
    reason: &str,
) -> Result<(), KafkaError> {
    checkout_contract::dead_letter::dead_letter(producer, topic, message, reason).await
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
}
