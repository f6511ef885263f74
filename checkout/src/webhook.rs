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
//! 4. A correctly signed event that async-stripe cannot parse (Stripe sends
//!    an API version the crate does not know) is not refused: the session
//!    it names (`data.object.id`) is retrieved from Stripe and decided from
//!    ([`crate::stripe_event::from_session`]), logged at error level and
//!    counted. Stripe unreachable: 503, so Stripe retries later.
//!
//! Every outcome continues the checkout's trace: the `traceparent` of the
//! session's `session_created` record ([`crate::sessions`]), else the trace
//! derived from the request_id. [`Outcomes`] publishes them, for the
//! reconciler too, so both publish the same event with the same headers.
//!
//! Every delivery is counted by its event type (ours by name, else `other`)
//! and how it was answered (`checkout_webhook_deliveries_total`).
//!
//! `GET /metrics` serves [`crate::metrics`]; `GET /healthz` says whether the
//! open-session tail caught up, and the partitions and Stripe share owned.
//!
//! Errors map to a JSON body in one place ([`WebhookError`]'s `IntoResponse`).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use checkout_contract::kafka::{Delivered, send_traced};
use checkout_contract::secret::Secret;
use checkout_contract::trace::TraceContext;
use checkout_contract::{CheckoutFinishedEvent, RequestId};
use rdkafka::producer::FutureProducer;
use serde_json::json;
use stripe_webhook::{Event, Webhook, WebhookError as SignatureError};

use tracing::Instrument as _;

use crate::assignment::Assignment;
use crate::metrics::{Delivery, Metrics};
use crate::sessions::OpenSessions;
use crate::stripe::Stripe;
use crate::stripe_event::{Decision, SessionState, decide, from_session};

/// The route's path.
pub const PATH: &str = "/webhooks/stripe";
/// Stripe's signature header.
pub const SIGNATURE_HEADER: &str = "stripe-signature";
/// Header on published events naming the Stripe event they came from.
pub const HEADER_STRIPE_EVENT_ID: &str = "stripe-event-id";

/// How long an outcome waits for the open-session tail to read its
/// request's `session_created`, to continue its trace.
pub const TRACE_WAIT: Duration = Duration::from_secs(2);

/// Publishes outcomes (`success`, `failed`) on `checkout.finished` the one
/// way the webhook and the reconciler both do: keyed by request_id, the
/// standard headers, the checkout's trace.
#[derive(Clone)]
pub struct Outcomes {
    pub producer: FutureProducer,
    /// `checkout.finished`.
    pub finished_topic: String,
    /// Upper bound on waiting for the broker's acknowledgement.
    pub publish_timeout: Duration,
    /// Where each checkout's trace is found.
    pub sessions: Arc<OpenSessions>,
    /// Counts what is published.
    pub metrics: Arc<Metrics>,
}

impl Outcomes {
    /// The trace an outcome of `request_id` continues (its span's parent,
    /// see [`TraceContext::continue_in`]): its `session_created` record's
    /// (waiting up to `wait` for the tail to read that record), else the
    /// trace derived from the request_id; `None` starts a new one.
    pub async fn trace(&self, request_id: &str, wait: Duration) -> Option<TraceContext> {
        self.sessions.trace(request_id, wait).await.or_else(|| {
            RequestId::parse(request_id)
                .ok()
                .map(|id| TraceContext::for_request(&id))
        })
    }

    /// Publishes `finished` under `trace`, with the Stripe event's id when
    /// there is one, and waits for the broker's acknowledgement.
    ///
    /// # Errors
    /// The broker did not acknowledge in time (or refused).
    pub async fn publish(
        &self,
        finished: &CheckoutFinishedEvent,
        trace: &TraceContext,
        stripe_event_id: Option<&str>,
    ) -> Result<Delivered, String> {
        let extra: Vec<_> = stripe_event_id
            .map(|id| (HEADER_STRIPE_EVENT_ID, id))
            .into_iter()
            .collect();
        let send = send_traced(
            &self.producer,
            &self.finished_topic,
            &finished.request_id,
            finished,
            trace,
            &extra,
        );
        match tokio::time::timeout(self.publish_timeout, send).await {
            Ok(Ok(delivered)) => {
                self.metrics.published(finished.status);
                Ok(delivered)
            }
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no acknowledgement from the broker in time".to_owned()),
        }
    }
}

