//! `GET /v1/checkout/sessions/{id}` (`expand` is the only parameter).

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};

use super::parameters;
use crate::error::ApiError;
use crate::known_params::EXPAND_ONLY;
use crate::state::{App, roll};
use crate::stats::Stats;

pub async fn handle(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    if let Err(e) = parameters(query.unwrap_or_default().as_bytes(), &EXPAND_ONLY) {
        return e.into_response();
    }
    if roll(app.faults().rate_500) {
        Stats::inc(&app.stats.injected_500);
        return ApiError::internal().into_response();
    }
    match app.session_json(&id) {
        Some(json) => axum::Json(json).into_response(),
        None => ApiError::no_such_session(&id).into_response(),
    }
}
