//! `GET /v1/checkout/sessions/{id}`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::{App, roll};
use crate::stats::Stats;

pub async fn handle(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    if roll(app.faults().rate_500) {
        Stats::inc(&app.stats.injected_500);
        return ApiError::internal().into_response();
    }
    match app.session_json(&id) {
        Some(json) => axum::Json(json).into_response(),
        None => ApiError::no_such_session(&id).into_response(),
    }
}
