//! `GET /v1/checkout/sessions`: newest first, Stripe's list object, with
//! `limit`, `starting_after`, `ending_before`, `status`, `payment_intent` and
//! `created` (a Unix time, or `created[gt|gte|lt|lte]`). The version's other
//! list parameters are accepted and ignored; unknown ones get 400.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::parameters;
use crate::error::ApiError;
use crate::form::Node;
use crate::known_params::LIST_SESSIONS;
use crate::session::Session;
use crate::state::{App, roll};
use crate::stats::Stats;

pub async fn handle(State(app): State<Arc<App>>, RawQuery(query): RawQuery) -> Response {
    let params = match parameters(query.unwrap_or_default().as_bytes(), &LIST_SESSIONS) {
        Ok((_, tree)) => tree,
        Err(e) => return e.into_response(),
    };
    if roll(app.faults().rate_500) {
        Stats::inc(&app.stats.injected_500);
        return ApiError::internal().into_response();
    }
    match list(&app, &params) {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => e.into_response(),
    }
}

fn list(app: &App, params: &Node) -> Result<serde_json::Value, ApiError> {
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
    if let Some(created) = params.get("created") {
        let range = CreatedRange::parse(created)?;
        sessions.retain(|s| range.contains(s.created));
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

/// The `created` filter: `created=T` is exactly T; `created[gt]`, `[gte]`,
/// `[lt]`, `[lte]` bound it (any combination).
#[derive(Debug, Default, PartialEq, Eq)]
struct CreatedRange {
    gt: Option<i64>,
    gte: Option<i64>,
    lt: Option<i64>,
    lte: Option<i64>,
}

impl CreatedRange {
    fn parse(node: &Node) -> Result<Self, ApiError> {
        let integer = |raw: &str, param: &str| {
            raw.parse::<i64>().map_err(|_| {
                ApiError::invalid(
                    Some("parameter_invalid_integer"),
                    format!("Invalid integer: {raw}"),
                    param,
                )
            })
        };
        if let Some(raw) = node.as_str() {
            let at = integer(raw, "created")?;
            return Ok(Self {
                gte: Some(at),
                lte: Some(at),
                ..Self::default()
            });
        }
        let mut range = Self::default();
        for (key, value) in node.as_map().into_iter().flatten() {
            let param = format!("created[{key}]");
            let Some(raw) = value.as_str() else {
                return Err(ApiError::invalid(
                    None,
                    format!("Invalid {param}: must be an integer"),
                    param,
                ));
            };
            let at = Some(integer(raw, &param)?);
            match key.as_str() {
                "gt" => range.gt = at,
                "gte" => range.gte = at,
                "lt" => range.lt = at,
                "lte" => range.lte = at,
                _ => {
                    return Err(ApiError::invalid(
                        None,
                        format!("Received unknown parameter: {param}"),
                        param,
                    ));
                }
            }
        }
        Ok(range)
    }

    fn contains(&self, created: i64) -> bool {
        self.gt.is_none_or(|t| created > t)
            && self.gte.is_none_or(|t| created >= t)
            && self.lt.is_none_or(|t| created < t)
            && self.lte.is_none_or(|t| created <= t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form;

    fn range(query: &str) -> Result<CreatedRange, ApiError> {
        let pairs = form::pairs(query.as_bytes()).unwrap();
        let tree = form::parse(&pairs).unwrap();
        CreatedRange::parse(tree.get("created").unwrap())
    }

    #[test]
    fn created_takes_an_exact_time_or_bounds() {
        let exact = range("created=100").unwrap();
        assert!(exact.contains(100) && !exact.contains(99) && !exact.contains(101));

        let since = range("created%5Bgte%5D=100").unwrap();
        assert!(since.contains(100) && since.contains(10_000) && !since.contains(99));

        let window = range("created[gt]=100&created[lte]=200").unwrap();
        assert!(!window.contains(100) && window.contains(101) && window.contains(200));
        assert!(!window.contains(201));
        let before = range("created[lt]=100").unwrap();
        assert!(before.contains(99) && !before.contains(100));
    }

    #[test]
    fn bad_created_filters_are_400_naming_the_parameter() {
        let e = range("created[gte]=soon").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("created[gte]"));
        let e = range("created[after]=1").unwrap_err();
        assert_eq!(e.param.as_deref(), Some("created[after]"));
    }
}
