//! Caller authentication, as a tower layer around the `CheckoutGateway`
//! service only (health and reflection stay open, as load balancers and
//! grpcurl expect).
//!
//! Every call must carry `Authorization: Bearer <JWT>` (HS256, see
//! `checkout_contract::auth`). The verified [`Principal`] is put into the
//! request's extensions, where the RPC handlers find it with [`caller`];
//! authorisation (who may act for which user) happens in the handlers. A
//! missing or bad token ends the call here with UNAUTHENTICATED.
//!
//! With [`AuthMode::Disabled`] every caller is the service `anonymous`.

use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use checkout_contract::auth::{JwtVerifier, Principal, Role};
use futures::future::{Either, Ready, ready};
use tonic::server::NamedService;
use tower::{Layer, Service};

use crate::config::AuthMode;
use crate::error::ApiError;
use crate::metrics::Metrics;

/// The subject every call has when authentication is disabled.
pub const ANONYMOUS: &str = "anonymous";

/// Adds [`Authenticate`] around a service.
#[derive(Clone)]
pub struct AuthLayer {
    verifier: Option<Arc<JwtVerifier>>,
    metrics: Arc<Metrics>,
}

impl AuthLayer {
    pub fn new(mode: &AuthMode, metrics: Arc<Metrics>) -> Self {
        let verifier = match mode {
            AuthMode::Jwt(secret) => Some(Arc::new(JwtVerifier::new(secret))),
            AuthMode::Disabled => None,
        };
        Self { verifier, metrics }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Authenticate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Authenticate {
            inner,
            verifier: self.verifier.clone(),
            metrics: Arc::clone(&self.metrics),
        }
    }
}

/// Verifies the bearer token, then calls the inner service with the
/// [`Principal`] in the request extensions.
#[derive(Clone)]
pub struct Authenticate<S> {
    inner: S,
    verifier: Option<Arc<JwtVerifier>>,
    metrics: Arc<Metrics>,
}

impl<S: NamedService> NamedService for Authenticate<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Authenticate<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<S::Response, S::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let principal = match &self.verifier {
            None => Ok(Principal {
                subject: ANONYMOUS.to_owned(),
                role: Role::Service,
            }),
            Some(v) => {
                let header = request
                    .headers()
                    .get(http::header::AUTHORIZATION)
                    .and_then(|h| h.to_str().ok());
                v.verify_header(header)
            }
        };
        match principal {
            Ok(p) => {
                request.extensions_mut().insert(p);
                Either::Right(self.inner.call(request))
            }
            Err(e) => {
                let method = request
                    .uri()
                    .path()
                    .rsplit('/')
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                tracing::info!(%method, error = %e, "call rejected: not authenticated");
                self.metrics
                    .record_rpc(&method, tonic::Code::Unauthenticated, Duration::ZERO);
                let status = tonic::Status::from(ApiError::Unauthenticated(e));
                Either::Left(ready(Ok(status.into_http())))
            }
        }
    }
}

/// The authenticated caller of `request` (put there by [`Authenticate`]).
///
/// # Errors
/// When the request did not pass through [`Authenticate`] (a wiring bug).
pub fn caller<T>(request: &tonic::Request<T>) -> Result<Principal, ApiError> {
    request
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("request was not authenticated".into()))
}

/// The caller as it enters `RequestId::derive`: role and subject, so a user
/// `42` and a service named `42` never share request ids.
pub fn caller_key(p: &Principal) -> String {
    let role = match p.role {
        Role::User => "user",
        Role::Service => "service",
    };
    format!("{role}:{}", p.subject)
}

/// May `p` see a checkout of `owner`? (Services see all; users their own.)
pub fn may_see(p: &Principal, owner: Option<i64>) -> bool {
    match (p.role, owner) {
        (Role::Service, _) | (Role::User, None) => true,
        (Role::User, Some(owner)) => p.user_id().is_some_and(|u| u.get() == owner),
    }
}
