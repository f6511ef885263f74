//! The two Kafka events, as JSON, field for field as the seed document shows
//! them (seed: `blazing_sun/src/app/checkout/mod.rs`).
//!
//! These types hold what is on the wire, not what is valid: a request with a
//! negative amount still parses, so the checkout worker can answer it with a
//! `failed` event naming the field. Call [`CheckoutRequestEvent::validate`]
//! (see [`crate::domain`]) to get typed, checked values, and
//! [`CheckoutFinishedEvent::validate`] to check a finished event.
//!
//! Absent optionals serialise as `null`; unknown extra fields are ignored on
//! input; `currency` defaults to `"eur"` and `purpose` to `"balance_topup"`;
//! `timestamp` is ISO 8601 in UTC (`2024-01-15T10:30:00Z`).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{DEFAULT_CURRENCY, DEFAULT_PURPOSE};

/// Topic `checkout.requests`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutRequestEvent {
    /// UUID for request correlation.
    pub request_id: String,
    /// User initiating checkout.
    pub user_id: i64,
    /// Amount in minor units (500 = EUR 5.00); whole units in a zero-decimal
    /// currency (jpy: 500 = JPY 500), as Stripe's `unit_amount`. See
    /// [`Currency::exponent`](crate::domain::Currency::exponent).
    pub amount_cents: i64,
    #[serde(default = "default_currency")]
    pub currency: String,
    #[serde(default = "default_purpose")]
    pub purpose: String,
    #[serde(with = "iso8601")]
    pub timestamp: DateTime<Utc>,
    pub success_url: String,
    pub cancel_url: String,
}

/// Topic `checkout.finished`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutFinishedEvent {
    pub request_id: String,
    pub user_id: i64,
    pub amount_cents: i64,
    #[serde(default = "default_currency")]
    pub currency: String,
    #[serde(default = "default_purpose")]
    pub purpose: String,
    pub status: CheckoutStatus,
    /// Stripe session ID.
    pub session_id: Option<String>,
    /// Stripe checkout URL (for `session_created`).
    pub session_url: Option<String>,
    /// Stripe payment intent ID (for `success`).
    pub payment_intent_id: Option<String>,
    /// Error details (for `failed`).
    pub error_message: Option<String>,
    #[serde(with = "iso8601")]
    pub timestamp: DateTime<Utc>,
}

/// The seed's status values (section "Status Values").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckoutStatus {
    /// After the Stripe session was created: return its URL to the frontend.
    SessionCreated,
    /// After the webhook confirmed payment: credit the balance.
    Success,
    /// After the webhook (or the worker) reported a failure: log a warning.
    Failed,
}

impl CheckoutStatus {
    /// `success` and `failed` end a checkout; nothing follows them.
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Success | Self::Failed)
    }

    /// The wire string (`session_created`, `success`, `failed`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SessionCreated => "session_created",
            Self::Success => "success",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for CheckoutStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl CheckoutFinishedEvent {
    /// A finished event for `request`, with every field copied from it and
    /// the given status; the optionals start as `None`.
    pub fn for_request(request: &CheckoutRequestEvent, status: CheckoutStatus) -> Self {
        Self {
            request_id: request.request_id.clone(),
            user_id: request.user_id,
            amount_cents: request.amount_cents,
            currency: request.currency.clone(),
            purpose: request.purpose.clone(),
            status,
            session_id: None,
            session_url: None,
            payment_intent_id: None,
            error_message: None,
            timestamp: now(),
        }
    }
}

/// The current time, truncated to whole milliseconds (what the wire keeps).
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_millis(t.timestamp_millis()).unwrap_or(t)
}

fn default_currency() -> String {
    DEFAULT_CURRENCY.to_owned()
}

fn default_purpose() -> String {
    DEFAULT_PURPOSE.to_owned()
}

