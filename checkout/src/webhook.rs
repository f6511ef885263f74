//! `POST /webhooks/stripe`: Stripe's events about our Checkout Sessions,
//! turned into `success` / `failed` on `checkout.finished`.
//!
//! 1. The body limit answers 413 before anything is read into memory.
//! 2. `Stripe-Signature` is verified (HMAC-SHA256 over `t.payload`, 300 s
//!    tolerance, any `v1` value, any of the configured secrets during a
//!    rotation) and the event parsed by async-stripe's webhook crate;
//!    anything unsigned, badly signed, stale or malformed gets 400 and
//!    publishes nothing.
//! 3. [`crate::stripe_event::decide`] maps the event; the finished event is
//!    published and the handler answers 200 only after the broker's
//!    acknowledgement. Kafka down: 503, so Stripe retries later.
//!
//! Errors map to a JSON body in one place ([`WebhookError`]'s `IntoResponse`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use checkout_contract::RequestId;
use checkout_contract::kafka::{HEADER_TRACEPARENT, send_json};
use checkout_contract::secret::Secret;
use checkout_contract::trace::TraceContext;
use rdkafka::producer::FutureProducer;
use serde_json::json;
use stripe_webhook::{Event, Webhook, WebhookError as SignatureError};

use tracing::Instrument as _;

use crate::stripe_event::{Decision, decide, traceparent};

/// The route's path.
pub const PATH: &str = "/webhooks/stripe";
/// Stripe's signature header.
pub const SIGNATURE_HEADER: &str = "stripe-signature";
/// Header on published events naming the Stripe event they came from.
pub const HEADER_STRIPE_EVENT_ID: &str = "stripe-event-id";

/// What the handler needs.
#[derive(Clone)]
pub struct WebhookState {
    pub producer: FutureProducer,
    /// `checkout.finished`.
    pub finished_topic: String,
    pub secrets: Arc<Vec<Secret>>,
    /// Upper bound on waiting for the broker's acknowledgement.
    pub publish_timeout: Duration,
}

/// The webhook router.
pub fn router(state: WebhookState, max_body_bytes: usize) -> Router {
    Router::new()
        .route(PATH, post(stripe_webhook))
        // Stripe's events are a few KiB; refuse anything far larger before reading it (413).
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

/// Why a delivery was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("missing Stripe-Signature header")]
    Unsigned,
    #[error("body is not UTF-8")]
    NotUtf8,
    #[error("signature does not match any webhook secret")]
    BadSignature,
    #[error("signature timestamp {0} is outside the 300 s tolerance")]
    Stale(i64),
    #[error("malformed Stripe-Signature header")]
    BadHeader,
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error("could not publish the event: {0}")]
    Publish(String),
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::Publish(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        };
        (status, axum::Json(json!({ "error": self.to_string() }))).into_response()
    }
}

/// Verifies `payload` against every secret in turn: a rotation keeps the old
/// and the new secret valid at once.
///
/// # Errors
/// When no secret verifies the signature, the timestamp is stale, or the
/// event cannot be parsed.
pub fn verify(payload: &str, signature: &str, secrets: &[Secret]) -> Result<Event, WebhookError> {
    for secret in secrets {
        match Webhook::construct_event(payload, signature, secret.expose()) {
            Ok(event) => return Ok(event),
            Err(SignatureError::BadSignature | SignatureError::BadKey) => {}
            Err(SignatureError::BadTimestamp(t)) => return Err(WebhookError::Stale(t)),
            Err(SignatureError::BadHeader(_)) => return Err(WebhookError::BadHeader),
            Err(SignatureError::BadParse(e)) => return Err(WebhookError::Malformed(e)),
        }
    }
    Err(WebhookError::BadSignature)
}

async fn stripe_webhook(
    State(state): State<WebhookState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<impl IntoResponse, WebhookError> {
    let result = handle(&state, &headers, &body).await;
    match &result {
        // Logged in the checkout's span where it happened.
        Err(WebhookError::Publish(_)) | Ok(()) => {}
        Err(e) => tracing::warn!(error = %e, "webhook rejected"),
    }
    result.map(|()| axum::Json(json!({ "received": true })))
}

/// Logs (in the checkout's span) and returns a failed publish: the webhook
/// answers 5xx and Stripe delivers it again.
fn publish_failed(event_id: &str, reason: String) -> WebhookError {
    let e = WebhookError::Publish(reason);
    tracing::error!(%event_id, error = %e, "webhook not accepted: publish failed");
    e
}

async fn handle(
    state: &WebhookState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), WebhookError> {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(WebhookError::Unsigned)?;
    let payload = std::str::from_utf8(body).map_err(|_| WebhookError::NotUtf8)?;
    let event = verify(payload, signature, &state.secrets)?;
    let event_id = event.id.as_str().to_owned();
    let event_type = event.type_.as_str().to_owned();
    match decide(&event) {
        Decision::Ignore(reason) => {
            tracing::info!(%event_id, %event_type, reason, "webhook acknowledged, nothing to publish");
            Ok(())
        }
        Decision::Publish(finished) => {
            // Continue the trace the worker wrote into the session's metadata.
            let trace = traceparent(&event)
                .or_else(|| {
                    RequestId::parse(&finished.request_id)
                        .ok()
                        .map(|id| TraceContext::for_request(&id))
                })
                .map_or_else(TraceContext::new_root, |p| p.child());
            let span = tracing::info_span!(
                "stripe_webhook",
                request_id = %finished.request_id,
                trace_id = %trace.trace_id()
            );
            let header = trace.header();
            let extra = [
                (HEADER_STRIPE_EVENT_ID, event_id.as_str()),
                (HEADER_TRACEPARENT, header.as_str()),
            ];
            let send = send_json(
                &state.producer,
                &state.finished_topic,
                &finished.request_id,
                &*finished,
                &extra,
            );
            async {
                let delivered = match tokio::time::timeout(state.publish_timeout, send).await {
                    Ok(Ok(delivered)) => delivered,
                    Ok(Err(e)) => return Err(publish_failed(&event_id, e.to_string())),
                    Err(_) => {
                        let reason = "no acknowledgement from the broker in time";
                        return Err(publish_failed(&event_id, reason.into()));
                    }
                };
                tracing::info!(
                    %event_id, %event_type, status = %finished.status,
                    partition = delivered.partition, offset = delivered.offset, "published checkout.finished"
                );
                Ok(())
            }
            .instrument(span)
            .await
        }
    }
}
