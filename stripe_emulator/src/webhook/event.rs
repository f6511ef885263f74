//! A Stripe event (`object: "event"`, `data.object` = the full session) and
//! its signature: `Stripe-Signature: t={unix},v1={hex HMAC-SHA256 of "{t}.{payload}"}`.

use std::sync::Arc;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::session::{API_VERSION, new_id};

/// An event ready to deliver: its JSON is rendered once, so duplicates and
/// retries send identical bytes.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: String,
    pub type_: &'static str,
    pub session_id: String,
    pub created: i64,
    pub payload: Arc<str>,
}

/// The API request that caused an event (`request` in the event JSON);
/// `None` for customer actions on the hosted page.
#[derive(Debug, Clone, Default)]
pub struct Cause {
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
}

impl Event {
    pub fn new(type_: &'static str, session: Value, cause: &Cause) -> Self {
        let id = new_id("evt", 24);
        let created = chrono::Utc::now().timestamp();
        let session_id = session["id"].as_str().unwrap_or_default().to_owned();
        // Stripe's envelope for an account's own events: no `account` or
        // `context` (those are only on Connect and organization events).
        let payload = json!({
            "id": id,
            "object": "event",
            "api_version": API_VERSION,
            "created": created,
            "data": {"object": session},
            "livemode": false,
            "pending_webhooks": 1,
            "request": {"id": cause.request_id, "idempotency_key": cause.idempotency_key},
            "type": type_,
        });
        Self {
            id,
            type_,
            session_id,
            created,
            payload: payload.to_string().into(),
        }
    }
}

/// The `Stripe-Signature` header for `payload` signed at `timestamp`.
pub fn sign(payload: &str, secret: &str, timestamp: i64) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(format!("{timestamp}.{payload}").as_bytes());
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// What happened to one event (`GET /_emulator/events`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub id: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub session_id: String,
    pub created: i64,
    /// HTTP attempts so far (all deliveries of this event).
    pub attempts: u32,
    /// Deliveries answered 2xx (2 when the duplicate fault struck).
    pub delivered: u32,
    /// Deliveries abandoned after the last attempt.
    pub given_up: u32,
}