/// ISO 8601 / RFC 3339 in UTC: `2024-01-15T10:30:00Z`, with fractional
/// seconds only when there are any. Input may carry any offset; it is
/// normalised to UTC.
pub mod iso8601 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
    }

    /// # Errors
    /// When `s` is not an RFC 3339 timestamp.
    pub fn parse(s: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
        DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc))
    }

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse(&s).map_err(|e| D::Error::custom(format!("timestamp {s:?} is not ISO 8601: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_REQUEST: &str = r#"{
  "request_id": "550e8400-e29b-41d4-a716-446655440000",
  "user_id": 123,
  "amount_cents": 500,
  "currency": "eur",
  "purpose": "balance_topup",
  "timestamp": "2024-01-15T10:30:00Z",
  "success_url": "https://example.com/balance?status=success",
  "cancel_url": "https://example.com/balance?status=cancel"
}"#;

    const SEED_FINISHED: &str = r#"{
  "request_id": "550e8400-e29b-41d4-a716-446655440000",
  "user_id": 123,
  "amount_cents": 500,
  "currency": "eur",
  "purpose": "balance_topup",
  "status": "success",
  "session_id": "cs_test_abc123",
  "session_url": null,
  "payment_intent_id": "pi_test_xyz789",
  "error_message": null,
  "timestamp": "2024-01-15T10:35:00Z"
}"#;

    #[test]
    fn seed_request_round_trips_byte_for_byte() {
        let event: CheckoutRequestEvent = serde_json::from_str(SEED_REQUEST).unwrap();
        assert_eq!(event.user_id, 123);
        assert_eq!(event.amount_cents, 500);
        assert_eq!(iso8601::format(&event.timestamp), "2024-01-15T10:30:00Z");
        assert_eq!(serde_json::to_string_pretty(&event).unwrap(), SEED_REQUEST);
    }

    #[test]
    fn seed_finished_round_trips_byte_for_byte_with_nulls() {
        let event: CheckoutFinishedEvent = serde_json::from_str(SEED_FINISHED).unwrap();
        assert_eq!(event.status, CheckoutStatus::Success);
        assert_eq!(event.session_url, None);
        assert_eq!(event.payment_intent_id.as_deref(), Some("pi_test_xyz789"));
        assert_eq!(serde_json::to_string_pretty(&event).unwrap(), SEED_FINISHED);
    }

    #[test]
    fn compact_output_keeps_nulls_and_field_order() {
        let event: CheckoutFinishedEvent = serde_json::from_str(SEED_FINISHED).unwrap();
        let compact = serde_json::to_string(&event).unwrap();
        assert_eq!(
            compact,
            r#"{"request_id":"550e8400-e29b-41d4-a716-446655440000","user_id":123,"amount_cents":500,"currency":"eur","purpose":"balance_topup","status":"success","session_id":"cs_test_abc123","session_url":null,"payment_intent_id":"pi_test_xyz789","error_message":null,"timestamp":"2024-01-15T10:35:00Z"}"#
        );
    }

    #[test]
    fn unknown_fields_are_tolerated_and_defaults_apply() {
        let json = r#"{"request_id":"550e8400-e29b-41d4-a716-446655440000","user_id":1,
            "amount_cents":500,"timestamp":"2024-01-15T11:30:00+01:00",
            "success_url":"https://a.example/s","cancel_url":"https://a.example/c",
            "schema_version":7,"extra":{"nested":true}}"#;
        let event: CheckoutRequestEvent = serde_json::from_str(json).unwrap();
        assert_eq!(event.currency, "eur");
        assert_eq!(event.purpose, "balance_topup");
        // normalised to UTC
        assert_eq!(iso8601::format(&event.timestamp), "2024-01-15T10:30:00Z");

        let finished = r#"{"request_id":"x","user_id":1,"amount_cents":5,"status":"failed",
            "timestamp":"2024-01-15T10:30:00.250Z","new_field":1}"#;
        let event: CheckoutFinishedEvent = serde_json::from_str(finished).unwrap();
        assert_eq!(event.currency, "eur");
        assert_eq!(event.session_id, None);
        assert_eq!(event.error_message, None);
        assert_eq!(
            iso8601::format(&event.timestamp),
            "2024-01-15T10:30:00.250Z"
        );
    }

    #[test]
    fn status_is_the_lowercase_wire_string() {
        for (status, wire) in [
            (CheckoutStatus::SessionCreated, "\"session_created\""),
            (CheckoutStatus::Success, "\"success\""),
            (CheckoutStatus::Failed, "\"failed\""),
        ] {
            assert_eq!(serde_json::to_string(&status).unwrap(), wire);
            assert_eq!(
                serde_json::from_str::<CheckoutStatus>(wire).unwrap(),
                status
            );
        }
        assert!(serde_json::from_str::<CheckoutStatus>("\"SUCCESS\"").is_err());
        assert!(serde_json::from_str::<CheckoutStatus>("\"pending\"").is_err());
    }

    #[test]
    fn bad_timestamp_is_rejected_with_a_clear_message() {
        let json = SEED_REQUEST.replace("2024-01-15T10:30:00Z", "yesterday");
        let err = serde_json::from_str::<CheckoutRequestEvent>(&json).unwrap_err();
        assert!(err.to_string().contains("timestamp"), "{err}");
    }
}