/// What the handler needs.
#[derive(Clone)]
pub struct WebhookState {
    pub outcomes: Outcomes,
    pub secrets: Arc<Vec<Secret>>,
    /// To look up the session of an event that cannot be parsed.
    pub stripe: Stripe,
    pub metrics: Arc<Metrics>,
    /// The partitions this replica owns (its Stripe budget), for `/metrics`.
    pub assignment: Arc<Assignment>,
}

/// The webhook router, `GET /metrics` and `GET /healthz`.
pub fn router(state: WebhookState, max_body_bytes: usize) -> Router {
    Router::new()
        .route(PATH, post(stripe_webhook))
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        // Stripe's events are a few KiB; refuse anything far larger before reading it (413).
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

async fn metrics(State(state): State<WebhookState>) -> impl IntoResponse {
    checkout_contract::metrics::exposition(state.metrics.render(
        state.outcomes.sessions.len(),
        state.stripe.limiter().rate(),
        &state.assignment.owned(),
    ))
}

/// A probe for supervisors (Kubernetes readiness): 200 once the open-session
/// tail has read what `checkout.finished` held at start (before that the
/// webhook may not know a session's trace and reconciliation waits), 503
/// before; the partitions owned and the Stripe share either way.
async fn healthz(State(state): State<WebhookState>) -> impl IntoResponse {
    let ready = state.outcomes.sessions.is_caught_up();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if ready { "ok" } else { "starting: reading checkout.finished" },
        "owned_partitions": state.assignment.owned(),
        "stripe_rate_limit_per_second": state.stripe.limiter().rate(),
        "open_sessions": state.outcomes.sessions.len(),
    });
    (status, axum::Json(body))
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
    #[error("cannot ask Stripe about the session: {0}")]
    StripeUnavailable(String),
}

