//! [`ApiError`]: the one place HTTP errors become JSON bodies:
//!
//! ```json
//! {"error": {"code": "invalid_field", "field": "amount_cents", "message": "amount_cents: must be ..."}}
//! ```
//!
//! `field` is present when one input field is to blame.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::response::{IntoResponse, Response};
use checkout_contract::ValidationError;
use checkout_contract::auth::AuthError;
use http::StatusCode;
use http::header::WWW_AUTHENTICATE;
use serde_json::json;

use crate::store::StoreError;

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 401: missing, malformed, expired or badly signed bearer token;
    /// 503 when the identity provider's keys cannot be fetched.
    #[error("{0}")]
    Unauthorized(AuthError),
    /// 403: a valid token that may not use this API (a service token).
    #[error("{0}")]
    Forbidden(&'static str),
    /// 400: one field is wrong.
    #[error("{0}")]
    Invalid(ValidationError),
    /// 400 / 413: the body could not be read or is not a JSON object.
    #[error("{message}")]
    Body { status: StatusCode, message: String },
    /// 404: no such resource, or not the caller's.
    #[error("not found")]
    NotFound,
    /// 408: the request took longer than the server allows.
    #[error("the request took too long")]
    Timeout,
    /// 503: the broker did not acknowledge the checkout request in time.
    #[error("cannot queue the checkout right now, try again later")]
    Unavailable,
    /// 500: the database failed (logged with its cause, not shown).
    #[error("internal error")]
    Store(#[from] StoreError),
}

impl ApiError {
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid(ValidationError::new(field, reason))
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Unauthorized(AuthError::KeysUnavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::Invalid(_) => StatusCode::BAD_REQUEST,
            Self::Body { status, .. } => *status,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::Timeout => StatusCode::REQUEST_TIMEOUT,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Store(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::Unauthorized(AuthError::Expired) => "token_expired",
            Self::Unauthorized(AuthError::KeysUnavailable(_)) => "auth_unavailable",
            Self::Unauthorized(_) => "unauthorized",
            Self::Forbidden(_) => "forbidden",
            Self::Invalid(_) => "invalid_field",
            Self::Body { status, .. } if *status == StatusCode::PAYLOAD_TOO_LARGE => {
                "body_too_large"
            }
            Self::Body { .. } => "invalid_body",
            Self::NotFound => "not_found",
            Self::Timeout => "timeout",
            Self::Unavailable => "unavailable",
            Self::Store(_) => "internal",
        }
    }
}

impl From<BytesRejection> for ApiError {
    fn from(rejection: BytesRejection) -> Self {
        // A body that did not arrive in time (`RequestBodyTimeoutLayer`) is a 408, not a 400.
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&rejection);
        while let Some(error) = source {
            if error.is::<tower_http::timeout::TimeoutError>() {
                return Self::Timeout;
            }
            source = error.source();
        }
        Self::Body {
            status: rejection.status(),
            message: rejection.body_text(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Store(e) = &self {
            tracing::error!(error = %e, "database error while answering a request");
        }
        let status = self.status();
        let mut error = json!({ "code": self.code(), "message": self.to_string() });
        if let Self::Invalid(v) = &self {
            error["field"] = json!(v.field);
        }
        let mut response = (status, Json(json!({ "error": error }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
        }
        response
    }
}
