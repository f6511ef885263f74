//! The HTTP transport behind async-stripe's request types: a
//! [`StripeClient`] of our own, so that connections to Stripe are reused and
//! Stripe's retry headers reach [`crate::stripe`]'s retry loop.
//!
//! Why not async-stripe's own `Client`: it builds its hyper client with
//! `pool_max_idle_per_host(0)`, so no connection is ever kept and every call
//! to `api.stripe.com` pays a TCP and a TLS handshake (docs/benchmarks.md,
//! "Connections to Stripe over TLS", measures what that costs); and it reads
//! `Stripe-Should-Retry` only inside its own retry strategy and never
//! `Retry-After`. The request types (`CreateCheckoutSession`, ...) still
//! build every request: they hand this transport a method, path, query and
//! form body through the same trait async-stripe's client implements.
//!
//! What goes on the wire is what async-stripe's client sends (see its
//! `construct_request`): `{api_base}v1{path}?{query}`, `Authorization: Bearer
//! {key}` (marked sensitive), `User-Agent: Stripe/v1 RustBindings/1.0.0-rc.10
//! blazing-sun-checkout/{version}`, `Stripe-Version` (the version
//! async-stripe pins), `Stripe-Account` when a request overrides the account,
//! `Idempotency-Key` from the request strategy, and `Content-Type:
//! application/x-www-form-urlencoded` with a body. The test
//! `stripe_transport::sends_what_async_stripe_sends` compares the two byte
//! for byte.
//!
//! Differences, all deliberate:
//! - idle connections are kept ([`IDLE_TIMEOUT`]) and reused, HTTP/1.1
//!   keep-alive (HTTP/2 is not offered: nothing here can test it);
//!   `TCP_NODELAY` on;
//! - exactly one attempt per call: retries belong to [`crate::stripe`], which
//!   takes a rate-limiter slot for each one;
//! - a failed attempt is a [`HttpError`] that keeps the status, Stripe's
//!   error object, `Stripe-Should-Retry` and `Retry-After`.
//!
//! TLS: rustls on ring with the webpki roots, as async-stripe's client;
//! tests and the benchmark add a generated CA ([`Transport::extra_roots`]).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{
    AUTHORIZATION, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER, USER_AGENT,
};
use hyper::{Method, Request};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::pki_types::CertificateDer;
use stripe_client_core::{
    ConfigOverride, CustomizedStripeRequest, RequestBuilder, StripeClient, StripeClientErr,
    StripeMethod,
};
use stripe_shared::ApiErrors;
use tracing::Instrument as _;
use tracing::field::{Empty, display};

use crate::config::StripeConfig;

/// How long an idle connection stays in the pool (hyper's default).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// The user agent async-stripe sends, version included (the crate is pinned
/// exactly in the workspace manifest).
const RUST_BINDINGS: &str = "Stripe/v1 RustBindings/1.0.0-rc.10";

/// How the transport connects.
#[derive(Debug, Clone)]
pub struct Transport {
    /// How long idle connections are kept; `None` keeps none, a new
    /// connection per call (async-stripe's client).
    pub idle_timeout: Option<Duration>,
    /// `TCP_NODELAY` (async-stripe's client leaves Nagle on).
    pub nodelay: bool,
    /// Roots trusted besides the webpki ones (a test's generated CA).
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl Default for Transport {
    /// Production: connections kept [`IDLE_TIMEOUT`], `TCP_NODELAY`, the
    /// webpki roots only.
    fn default() -> Self {
        Self {
            idle_timeout: Some(IDLE_TIMEOUT),
            nodelay: true,
            extra_roots: Vec::new(),
        }
    }
}

impl Transport {
    /// async-stripe's client's connection settings: no idle connection
    /// kept, Nagle on. For the benchmark's "before".
    pub fn like_async_stripe() -> Self {
        Self {
            idle_timeout: None,
            nodelay: false,
            extra_roots: Vec::new(),
        }
    }
}

/// Why the transport could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("STRIPE_API_BASE {0:?} must be an http(s) URL ending in /")]
    ApiBase(String),
    #[error("the Stripe key cannot be sent in a header")]
    Key,
    #[error("cannot build the TLS client: {0}")]
    Tls(#[from] rustls::Error),
}

/// The retry headers of a failed answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetryHeaders {
    /// `Stripe-Should-Retry`: Stripe's word on whether a retry can succeed.
    pub should_retry: Option<bool>,
    /// `Retry-After`, in seconds or as an HTTP date.
    pub retry_after: Option<Duration>,
}

