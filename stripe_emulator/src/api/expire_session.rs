//! `POST /v1/checkout/sessions/{id}/expire`: only `open` sessions can be
//! expired; sends `checkout.session.expired` like Stripe. Holds the
//! session's object lock until the answer leaves ([`crate::api`]).

use std::sync::{Arc, Mutex};

use axum::Extension;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};

use super::{RequestId, idempotent, parameters};
use crate::error::ApiError;
use crate::known_params::EXPAND_ONLY;
use crate::session::{Outcome, Status};
use crate::state::{App, ObjectLock};

pub async fn handle(
    State(app): State<Arc<App>>,
    Extension(request_id): Extension<RequestId>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let pairs = match crate::form::pairs(&body) {
        Ok(p) => p,
        Err(e) => return ApiError::invalid(None, e.to_string(), "body").into_response(),
    };
    let route = format!("POST /v1/checkout/sessions/{id}/expire");
    let held: Arc<Mutex<Option<ObjectLock>>> = Arc::default();
    let (app2, id2, held2) = (app.clone(), id.clone(), held.clone());
    let mut response = idempotent(&app, &headers, &request_id, &route, &pairs, |cause| async move {
        let (app, id) = (app2, id2);
        parameters(&body, &EXPAND_ONLY)?;
        let session = app
            .session(&id)
            .ok_or_else(|| ApiError::no_such_session(&id))?;
        let lock = app.object_locks.try_lock(&id).ok_or_else(ApiError::lock_timeout)?;
        *held2.lock().expect("held lock") = Some(lock);
        if session.status != Status::Open {
            return Err(ApiError::wrong_state(format!(
                "Only Checkout Sessions with a status in [\"open\"] can be expired. This Checkout Session has a status of \"{}\".",
                serde_json::to_value(session.status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
            )));
        }
        Ok((StatusCode::OK, app.apply(&id, Outcome::Expired, &cause)?))
    })
    .await;
    if let Some(lock) = held.lock().expect("held lock").take() {
        response.extensions_mut().insert(Arc::new(lock));
    }
    response
}
