//! Caller authentication, as a tower layer around the `CheckoutGateway`
//! service only (health and reflection stay open, as load balancers and
//! grpcurl expect).
//!
//! Every call must carry `Authorization: Bearer <JWT>` (HS256 with
//! `JWT_SECRET`, and/or RS256/ES256 from an identity provider's JWKS: see
//! `checkout_contract::auth`). The verified [`Principal`] is put into the
//! request's extensions, where the RPC handlers find it with [`caller`];
//! authorisation (who may act for which user) happens in the handlers. A
//! missing or bad token ends the call here with UNAUTHENTICATED; UNAVAILABLE
//! when the identity provider's keys cannot be fetched (the token may be fine).
//!
//! With [`AuthMode::Disabled`] every caller is the service `anonymous`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use checkout_contract::auth::{Principal, Role, TokenSettings, TokenVerifier};
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
    verifier: Option<TokenVerifier>,
    metrics: Arc<Metrics>,
}

impl AuthLayer {
    /// Within a Tokio runtime: with an identity provider configured, its
    /// keys are fetched in the background now (a failure is logged; calls
    /// fetch again on demand).
    pub fn new(mode: &AuthMode, metrics: Arc<Metrics>) -> Self {
        let verifier = match mode {
            AuthMode::Jwt(secret) => {
                Some(TokenVerifier::new(&TokenSettings::hs256(secret.clone())))
            }
            AuthMode::Tokens(settings) => {
                let verifier = TokenVerifier::new(settings);
                let warm = verifier.clone();
                tokio::spawn(async move { warm.warm_up().await });
                Some(verifier)
            }
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
    verifier: Option<TokenVerifier>,
    metrics: Arc<Metrics>,
}

impl<S: NamedService> NamedService for Authenticate<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Authenticate<S>
where
    S: Service<http::Request<B>, Response = http::Response<tonic::body::Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
    B: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let Some(verifier) = self.verifier.clone() else {
            request.extensions_mut().insert(Principal {
                subject: ANONYMOUS.to_owned(),
                role: Role::Service,
            });
            return Box::pin(self.inner.call(request));
        };
        // The service that was polled ready serves this call; its clone
        // waits for the next poll_ready.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let metrics = Arc::clone(&self.metrics);
        Box::pin(async move {
            let header = request
                .headers()
                .get(http::header::AUTHORIZATION)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned);
            match verifier.verify_header(header.as_deref()).await {
                Ok(p) => {
                    request.extensions_mut().insert(p);
                    inner.call(request).await
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
                    let error = ApiError::Unauthenticated(e);
                    metrics.record_rpc(&method, error.code(), Duration::ZERO);
                    Ok(tonic::Status::from(error).into_http())
                }
            }
        })
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