/// One failed attempt.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Stripe answered with its error JSON.
    #[error("Stripe answered {status}: {}", describe(error))]
    Api {
        status: u16,
        error: Box<ApiErrors>,
        headers: RetryHeaders,
    },
    /// A non-2xx answer that is not Stripe's error JSON (a proxy's HTML page).
    #[error("Stripe answered {status} with a body that is not Stripe's error JSON")]
    Unreadable { status: u16, headers: RetryHeaders },
    /// No whole answer within the per-attempt timeout.
    #[error("no answer from Stripe within {0:?}")]
    Timeout(Duration),
    /// The connection could not be made, or broke.
    #[error("cannot talk to Stripe: {0}")]
    Connection(String),
    /// A 2xx answer that is not the expected object.
    #[error("cannot read Stripe's answer: {0}")]
    Decode(String),
    /// The request could not be built (a bad account id, URL or header).
    #[error("cannot build the request: {0}")]
    Request(String),
}

impl HttpError {
    /// The HTTP status of the answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Api { status, .. } | Self::Unreadable { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Stripe's error object, if the answer carried one.
    pub fn api_error(&self) -> Option<&ApiErrors> {
        match self {
            Self::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// `Stripe-Should-Retry` and `Retry-After` of the answer (none without one).
    pub fn retry_headers(&self) -> RetryHeaders {
        match self {
            Self::Api { headers, .. } | Self::Unreadable { headers, .. } => *headers,
            _ => RetryHeaders::default(),
        }
    }
}

impl StripeClientErr for HttpError {
    fn deserialize_err(msg: impl std::fmt::Display) -> Self {
        Self::Decode(msg.to_string())
    }
}

/// Stripe's error object in one line: `type (code): message [param p]`.
pub fn describe(api: &ApiErrors) -> String {
    let mut text = api.type_.as_str().to_owned();
    if let Some(code) = &api.code {
        let _ = write!(text, " ({})", code.as_str());
    }
    if let Some(message) = &api.message {
        let _ = write!(text, ": {message}");
    }
    if let Some(param) = &api.param {
        let _ = write!(text, " [param {param}]");
    }
    text
}

/// A pooled HTTP client for Stripe's API; clones share the pool.
#[derive(Debug, Clone)]
pub struct StripeHttp {
    client: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
    headers: Arc<Headers>,
    timeout: Option<Duration>,
}

#[derive(Debug)]
struct Headers {
    /// `https://api.stripe.com/`: ends in `/`.
    api_base: String,
    authorization: HeaderValue,
    user_agent: HeaderValue,
    stripe_version: HeaderValue,
}

impl StripeHttp {
    /// A client for `config`'s base URL and key, with `config.timeout` per
    /// attempt.
    ///
    /// # Errors
    /// When the base URL or the key cannot be used in a request, or the TLS
    /// roots are unusable.
    pub fn new(config: &StripeConfig, transport: &Transport) -> Result<Self, BuildError> {
        let api_base = config.api_base.clone();
        if !(api_base.starts_with("http://") || api_base.starts_with("https://"))
            || !api_base.ends_with('/')
            || api_base.parse::<hyper::Uri>().is_err()
        {
            return Err(BuildError::ApiBase(api_base));
        }
        let mut authorization =
            HeaderValue::try_from(format!("Bearer {}", config.secret_key.expose()))
                .map_err(|_| BuildError::Key)?;
        authorization.set_sensitive(true);
        let user_agent = HeaderValue::try_from(format!(
            "{RUST_BINDINGS} blazing-sun-checkout/{}",
            env!("CARGO_PKG_VERSION")
        ))
        .expect("ASCII");
        let stripe_version = HeaderValue::from_static(stripe_client_core::VERSION.as_str());

        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        for root in &transport.extra_roots {
            roots.add(root.clone())?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(transport.nodelay);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);

        let mut builder = HyperClient::builder(TokioExecutor::new());
        builder.pool_timer(TokioTimer::new());
        match transport.idle_timeout {
            Some(idle) => builder.pool_idle_timeout(idle),
            None => builder.pool_max_idle_per_host(0),
        };
        Ok(Self {
            client: builder.build(connector),
            headers: Arc::new(Headers {
                api_base,
                authorization,
                user_agent,
                stripe_version,
            }),
            timeout: Some(config.timeout),
        })
    }

    fn build_request(
        &self,
        request: RequestBuilder,
        config: ConfigOverride,
    ) -> Result<Request<Full<Bytes>>, HttpError> {
        let h = &self.headers;
        let mut uri = format!("{}v1{}", h.api_base, request.path);
        if let Some(query) = request.query {
            let _ = write!(uri, "?{query}");
        }
        let method = match request.method {
            StripeMethod::Get => Method::GET,
            StripeMethod::Post => Method::POST,
            StripeMethod::Delete => Method::DELETE,
        };
        let mut builder = Request::builder()
            .method(method)
            .uri(uri)
            .header(AUTHORIZATION, h.authorization.clone())
            .header(USER_AGENT, h.user_agent.clone())
            .header(
                HeaderName::from_static("stripe-version"),
                h.stripe_version.clone(),
            );
        if let Some(account) = config.account_id {
            let account = HeaderValue::from_str(account.as_str())
                .map_err(|_| HttpError::Request("invalid account id".into()))?;
            builder = builder.header(HeaderName::from_static("stripe-account"), account);
        }
        if let Some(key) = config.request_strategy.and_then(|s| s.get_key()) {
            builder = builder.header(HeaderName::from_static("idempotency-key"), key.as_str());
        }
        let body = match request.body {
            Some(body) => {
                builder = builder.header(
                    CONTENT_TYPE,
                    HeaderValue::from_static("application/x-www-form-urlencoded"),
                );
                Bytes::from(body)
            }
            None => Bytes::new(),
        };
        builder
            .body(Full::new(body))
            .map_err(|e| HttpError::Request(e.to_string()))
    }

    /// One attempt: the whole answer, or why not.
    async fn attempt(&self, request: Request<Full<Bytes>>) -> Result<Bytes, HttpError> {
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| HttpError::Connection(chain(&e)))?;
        let status = response.status();
        let headers = retry_headers(response.headers());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| HttpError::Connection(chain(&e)))?
            .to_bytes();
        if status.is_success() {
            return Ok(body);
        }
        let status = status.as_u16();
        let error = std::str::from_utf8(&body)
            .ok()
            .and_then(|text| miniserde::json::from_str::<stripe_shared::Error>(text).ok());
        Err(match error {
            Some(e) => HttpError::Api {
                status,
                error: e.error,
                headers,
            },
            None => HttpError::Unreadable { status, headers },
        })
    }
}

