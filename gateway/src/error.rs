//! The gateway's errors and the ONE place they become gRPC statuses.
//!
//! - [`Error`]: start-up failures of [`crate::Gateway`] (bind, Kafka client, reflection).
//! - [`ApiError`]: why a call failed; `impl From<ApiError> for tonic::Status`
//!   below is the only mapping from errors to gRPC codes.

use std::time::Duration;

use checkout_contract::ValidationError;
use checkout_contract::auth::AuthError;

/// Why the gateway could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read TLS file {path}: {source}")]
    TlsFile {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("cannot set up TLS: {0}")]
    Tls(tonic::transport::Error),
    #[error("cannot bind {what} listener on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create Kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cannot build reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("gRPC server failed: {0}")]
    Serve(#[from] tonic::transport::Error),
    #[error("admin server failed: {0}")]
    Admin(std::io::Error),
    #[error("server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Why a call failed. The messages are written for the caller.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    Invalid(#[from] ValidationError),
    #[error("{0}")]
    Unauthenticated(#[from] AuthError),
    #[error("caller {caller} may not act for user_id {user_id}")]
    PermissionDenied { caller: String, user_id: i64 },
    #[error(
        "idempotency_key {key:?} was already used by this caller with a different payload (request_id {request_id}); use a new key for a new checkout"
    )]
    IdempotencyConflict { key: String, request_id: String },
    #[error("no checkout with request_id {0} is known")]
    NotFound(String),
    #[error(
        "the broker did not acknowledge the request within {timeout:?}; retry with the same idempotency_key ({cause})"
    )]
    ProduceTimeout { timeout: Duration, cause: String },
    #[error(
        "no terminal status for request_id {0} before the deadline; watch again with resume_after"
    )]
    WatchDeadline(String),
    #[error(
        "this stream fell more than {0} updates behind; watch again with resume_after set to the last cursor received"
    )]
    Lagged(u64),
    #[error(
        "gateway is shutting down; reconnect (to another replica) with resume_after set to the last cursor received"
    )]
    ShuttingDown,
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// The gRPC code this error ends a call with.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            ApiError::Invalid(_) => Code::InvalidArgument,
            ApiError::Unauthenticated(AuthError::KeysUnavailable(_)) => Code::Unavailable,
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::PermissionDenied { .. } => Code::PermissionDenied,
            ApiError::IdempotencyConflict { .. } => Code::AlreadyExists,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::ProduceTimeout { .. } | ApiError::ShuttingDown => Code::Unavailable,
            ApiError::WatchDeadline(_) => Code::DeadlineExceeded,
            ApiError::Lagged(_) => Code::ResourceExhausted,
            ApiError::Internal(_) => Code::Internal,
        }
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        use tonic::Code;
        let code = e.code();
        if code == Code::Internal {
            tracing::error!(error = %e, "internal error");
        }
        tonic::Status::new(code, e.to_string())
    }
}
