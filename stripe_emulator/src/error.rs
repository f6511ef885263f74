//! Stripe's error responses in one place: `{"error":{"type","code","message","param"}}`
//! with Stripe's status codes. Every `/v1` and control handler maps its
//! failures to an [`ApiError`]; [`Error`] is the crate's start-up error.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// Start-up failures of [`crate::Emulator::build`].
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot bind {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot build the webhook HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("invalid fault settings: {0:?} must be between 0 and 1")]
    Faults(Vec<&'static str>),
}

/// One Stripe API error response.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub type_: &'static str,
    pub code: Option<&'static str>,
    pub message: String,
    pub param: Option<String>,
    /// Raised before the endpoint began executing (its parameters failed
    /// validation, or another request holds the object: `lock_timeout`):
    /// Stripe saves no idempotent result for it, so a retry
    /// with the same key runs again. False for everything the endpoint
    /// itself answers (a missing session, a state it forbids, a business
    /// rule, a 500), which a retry with the same key gets replayed.
    pub before_execution: bool,
}

/// The `Stripe-Should-Retry` value Stripe sends with a response of `status`:
/// `true` for a concurrent use of an idempotency key (409), any 429 and any
/// 5xx; `false` for other errors (400, 401, 402, 404: retrying the same
/// request cannot help); none on success. Stripe documents no `Retry-After`,
/// and the emulator sends none.
pub fn should_retry(status: StatusCode) -> Option<&'static str> {
    match status.as_u16() {
        409 | 429 | 500..=599 => Some("true"),
        400..=499 => Some("false"),
        _ => None,
    }
}

impl ApiError {
    fn new(
        status: StatusCode,
        type_: &'static str,
        code: Option<&'static str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            type_,
            code,
            message: message.into(),
            param: None,
            before_execution: false,
        }
    }

    #[must_use]
    pub fn param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Marks an error the endpoint itself answered (see
    /// [`ApiError::before_execution`]): saved under the idempotency key.
    #[must_use]
    pub fn during_execution(mut self) -> Self {
        self.before_execution = false;
        self
    }

    /// 400 `invalid_request_error` for a bad parameter, found before the
    /// endpoint runs (not saved under an idempotency key; see
    /// [`ApiError::during_execution`] for the ones the endpoint finds).
    pub fn invalid(
        code: Option<&'static str>,
        message: impl Into<String>,
        param: impl Into<String>,
    ) -> Self {
        let mut e = Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            code,
            message,
        )
        .param(param);
        e.before_execution = true;
        e
    }

    /// 400 `parameter_unknown`: a parameter the endpoint does not have.
    pub fn unknown_parameter(param: &str) -> Self {
        Self::invalid(
            Some("parameter_unknown"),
            format!("Received unknown parameter: {param}"),
            param,
        )
    }

    /// 400 `parameter_missing` for `param`.
    pub fn missing(param: &str) -> Self {
        Self::invalid(
            Some("parameter_missing"),
            format!("Missing required param: {param}."),
            param,
        )
    }

    /// 401: no or a wrong API key.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_request_error",
            None,
            message,
        )
    }

    /// 404 `resource_missing`.
    pub fn no_such_session(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            Some("resource_missing"),
            format!("No such checkout.session: '{id}'"),
        )
        .param("session")
    }

    /// 429 `lock_timeout`: another request is working on the same object.
    /// The endpoint could not begin, so nothing is saved under the key.
    pub fn lock_timeout() -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request_error",
            Some("lock_timeout"),
            "This object cannot be accessed right now because another API request or Stripe process is currently accessing it. \
             If you see this error intermittently, retry the request. If you see this error frequently and are making multiple \
             concurrent requests to a single object, make your requests serially or at a lower rate.",
        );
        e.before_execution = true;
        e
    }

    /// 429 `rate_limit` (the account limit, or injected).
    pub fn rate_limited() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "invalid_request_error",
            Some("rate_limit"),
            "Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.",
        )
    }

    /// 500 `api_error` (injected).
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "api_error",
            None,
            "An unknown error occurred (injected by the Stripe emulator).",
        )
    }

    /// 400 `idempotency_error`: the key was first used with other parameters.
    pub fn idempotency_mismatch(key: &str) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "idempotency_error",
            None,
            format!(
                "Keys for idempotent requests can only be used with the same parameters they were first used with. \
                 Try using a key other than '{key}' if you meant to execute a different request."
            ),
        )
    }

    /// 409 `idempotency_key_in_use`: the first request with this key is still running.
    pub fn idempotency_in_use(key: &str) -> Self {
        Self::new(
            StatusCode::CONFLICT,
            "invalid_request_error",
            Some("idempotency_key_in_use"),
            format!(
                "There is currently another in-progress request using this Idempotent Key (that probably means you submitted \
                 twice, and the other request is still going through): {key}. Please try again later."
            ),
        )
    }

    /// 400: a state transition the session does not allow.
    pub fn wrong_state(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            None,
            message,
        )
    }

    pub fn body(&self) -> serde_json::Value {
        json!({"error": {
            "type": self.type_,
            "code": self.code,
            "message": self.message,
            "param": self.param,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        // Stripe tells clients which failures are worth retrying.
        if let Some(retry) = should_retry(self.status) {
            response
                .headers_mut()
                .insert("stripe-should-retry", HeaderValue::from_static(retry));
        }
        response
    }
}
