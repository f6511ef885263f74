//! `POST /v1/checkout/sessions/{id}/expire`: only `open` sessions can be
//! expired; sends `checkout.session.expired` like Stripe.

use std::sync::Arc;

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{RequestId, idempotent};
use crate::error::ApiError;
use crate::form;
use crate::session::{Outcome, Status};
use crate::state::App;

pub async fn handle(
    State(app): State<Arc<App>>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs = match form::pairs(&body) {
        Ok(p) => p,
        Err(e) => return ApiError::invalid(None, e.to_string(), "body").into_response(),
    };
    let route = format!("POST /v1/checkout/sessions/{id}/expire");
    let (app2, id2) = (app.clone(), id.clone());
    idempotent(&app, &headers, &request_id, &route, &pairs, |cause| async move {
        let (app, id) = (app2, id2);
        let session = app.session(&id).ok_or_else(|| ApiError::no_such_session(&id))?;
        if session.status != Status::Open {
            return Err(ApiError::wrong_state(format!(
                "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of \"{}\".",
                serde_json::to_value(session.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
            )));
        }
        Ok((StatusCode::OK, app.apply(&id, Outcome::Expired, &cause)?))
    })
    .await
}
