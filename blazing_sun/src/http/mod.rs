//! The HTTP API (seed: `app/http/`): routes, shared state, and the server loop.
//!
//! - [`controllers::balance`]: the `balance` controller (`/api/v1/balance...`).
//! - [`controllers::health`]: `/healthz` and `/metrics`.
//! - [`controllers::page`]: the balance page `/` and its script.
//! - [`auth`]: the bearer-token extractor.
//! - [`error`]: the one place errors become JSON bodies.
//!
//! [`serve`] uses the contract's `http_server` (not `axum::serve`) for a header read
//! timeout on every connection and a graceful shutdown.

pub mod auth;
pub mod controllers;
pub mod error;

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::routing::{get, post};
use checkout_contract::HostAllowlist;
use checkout_contract::auth::TokenVerifier;
use checkout_contract::shutdown::Stopping;
use checkout_contract::topics::Topics;
use rdkafka::producer::FutureProducer;
use tokio::net::TcpListener;
use tower_http::timeout::RequestBodyTimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::metrics::Metrics;
use crate::store::Store;

/// Limits that keep slow or large clients from tying the server up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted request body, in bytes.
    pub body_bytes: usize,
    /// A client must send its request headers within this time.
    pub header_read_timeout: Duration,
    /// A client must send its request body within this time.
    pub body_read_timeout: Duration,
    /// A request is answered within this time (the producer timeout is shorter).
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            body_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Open connections get this long to finish after shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Store,
    /// Produces `checkout.requests`, with the short produce timeout.
    pub producer: FutureProducer,
    pub topics: Topics,
    pub verifier: TokenVerifier,
    pub metrics: Arc<Metrics>,
    /// Hosts success_url and cancel_url may point at.
    pub redirect_hosts: HostAllowlist,
    pub public_url: String,
    pub default_success_url: String,
    pub default_cancel_url: String,
    /// The gateway the balance page streams checkout status from (gRPC-Web).
    pub gateway_url: String,
}

impl AppState {
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }
}

impl Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

/// Every route with its layers.
pub fn router(state: AppState, limits: Limits) -> Router {
    Router::new()
        .route("/", get(controllers::page::index))
        .route("/assets/topup.js", get(controllers::page::script))
        .route("/api/v1/balance", get(controllers::balance::show))
        .route(
            "/api/v1/balance/checkout",
            post(controllers::balance::create_checkout),
        )
        .route(
            "/api/v1/balance/checkouts/{request_id}",
            get(controllers::balance::checkout_status),
        )
        .route("/healthz", get(controllers::health::healthz))
        .route("/metrics", get(controllers::health::metrics))
        .fallback(controllers::health::not_found)
        // Innermost: extractors read at most this much (413 as JSON via `error`).
        .layer(DefaultBodyLimit::max(limits.body_bytes))
        // A slow body cannot hold a handler forever.
        .layer(RequestBodyTimeoutLayer::new(limits.body_read_timeout))
        // Nor can anything else; outside the handlers so it covers them all,
        // answering 408 as JSON through `error`.
        .layer(
            tower::ServiceBuilder::new()
                .layer(HandleErrorLayer::new(|_: tower::BoxError| async {
                    error::ApiError::Timeout
                }))
                .timeout(limits.request_timeout),
        )
        // Counts every response, including timeouts.
        .layer(middleware::from_fn_with_state(
            state.clone(),
            count_responses,
        ))
        // Outermost: one span per request around everything.
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

async fn count_responses(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    state.metrics.http_response(response.status().as_u16());
    response
}

/// Serves `app` on `listener` until `shutdown` says stop, then lets open
/// connections finish for up to [`SHUTDOWN_GRACE`] (the shared HTTP/1.1
/// server with the header read timeout; the body timeout is a layer above).
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, shutdown: Stopping) {
    checkout_contract::http_server::serve(
        listener,
        app,
        limits.header_read_timeout,
        SHUTDOWN_GRACE,
        shutdown,
    )
    .await;
}