impl StripeClient for StripeHttp {
    type Err = HttpError;

    /// One attempt, under the request's timeout or the configured one. The
    /// request strategy's idempotency key is sent; its retries are not
    /// ([`crate::stripe`] retries).
    async fn execute(&self, request: CustomizedStripeRequest) -> Result<Bytes, HttpError> {
        let (request, config) = request.into_pieces();
        let timeout = config.timeout.or(self.timeout);
        let request = self.build_request(request, config)?;
        // One span per HTTP call, in the checkout's trace when exported.
        let span = tracing::info_span!(
            "stripe",
            otel.kind = "client",
            http.request.method = %request.method(),
            url.path = request.uri().path(),
            http.response.status_code = Empty,
            otel.status_code = Empty,
            otel.status_description = Empty,
        );
        let attempt = self.attempt(request).instrument(span.clone());
        let answer = match timeout {
            Some(limit) => tokio::time::timeout(limit, attempt)
                .await
                .unwrap_or(Err(HttpError::Timeout(limit))),
            None => attempt.await,
        };
        if let Err(e) = &answer {
            if let Some(status) = e.status() {
                span.record("http.response.status_code", status);
            }
            span.record("otel.status_code", "ERROR");
            span.record("otel.status_description", display(e));
        }
        answer
    }
}

/// `Stripe-Should-Retry` and `Retry-After` of an answer.
pub fn retry_headers(headers: &hyper::HeaderMap) -> RetryHeaders {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    RetryHeaders {
        should_retry: text("stripe-should-retry").and_then(|v| v.trim().parse().ok()),
        retry_after: headers
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, chrono::Utc::now())),
    }
}

/// `Retry-After`: delay-seconds, or an HTTP date (a date in the past is no wait).
fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - now)
            .to_std()
            .unwrap_or_default(),
    )
}

/// An error and its sources in one line (hyper's own message is only
/// "client error (Connect)").
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let _ = write!(text, ": {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        let now = chrono::DateTime::parse_from_rfc2822("Tue, 01 Dec 2026 03:00:00 GMT")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Tue, 01 Dec 2026 03:00:05 GMT", now),
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            parse_retry_after("Tue, 01 Dec 2026 02:59:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past is no wait"
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-1", now), None);
    }

    #[test]
    fn retry_headers_are_read_case_insensitively() {
        let mut headers = hyper::HeaderMap::new();
        headers.insert("Stripe-Should-Retry", HeaderValue::from_static("false"));
        headers.insert("Retry-After", HeaderValue::from_static("3"));
        assert_eq!(
            retry_headers(&headers),
            RetryHeaders {
                should_retry: Some(false),
                retry_after: Some(Duration::from_secs(3)),
            }
        );
        assert_eq!(
            retry_headers(&hyper::HeaderMap::new()),
            RetryHeaders::default()
        );
    }
}
