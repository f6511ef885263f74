//! The JSON control API for tests and operators, under `/_emulator`:
//!
//! - `POST /_emulator/checkout/sessions/{id}/pay` `{"outcome": "paid" | "async_pending" |
//!   "async_succeeded" | "async_failed" | "expired"}` -> the session JSON (404 unknown, 400 wrong state)
//! - `GET /_emulator/sessions` -> [`crate::state::SessionsReport`]
//! - `GET /_emulator/stats` -> [`crate::stats::StatsSnapshot`]
//! - `GET /_emulator/events` -> [`crate::webhook::EventRecord`] list
//! - `GET /_emulator/requests` -> `{"rate_limit": n | null, "per_second": [..],
//!   "rate_limited_per_second": [..]}`: `/v1` requests per whole second since start
//!   (see [`crate::Handle::api_requests_per_second`])
//! - `GET|PUT /_emulator/faults` -> [`crate::config::Faults`] (PUT replaces all; omitted fields are 0)
//! - `GET|PUT /_emulator/webhook` `{"url": "http://...", "secret": "whsec_..."}` (GET shows the url only)

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use checkout_contract::secret::Secret;
use serde::Deserialize;
use serde_json::json;

use crate::config::{Faults, is_http_url};
use crate::session::Outcome;
use crate::state::App;
use crate::webhook::event::Cause;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/_emulator/checkout/sessions/{id}/pay", post(pay))
        .route("/_emulator/sessions", get(sessions))
        .route("/_emulator/stats", get(stats))
        .route("/_emulator/events", get(events))
        .route("/_emulator/requests", get(requests))
        .route("/_emulator/faults", get(get_faults).put(put_faults))
        .route("/_emulator/webhook", get(get_webhook).put(put_webhook))
        .with_state(app)
}

#[derive(Debug, Deserialize)]
struct PayBody {
    outcome: Outcome,
}

async fn pay(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Json(body): Json<PayBody>,
) -> Response {
    match app.apply(&id, body.outcome, &Cause::default()) {
        Ok(session) => Json(session).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn sessions(State(app): State<Arc<App>>) -> Response {
    Json(app.sessions_report()).into_response()
}

async fn stats(State(app): State<Arc<App>>) -> Response {
    Json(app.stats.snapshot()).into_response()
}

async fn events(State(app): State<Arc<App>>) -> Response {
    Json(app.outbox.records()).into_response()
}

async fn requests(State(app): State<Arc<App>>) -> Response {
    let limiter = &app.rate_limiter;
    Json(json!({
        "rate_limit": limiter.limit(),
        "per_second": limiter.requests_per_second(),
        "rate_limited_per_second": limiter.limited_per_second(),
    }))
    .into_response()
}

async fn get_faults(State(app): State<Arc<App>>) -> Response {
    Json(app.faults()).into_response()
}

async fn put_faults(State(app): State<Arc<App>>, Json(faults): Json<Faults>) -> Response {
    match app.set_faults(faults) {
        Ok(()) => Json(app.faults()).into_response(),
        Err(bad) => (StatusCode::BAD_REQUEST, Json(json!({"error": {"type": "invalid_request_error", "code": null,
            "message": format!("rates must be between 0 and 1: {}", bad.join(", ")), "param": bad.first()}})))
            .into_response(),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    url: Option<String>,
    secret: Option<String>,
}

async fn get_webhook(State(app): State<Arc<App>>) -> Response {
    let (url, _) = app.webhook_endpoint();
    Json(json!({"url": url})).into_response()
}

async fn put_webhook(State(app): State<Arc<App>>, Json(body): Json<WebhookBody>) -> Response {
    if let Some(url) = &body.url
        && !is_http_url(url)
    {
        return (
            StatusCode::BAD_REQUEST,
            Json(
                json!({"error": {"type": "invalid_request_error", "code": "url_invalid",
            "message": "Not a valid URL", "param": "url"}}),
            ),
        )
            .into_response();
    }
    app.set_webhook_endpoint(body.url.clone(), body.secret.map(Secret::new));
    Json(json!({"url": body.url})).into_response()
}