impl IntoResponse for WebhookError {
    fn into_response(self) -> Response {
        let status = match self {
            Self::Publish(_) | Self::StripeUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
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
    let mut seen = Seen::default();
    let result = handle(&state, &headers, &body, &mut seen).await;
    match &result {
        // Logged in the checkout's span where it happened.
        Err(WebhookError::Publish(_)) | Ok(()) => {}
        Err(e) => tracing::warn!(error = %e, "webhook rejected"),
    }
    state
        .metrics
        .webhook_delivery(seen.event_type.as_deref(), seen.delivery(&result));
    result.map(|()| axum::Json(json!({ "received": true })))
}

/// What the handler learnt about a delivery, for its metrics.
#[derive(Debug, Default)]
struct Seen {
    /// The verified event's type.
    event_type: Option<String>,
    /// The event could not be parsed: decided from its session.
    unparsed: bool,
    /// Its outcome was published.
    published: bool,
}

impl Seen {
    fn delivery(&self, result: &Result<(), WebhookError>) -> Delivery {
        match result {
            Ok(()) if self.unparsed => Delivery::Unparsed,
            Ok(()) if self.published => Delivery::Accepted,
            Ok(()) => Delivery::Ignored,
            Err(WebhookError::Publish(_) | WebhookError::StripeUnavailable(_)) => {
                Delivery::Unavailable
            }
            Err(
                WebhookError::Unsigned
                | WebhookError::BadSignature
                | WebhookError::Stale(_)
                | WebhookError::BadHeader,
            ) => Delivery::BadSignature,
            Err(WebhookError::NotUtf8 | WebhookError::Malformed(_)) => Delivery::BadRequest,
        }
    }
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
    seen: &mut Seen,
) -> Result<(), WebhookError> {
    let signature = headers
        .get(SIGNATURE_HEADER)
        .and_then(|v| v.to_str().ok())
        .ok_or(WebhookError::Unsigned)?;
    let payload = std::str::from_utf8(body).map_err(|_| WebhookError::NotUtf8)?;
    let event = match verify(payload, signature, &state.secrets) {
        Ok(event) => event,
        // Parsing comes after the signature and timestamp checks: this is Stripe's.
        Err(WebhookError::Malformed(reason)) => {
            return unparsed(state, payload, &reason, seen).await;
        }
        Err(e) => return Err(e),
    };
    let event_id = event.id.as_str().to_owned();
    let event_type = event.type_.as_str().to_owned();
    seen.event_type = Some(event_type.clone());
    match decide(&event) {
        Decision::Ignore(reason) => {
            tracing::info!(%event_id, %event_type, reason, "webhook acknowledged, nothing to publish");
            Ok(())
        }
        Decision::Publish(finished) => {
            publish(state, &finished, &event_id, &event_type).await?;
            seen.published = true;
            Ok(())
        }
    }
}

/// Publishes an outcome in the checkout's span and trace.
async fn publish(
    state: &WebhookState,
    finished: &CheckoutFinishedEvent,
    event_id: &str,
    event_type: &str,
) -> Result<(), WebhookError> {
    let parent = state.outcomes.trace(&finished.request_id, TRACE_WAIT).await;
    let span = tracing::info_span!(
        "stripe_webhook",
        request_id = %finished.request_id,
        trace_id = tracing::field::Empty
    );
    let trace = TraceContext::continue_in(parent, &span);
    async {
        let delivered = state
            .outcomes
            .publish(finished, &trace, Some(event_id))
            .await
            .map_err(|reason| publish_failed(event_id, reason))?;
        tracing::info!(
            %event_id, %event_type, status = %finished.status, session_id = ?finished.session_id,
            partition = delivered.partition, offset = delivered.offset, "published checkout.finished"
        );
        Ok(())
    }
    .instrument(span)
    .await
}

/// A signed event async-stripe could not parse: decide from the session it
/// names, as Stripe has it now.
async fn unparsed(
    state: &WebhookState,
    payload: &str,
    reason: &str,
    seen: &mut Seen,
) -> Result<(), WebhookError> {
    let Ok(raw) = serde_json::from_str::<serde_json::Value>(payload) else {
        return Err(WebhookError::Malformed(reason.to_owned()));
    };
    state.metrics.webhook_unparsed();
    let event_id = raw["id"].as_str().unwrap_or_default().to_owned();
    let event_type = raw["type"].as_str().unwrap_or_default().to_owned();
    seen.event_type = Some(event_type.clone());
    seen.unparsed = true;
    let api_version = raw["api_version"].as_str().unwrap_or_default();
    let object = &raw["data"]["object"];
    let session_id = object["id"]
        .as_str()
        .filter(|id| object["object"] == "checkout.session" || id.starts_with("cs_"));
    let Some(session_id) = session_id else {
        tracing::error!(
            %event_id, %event_type, api_version, error = reason,
            "signed webhook event cannot be parsed and names no checkout session: acknowledged, nothing to publish"
        );
        return Ok(());
    };
    tracing::error!(
        %event_id, %event_type, api_version, session_id, error = reason,
        "signed webhook event cannot be parsed (API version mismatch?): deciding from the session as Stripe has it"
    );
    if state.stripe.limiter().rate() <= 0.0 {
        tracing::warn!(%event_id, session_id, "no share of the Stripe rate limit on this replica (it owns no partition now): Stripe will deliver the event again");
        return Err(WebhookError::StripeUnavailable(
            "this replica owns no partition, so no share of the Stripe rate limit, right now"
                .into(),
        ));
    }
    let session = state
        .stripe
        .retrieve_session(session_id)
        .await
        .map_err(|e| {
            tracing::error!(%event_id, session_id, error = %e, "cannot retrieve the session of an unparsable webhook event; Stripe will deliver it again");
            WebhookError::StripeUnavailable(e.to_string())
        })?;
    match from_session(&session) {
        SessionState::Finished(finished) => publish(state, &finished, &event_id, &event_type).await,
        _ => {
            tracing::info!(%event_id, session_id, "session has no outcome yet: acknowledged, reconciliation follows it");
            Ok(())
        }
    }
}
