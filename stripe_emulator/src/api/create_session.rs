//! `POST /v1/checkout/sessions`: form-encoded, bracketed nested params,
//! validated like Stripe ([`crate::create_params`]), idempotent by key.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{RequestId, idempotent};
use crate::error::ApiError;
use crate::state::App;
use crate::stats::Stats;
use crate::{create_params, form};

pub async fn handle(
    State(app): State<Arc<App>>,
    Extension(request_id): Extension<RequestId>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    Stats::inc(&app.stats.create_calls);
    let pairs = match form::pairs(&body) {
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
            let tree = form::parse(&pairs)
                .map_err(|e| ApiError::invalid(None, e.to_string(), e.0.clone()))?;
            let params = create_params::parse(&tree)?;
            Ok((
                StatusCode::OK,
                app.create_session(params, cause.idempotency_key),
            ))
        },
    )
    .await
}
