//! The admin HTTP port (its own listener, never exposed with the gRPC one):
//! `/metrics` in Prometheus text format and `/healthz` (200 while SERVING,
//! 503 otherwise).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use checkout_contract::metrics::exposition;

use crate::index::Index;
use crate::metrics::Metrics;

/// What the admin routes read.
#[derive(Clone)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub index: Arc<Index>,
    pub serving: Arc<AtomicBool>,
}

/// The admin routes.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .with_state(state)
}

async fn metrics(State(s): State<AdminState>) -> impl IntoResponse {
    exposition(s.metrics.render(s.index.len()))
}

async fn healthz(State(s): State<AdminState>) -> impl IntoResponse {
    if s.serving.load(Ordering::Acquire) {
        (StatusCode::OK, "SERVING\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "NOT_SERVING\n")
    }
}
