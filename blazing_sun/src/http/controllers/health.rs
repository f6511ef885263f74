//! `/healthz` (the database and the broker answer, the consumer is not waiting) and `/metrics` (Prometheus text).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use rdkafka::producer::Producer as _;
use serde_json::json;

use crate::http::AppState;
use crate::http::error::ApiError;

/// How long the broker gets to answer a metadata request.
const BROKER_PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// 200 when the database and the broker answer and the consumer is not
/// waiting for the database; 503 (naming which, with the reason) when not.
pub async fn healthz(State(state): State<AppState>) -> Response {
    let database = state.store.ping().await.map_err(|e| e.to_string());
    let producer = state.producer.clone();
    let topic = state.topics.requests.clone();
    let broker = tokio::task::spawn_blocking(move || {
        producer
            .client()
            .fetch_metadata(Some(&topic), BROKER_PROBE_TIMEOUT)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    // A ping can work while writes cannot (locked, read-only, disk full):
    // the consumer's own failures count too.
    let consumer = state.metrics.waiting().map_or(Ok(()), |reason| {
        Err(format!("waiting to retry a batch: {reason}"))
    });
    let healthy = database.is_ok() && broker.is_ok() && consumer.is_ok();
    let show = |r: &Result<(), String>| r.as_ref().map_or_else(Clone::clone, |()| "ok".to_owned());
    let status = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({
        "status": if healthy { "ok" } else { "unavailable" },
        "database": show(&database),
        "broker": show(&broker),
        "consumer": show(&consumer),
    });
    (status, Json(body)).into_response()
}

pub async fn metrics(State(state): State<AppState>) -> Response {
    checkout_contract::metrics::exposition(state.metrics.render())
}

pub async fn not_found() -> ApiError {
    ApiError::NotFound
}
