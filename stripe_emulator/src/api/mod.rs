//! The Stripe API surface under `/v1`, one file per route. Every call passes
//! `gate` first: count it, check the API key (401, [`auth`]) and the account
//! rate limit (429 `rate_limit`, [`crate::rate_limit`]), add the injected
//! latency, roll the injected 429; after the route ran, add the
//! injected after-latency. Injected 500s are rolled per route, inside
//! the idempotency handling, so they are saved like Stripe saves its own.
//! Every route first checks its parameters against the ones the API version
//! knows ([`parameters`], 400 `parameter_unknown`). A request that changes a
//! session holds the session's lock ([`crate::state::ObjectLocks`]) until its
//! answer leaves (after the after-latency); another request on the same
//! session meanwhile gets Stripe's 429 `lock_timeout`. Error responses carry
//! `Stripe-Should-Retry` ([`crate::error::should_retry`]).
//!
//! - [`create_session`]: `POST /v1/checkout/sessions`
//! - [`list_sessions`]: `GET /v1/checkout/sessions`
//! - [`retrieve_session`]: `GET /v1/checkout/sessions/{id}`
//! - [`expire_session`]: `POST /v1/checkout/sessions/{id}/expire`

pub mod auth;
pub mod create_session;
pub mod expire_session;
pub mod list_sessions;
pub mod retrieve_session;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;

use crate::error::{ApiError, should_retry};
use crate::form::{self, Node};
use crate::idempotency::{Begin, fingerprint};
use crate::known_params;
use crate::rate_limit::Admission;
use crate::session::{API_VERSION, new_id};
use crate::state::{App, ObjectLock, roll};
use crate::stats::Stats;
use crate::webhook::event::Cause;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route(
            "/v1/checkout/sessions",
            post(create_session::handle).get(list_sessions::handle),
        )
        .route("/v1/checkout/sessions/{id}", get(retrieve_session::handle))
        .route(
            "/v1/checkout/sessions/{id}/expire",
            post(expire_session::handle),
        )
        // Outermost for /v1 only: latency, auth and 429 apply to every API
        // call and to nothing else (the control API stays fast and reliable).
        .layer(middleware::from_fn_with_state(app.clone(), gate))
        .with_state(app)
}

/// The id of the API request being served (`Request-Id` header, event `request.id`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

async fn gate(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    Stats::inc(&app.stats.api_calls);
    let request_id = new_id("req", 14);
    // The account limit is decided on arrival, in the same one-second window
    // the request is logged in (see `crate::rate_limit`).
    let key = auth::authorize(app.api_key.as_ref(), req.headers());
    let admission = app.rate_limiter.arrive(key.as_deref().ok());
    let faults = app.faults();
    if faults.latency_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
    }
    let mut response = if let Err(e) = key {
        Stats::inc(&app.stats.unauthorized);
        e.into_response()
    } else if admission == Admission::Limited {
        Stats::inc(&app.stats.rate_limited);
        ApiError::rate_limited().into_response()
    } else if roll(faults.rate_429) {
        Stats::inc(&app.stats.injected_429);
        ApiError::rate_limited().into_response()
    } else {
        req.extensions_mut().insert(RequestId(request_id.clone()));
        next.run(req).await
    };
    // After the work is done: a client that times out now leaves a created
    // session behind, the case idempotency keys exist for.
    if faults.latency_after_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.latency_after_ms)).await;
    }
    // The object the request worked on is free again once its answer leaves.
    drop(response.extensions_mut().remove::<Arc<ObjectLock>>());
    let headers = response.headers_mut();
    headers.insert(
        "request-id",
        HeaderValue::from_str(&request_id).expect("ascii id"),
    );
    headers.insert("stripe-version", HeaderValue::from_static(API_VERSION));
    response
}

/// A handler's answer: status and Stripe JSON.
pub type Reply = Result<(StatusCode, Value), ApiError>;

/// Status, body, and whether the endpoint began executing (what Stripe
/// saves under an idempotency key; see [`crate::idempotency`]).
fn into_parts(reply: Reply) -> (StatusCode, Value, bool) {
    match reply {
        Ok((status, body)) => (status, body, true),
        Err(e) => (e.status, e.body(), !e.before_execution),
    }
}

fn respond(status: StatusCode, body: Value, replayed: bool) -> Response {
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if let Some(retry) = should_retry(status) {
        headers.insert("stripe-should-retry", HeaderValue::from_static(retry));
    }
    response
}

/// The form parameters of a request body or query string, checked against
/// the endpoint's known parameters ([`known_params`]).
///
/// # Errors
/// 400 for a malformed body, contradicting names or an unknown parameter.
pub fn parameters(
    raw: &[u8],
    shape: &known_params::Shape,
) -> Result<(Vec<(String, String)>, Node), ApiError> {
    let pairs = form::pairs(raw).map_err(|e| ApiError::invalid(None, e.to_string(), "body"))?;
    let tree =
        form::parse(&pairs).map_err(|e| ApiError::invalid(None, e.to_string(), e.0.clone()))?;
    known_params::check(&tree, shape)?;
    Ok((pairs, tree))
}

/// The idempotency key of a request, if any.
pub fn idempotency_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .filter(|k| !k.is_empty())
}

/// Runs a POST the Stripe way: replay or reject by idempotency key, roll
/// the injected 500 (saved, like a real one), run `work`, save what Stripe saves.
pub async fn idempotent<F, Fut>(
    app: &App,
    headers: &HeaderMap,
    request_id: &RequestId,
    route: &str,
    pairs: &[(String, String)],
    work: F,
) -> Response
where
    F: FnOnce(Cause) -> Fut,
    Fut: Future<Output = Reply>,
{
    let key = idempotency_key(headers);
    let cause = Cause {
        request_id: Some(request_id.0.clone()),
        idempotency_key: key.clone(),
    };
    let Some(key) = key else {
        let (status, body, _) = run_with_faults(app, cause, work).await;
        return respond(status, body, false);
    };
    if key.len() > 255 {
        return ApiError::invalid(
            None,
            "Idempotency keys can be at most 255 characters.",
            "Idempotency-Key",
        )
        .into_response();
    }
    match app.idempotency.begin(&key, fingerprint(route, pairs)) {
        Begin::Replay(status, body) => {
            Stats::inc(&app.stats.idempotent_replays);
            respond(status, body, true)
        }
        Begin::Reject(e) => e.into_response(),
        Begin::Run(guard) => {
            let (status, body, executed) = run_with_faults(app, cause, work).await;
            guard.finish(status, &body, executed);
            respond(status, body, false)
        }
    }
}

async fn run_with_faults<F, Fut>(app: &App, cause: Cause, work: F) -> (StatusCode, Value, bool)
where
    F: FnOnce(Cause) -> Fut,
    Fut: Future<Output = Reply>,
{
    if roll(app.faults().rate_500) {
        Stats::inc(&app.stats.injected_500);
        return into_parts(Err(ApiError::internal()));
    }
    into_parts(work(cause).await)
}

/// Stripe's answer to a path it does not know.
pub async fn unrecognized(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    let e = ApiError {
        status: StatusCode::NOT_FOUND,
        type_: "invalid_request_error",
        code: None,
        message: format!("Unrecognized request URL ({method}: {}).", uri.path()),
        param: None,
        before_execution: true,
    };
    e.into_response()
}
