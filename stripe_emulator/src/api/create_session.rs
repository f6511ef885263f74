//! `POST /v1/checkout/sessions`: form-encoded, bracketed nested params,
//! checked against the version's parameters ([`crate::known_params`]),
//! validated like Stripe ([`crate::create_params`]), idempotent by key.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{RequestId, idempotent, parameters};
use crate::create_params;
use crate::error::ApiError;
use crate::known_params::CREATE_SESSION;
use crate::state::App;
use crate::stats::Stats;

pub async fn handle(
    State(app): State<Arc<App>>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    Stats::inc(&app.stats.create_calls);
    // Only a malformed body is refused before the idempotency key is looked
    // at: the fingerprint needs the decoded pairs.
    let pairs = match crate::form::pairs(&body) {
        Ok(p) => p,
        Err(e) => return ApiError::invalid(None, e.to_string(), "body").into_response(),
    };
    idempotent(
        &app,
        &headers,
        &request_id,
        "POST /v1/checkout/sessions",
        &pairs,
        |cause| async {
            let (_, tree) = parameters(&body, &CREATE_SESSION)?;
            let params = create_params::parse(&tree)?;
            Ok((
                StatusCode::OK,
                app.create_session(params, cause.idempotency_key),
            ))
        },
    )
    .await
}
