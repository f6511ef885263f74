//! `GET /v1/checkout/sessions`: newest first, Stripe's list object, with
//! `limit`, `starting_after`, `ending_before`, `status` and `payment_intent`.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::error::ApiError;
use crate::form::{self, Node};
use crate::session::Session;
use crate::state::{App, roll};
use crate::stats::Stats;

pub async fn handle(State(app): State<Arc<App>>, RawQuery(query): RawQuery) -> Response {
    if roll(app.faults().rate_500) {
        Stats::inc(&app.stats.injected_500);
        return ApiError::internal().into_response();
    }
    match list(&app, query.as_deref().unwrap_or("")) {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

fn list(app: &App, query: &str) -> Result<serde_json::Value, ApiError> {
    let pairs = form::pairs(query.as_bytes())
        .map_err(|e| ApiError::invalid(None, e.to_string(), "query"))?;
    let params =
        form::parse(&pairs).map_err(|e| ApiError::invalid(None, e.to_string(), e.0.clone()))?;
    let text = |name: &str| params.get(name).and_then(Node::as_str);

    let limit = match text("limit") {
        None => 10,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if (1..=100).contains(&n) => n,
            _ => {
                return Err(ApiError::invalid(
                    Some("parameter_invalid_integer"),
                    "This value must be between 1 and 100.",
                    "limit",
                ));
            }
        },
    };
    let mut sessions: Vec<Session> = app.sessions_newest_first();
    for (param, cursor_after) in [("starting_after", true), ("ending_before", false)] {
        if let Some(cursor) = text(param) {
            let at = sessions
                .iter()
                .position(|s| s.id == cursor)
                .ok_or_else(|| {
                    ApiError::invalid(
                        Some("resource_missing"),
                        format!("No such checkout.session: '{cursor}'"),
                        param,
                    )
                })?;
            sessions = if cursor_after {
                sessions.split_off(at + 1)
            } else {
                sessions[..at].to_vec()
            };
        }
    }
    if let Some(status) = text("status") {
        sessions.retain(|s| serde_json::to_value(s.status).is_ok_and(|v| v == status));
    }
    if let Some(pi) = text("payment_intent") {
        sessions.retain(|s| s.payment_intent.as_deref() == Some(pi));
    }
    // `ending_before` pages backwards: the page is the one just before the cursor.
    let has_more = sessions.len() > limit;
    let page: Vec<serde_json::Value> =
        if text("ending_before").is_some() && text("starting_after").is_none() {
            let skip = sessions.len().saturating_sub(limit);
            sessions[skip..].iter().map(Session::to_json).collect()
        } else {
            sessions.iter().take(limit).map(Session::to_json).collect()
        };
    Ok(
        json!({"object": "list", "data": page, "has_more": has_more, "url": "/v1/checkout/sessions"}),
    )
}
