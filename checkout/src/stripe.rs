//! Every call the checkout service makes to Stripe, with Stripe's error
//! classes handled as this table says:
//!
//! | Stripe answer                 | What happens                                     |
//! |-------------------------------|--------------------------------------------------|
//! | 2xx                           | the object                                       |
//! | 400 `idempotency_error`       | [`CreateError::KeyConflict`]: a session for the request may exist |
//! | 400, 402, 404 (other 4xx)     | `Rejected`: no retry                             |
//! | 401, 403                      | `Unauthorized`: stop the worker                  |
//! | 409, 429, 5xx, timeout, I/O   | retry, jittered, same idempotency key, then `GaveUp` |
//!
//! Stripe's retry headers on a failed answer come first: `Stripe-Should-Retry:
//! false` ends the call's retries at once (still `GaveUp` for a 409/429/5xx:
//! the request waits, it is not rejected), `true` retries even a status the
//! table calls permanent (never 401/403), and `Retry-After` is the least wait
//! before the next attempt (capped, [`crate::retry::RETRY_AFTER_CAP`]).
//!
//! - [`Stripe::create_session`]: every attempt carries the idempotency key
//!   `checkout:{request_id}` and parameters that are a pure function of the
//!   request ([`session_params`]), so a retried, redelivered or copied
//!   request never creates a second session.
//! - [`Stripe::retrieve_session`], [`Stripe::expire_session`] and
//!   [`Stripe::find_session_for_request`] (list, newest first, matched by
//!   `client_reference_id`): what became of a session, for the worker when
//!   the key answers with a conflict or a saved 500, and for reconciliation.
//!
//! Every attempt of every call takes a slot of one client-side
//! [`RateLimiter`], shared by clones of [`Stripe`]. The requests are
//! async-stripe's request types; they go over [`StripeHttp`], our pooled
//! transport (connections reused; see [`crate::stripe_http`] for why and
//! what it sends).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use checkout_contract::ValidCheckoutRequest;
use chrono::{DateTime, Utc};
use stripe::{IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    ExpireCheckoutSession, ListCheckoutSession, ProductData, RetrieveCheckoutSession,
};
use stripe_shared::{
    ApiErrorsType, CheckoutSession, CheckoutSessionMode, CheckoutSessionPaymentStatus,
    CheckoutSessionStatus,
};
use stripe_types::{RangeBoundsTs, RangeQueryTs};

use crate::config::StripeConfig;
use crate::metrics::{Endpoint, Metrics, StripeOutcome};
use crate::rate_limit::RateLimiter;
use crate::retry::RetryPolicy;
use crate::stripe_http::{HttpError, StripeHttp, Transport};

/// A session Stripe created (or replayed for the same idempotency key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSession {
    pub id: String,
    pub url: Option<String>,
}

/// Why no session was created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// 400 `idempotency_error`: the key was first used with other parameters
    /// (an older version of the worker, or a request reusing a request_id).
    /// A session for the request may well exist: look for it, never answer `failed`.
    #[error("Stripe rejected the checkout session (400): {message}")]
    KeyConflict { message: String },
    /// A permanent answer (400, 402, 404, ...): the request itself is the problem.
    #[error("Stripe rejected the checkout session ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// 401/403: our key is wrong or lacks permission; every request would fail.
    #[error("Stripe refused our API key ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// Transient failures used up the retry budget of this call. Whether a
    /// session exists is unknown.
    #[error("Stripe unavailable after {attempts} attempts: {last}")]
    GaveUp {
        attempts: u32,
        last: String,
        /// The last answer was Stripe's own 500: Stripe saved it under the
        /// key and will replay it for 24 h, so this key can never create
        /// the session (see [`idempotency_key`]'s generations).
        key_spent: bool,
    },
}

/// Why a retrieve, expire or list call did not return what was asked.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// A permanent answer (400, 404, ...), e.g. an unknown session or one
    /// that can no longer be expired.
    #[error("Stripe rejected the call ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// 401/403: our key is wrong or lacks permission.
    #[error("Stripe refused our API key ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// Transient failures used up the retry budget; try again later.
    #[error("Stripe unavailable after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
}

impl CallError {
    /// The class of the failure, as [`classify`] would say it.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Rejected { .. } => ErrorClass::Permanent,
            Self::Unauthorized { .. } => ErrorClass::Unauthorized,
            Self::GaveUp { .. } => ErrorClass::Transient,
        }
    }
}

/// What to do about one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Permanent,
    Unauthorized,
    Transient,
}

/// Classifies an error of one attempt: by its status, unless Stripe said
/// `Stripe-Should-Retry: true` about a status the table calls permanent.
pub fn classify(error: &HttpError) -> ErrorClass {
    let class = match error {
        HttpError::Api { status, .. } => classify_status(*status),
        // No answer in time, the connection failed, or an answer we could not
        // read (a proxy's HTML 502 page): all worth another try.
        HttpError::Timeout(_)
        | HttpError::Connection(_)
        | HttpError::Unreadable { .. }
        | HttpError::Decode(_) => ErrorClass::Transient,
        HttpError::Request(_) => ErrorClass::Permanent,
    };
    match (class, error.retry_headers().should_retry) {
        (ErrorClass::Permanent, Some(true)) => ErrorClass::Transient,
        (class, _) => class,
    }
}

/// Classifies an HTTP status of a failed attempt.
pub fn classify_status(status: u16) -> ErrorClass {
    match status {
        401 | 403 => ErrorClass::Unauthorized,
        409 | 429 | 500..=599 => ErrorClass::Transient,
        _ => ErrorClass::Permanent,
    }
}

/// The `outcome` label of a failed HTTP call.
fn outcome_of(error: &HttpError) -> StripeOutcome {
    match error {
        HttpError::Api { status, .. } | HttpError::Unreadable { status, .. } => {
            StripeOutcome::of_status(*status)
        }
        HttpError::Timeout(_) | HttpError::Connection(_) => StripeOutcome::NetworkError,
        // A 2xx that is not the object asked for: Stripe's side.
        HttpError::Decode(_) => StripeOutcome::ServerError,
        HttpError::Request(_) => StripeOutcome::ClientError,
    }
}

fn describe(error: &HttpError) -> (Option<u16>, String) {
    match error {
        HttpError::Api { status, error, .. } => {
            (Some(*status), crate::stripe_http::describe(error))
        }
        other => (other.status(), other.to_string()),
    }
}

/// The last failed attempt of a call, after its retries.
#[derive(Debug)]
struct Failure {
    class: ErrorClass,
    status: Option<u16>,
    message: String,
    attempts: u32,
    /// Stripe's error `type`, when the answer was Stripe's error JSON.
    api_type: Option<ApiErrorsType>,
}

impl Failure {
    fn last(&self) -> String {
        self.status
            .map_or(self.message.clone(), |s| format!("{s} {}", self.message))
    }
}

impl From<Failure> for CallError {
    fn from(f: Failure) -> Self {
        let status = f.status.unwrap_or(0);
        match f.class {
            ErrorClass::Permanent => Self::Rejected {
                status,
                message: f.message,
            },
            ErrorClass::Unauthorized => Self::Unauthorized {
                status,
                message: f.message,
            },
            ErrorClass::Transient => Self::GaveUp {
                attempts: f.attempts,
                last: f.last(),
            },
        }
    }
}

impl From<Failure> for CreateError {
    fn from(f: Failure) -> Self {
        let status = f.status.unwrap_or(0);
        match f.class {
            ErrorClass::Permanent if f.api_type == Some(ApiErrorsType::IdempotencyError) => {
                Self::KeyConflict { message: f.message }
            }
            ErrorClass::Permanent => Self::Rejected {
                status,
                message: f.message,
            },
            ErrorClass::Unauthorized => Self::Unauthorized {
                status,
                message: f.message,
            },
            ErrorClass::Transient => Self::GaveUp {
                attempts: f.attempts,
                key_spent: f.status == Some(500) && f.api_type.is_some(),
                last: f.last(),
            },
        }
    }
}

/// The idempotency key of a request: the same on every attempt and every
/// redelivery.
///
/// `generation` 0 is `checkout:{request_id}`. Stripe saves its own 500
/// under a key and replays it for 24 h, so after such an answer (and a
/// lookup proving no session exists) the worker moves on to generation 1
/// (`checkout:{request_id}:1`), and so on. Every copy of a request walks the
/// same sequence, so copies still meet on one key.
pub fn idempotency_key(request: &ValidCheckoutRequest, generation: u32) -> String {
    match generation {
        0 => format!("checkout:{}", request.request_id),
        n => format!("checkout:{}:{n}", request.request_id),
    }
}

/// The Checkout Session parameters for a request: a pure function of the
/// request event (no trace, no time, nothing per delivery), so that every
/// redelivery or copy makes the identical call and Stripe's idempotency
/// replays it instead of answering `idempotency_error`.
pub fn session_params(request: &ValidCheckoutRequest) -> CreateCheckoutSession {
    let mut price = CreateCheckoutSessionLineItemsPriceData::new(
        request
            .currency
            .code()
            .parse::<stripe_types::Currency>()
            .unwrap_or_else(|never| match never {}),
    );
    price.unit_amount = Some(request.amount_cents.get());
    price.product_data = Some(ProductData::new(request.purpose.as_str()));
    let mut item = CreateCheckoutSessionLineItems::new();
    item.price_data = Some(price);
    item.quantity = Some(1);

    let request_id = request.request_id.to_string();
    let metadata = HashMap::from([
        ("request_id".to_owned(), request_id.clone()),
        ("user_id".to_owned(), request.user_id.to_string()),
        ("amount_cents".to_owned(), request.amount_cents.to_string()),
        ("currency".to_owned(), request.currency.code().to_owned()),
        ("purpose".to_owned(), request.purpose.as_str().to_owned()),
    ]);
    CreateCheckoutSession::new()
        .mode(CheckoutSessionMode::Payment)
        .line_items(vec![item])
        .client_reference_id(request_id)
        .metadata(metadata)
        .success_url(request.success_url.as_str())
        .cancel_url(request.cancel_url.as_str())
}

/// Whether `session` belongs to the request `request_id` (our
/// `client_reference_id`, or the request_id in its metadata).
pub fn belongs_to(session: &CheckoutSession, request_id: &str) -> bool {
    session.client_reference_id.as_deref() == Some(request_id)
        || session
            .metadata
            .as_ref()
            .and_then(|m| m.get("request_id"))
            .is_some_and(|id| id == request_id)
}

/// Of several sessions of one request (there should be one), the one that
/// matters most: a paid one, else a completed one, else the newest
/// (`sessions` are newest first).
fn most_relevant(sessions: Vec<CheckoutSession>) -> Option<CheckoutSession> {
    let rank = |s: &CheckoutSession| match (&s.payment_status, &s.status) {
        (
            CheckoutSessionPaymentStatus::Paid | CheckoutSessionPaymentStatus::NoPaymentRequired,
            _,
        ) => 0,
        (_, Some(CheckoutSessionStatus::Complete)) => 1,
        (_, Some(CheckoutSessionStatus::Open)) => 2,
        _ => 3,
    };
    if sessions.len() > 1 {
        let ids: Vec<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
        tracing::error!(?ids, "more than one Stripe session for one request");
    }
    // `min_by_key` keeps the first (newest) of equal ranks.
    sessions.into_iter().min_by_key(rank)
}

/// The wait before another attempt after failed attempt number `attempts`,
/// or `None` to stop: only transient failures within the budget, never after
/// `Stripe-Should-Retry: false`, and at least `Retry-After`.
fn next_attempt(
    policy: &RetryPolicy,
    class: ErrorClass,
    error: &HttpError,
    attempts: u32,
) -> Option<std::time::Duration> {
    let headers = error.retry_headers();
    let retry = class == ErrorClass::Transient
        && headers.should_retry != Some(false)
        && policy.allows_another(attempts);
    retry.then(|| policy.wait(attempts, headers.retry_after))
}

/// Sessions per page of the lookup (Stripe's maximum).
const PAGE: i64 = 100;

/// The Stripe client the worker shares between its in-flight requests, and
/// reconciliation with it: clones share the rate limit.
#[derive(Debug, Clone)]
pub struct Stripe {
    client: StripeHttp,
    limiter: Arc<RateLimiter>,
    retry: RetryPolicy,
    /// Where each HTTP call, retry and rate-limit wait is counted.
    metrics: Arc<Metrics>,
}

impl Stripe {
    /// The production client: connections kept and reused
    /// ([`Transport::default`]).
    ///
    /// # Errors
    /// When the base URL or key cannot be used in an HTTP request.
    pub fn new(config: &StripeConfig) -> Result<Self, StripeError> {
        Self::with_transport(config, &Transport::default())
    }

    /// A client over `transport` (a test's or the benchmark's: a generated
    /// CA to trust, or async-stripe's no-pool settings).
    ///
    /// # Errors
    /// When the base URL or key cannot be used in an HTTP request.
    pub fn with_transport(
        config: &StripeConfig,
        transport: &Transport,
    ) -> Result<Self, StripeError> {
        let client = StripeHttp::new(config, transport)
            .map_err(|e| StripeError::ConfigError(e.to_string()))?;
        Ok(Self {
            client,
            limiter: Arc::new(RateLimiter::new(config.rate_limit)),
            retry: config.retry,
            metrics: Arc::default(),
        })
    }

    /// This client, counting its calls in `metrics` (the service's).
    #[must_use]
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The limiter every clone shares (its rate is set by [`crate::assignment`]).
    pub fn limiter(&self) -> Arc<RateLimiter> {
        Arc::clone(&self.limiter)
    }

    /// The retry budget and backoff of one call.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// Runs one call: a limiter slot per attempt, transient failures retried
    /// with jittered backoff up to the budget, as Stripe's retry headers
    /// allow ([`next_attempt`]). Each attempt is measured (its wait for the
    /// slot, then the HTTP call by outcome).
    async fn call<T, F, Fut>(&self, endpoint: Endpoint, mut attempt: F) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, HttpError>>,
    {
        let what = endpoint.label();
        let mut attempts = 0;
        loop {
            let waiting = Instant::now();
            self.limiter.acquire().await;
            self.metrics.budget_waited(waiting.elapsed());
            attempts += 1;
            if attempts > 1 {
                self.metrics.stripe_retry(endpoint);
            }
            let in_flight = self.metrics.stripe_call_started();
            let started = Instant::now();
            let answer = attempt().await;
            drop(in_flight);
            let outcome = answer
                .as_ref()
                .map_or_else(outcome_of, |_| StripeOutcome::Ok);
            self.metrics
                .stripe_call(endpoint, outcome, started.elapsed());
            let error = match answer {
                Ok(value) => return Ok(value),
                Err(e) => e,
            };
            let (status, message) = describe(&error);
            let class = classify(&error);
            if let Some(wait) = next_attempt(&self.retry, class, &error, attempts) {
                tracing::warn!(
                    call = what, attempts, status, error = %message, wait_ms = wait.as_millis(),
                    "transient Stripe error, retrying"
                );
                tokio::time::sleep(wait).await;
                continue;
            }
            let api_type = error.api_error().map(|api| api.type_.clone());
            return Err(Failure {
                class,
                status,
                message,
                attempts,
                api_type,
            });
        }
    }

    /// Creates (or, for a known idempotency key, gets back) the request's
    /// session under the key of `generation` (0 unless a saved 500 spent the
    /// earlier keys, see [`idempotency_key`]).
    ///
    /// # Errors
    /// See [`CreateError`].
    pub async fn create_session(
        &self,
        request: &ValidCheckoutRequest,
        generation: u32,
    ) -> Result<CreatedSession, CreateError> {
        let key = idempotency_key(request, generation);
        let strategy = RequestStrategy::Idempotent(
            IdempotencyKey::new(&key).expect("key is short and non-empty"),
        );
        let params = &session_params(request);
        let client = &self.client;
        let session = self
            .call(Endpoint::CreateSession, move || {
                params
                    .customize()
                    .request_strategy(strategy.clone())
                    .send(client)
            })
            .await?;
        Ok(CreatedSession {
            id: session.id.as_str().to_owned(),
            url: session.url,
        })
    }

    /// The session as Stripe has it now.
    ///
    /// # Errors
    /// See [`CallError`]; an unknown session is `Rejected` with status 404.
    pub async fn retrieve_session(&self, session_id: &str) -> Result<CheckoutSession, CallError> {
        let request = &RetrieveCheckoutSession::new(session_id);
        let client = &self.client;
        Ok(self
            .call(Endpoint::RetrieveSession, move || {
                request
                    .customize()
                    .request_strategy(RequestStrategy::Once)
                    .send(client)
            })
            .await?)
    }

    /// Expires an open session, so it can no longer be paid; returns it as
    /// Stripe has it then. No idempotency key: expiring is idempotent by
    /// nature, and a key would keep replaying a saved 500 for 24 h.
    ///
    /// # Errors
    /// See [`CallError`]; a session that is not open any more (paid, or
    /// expired, possibly by an earlier attempt whose answer was lost) is
    /// `Rejected` with status 400: retrieve it to learn which.
    pub async fn expire_session(&self, session_id: &str) -> Result<CheckoutSession, CallError> {
        let request = &ExpireCheckoutSession::new(session_id);
        let client = &self.client;
        Ok(self
            .call(Endpoint::ExpireSession, move || {
                request
                    .customize()
                    .request_strategy(RequestStrategy::Once)
                    .send(client)
            })
            .await?)
    }

    /// Looks for the session of `request_id` among those created at or after
    /// `created_after` (Stripe's list, newest first, `created[gte]`, page by
    /// page), matched by `client_reference_id` or metadata `request_id`.
    /// Give `created_after` some slack for clock skew: the request's
    /// timestamp is the gateway's clock, `created` is Stripe's.
    ///
    /// # Errors
    /// See [`CallError`]: a page that could not be read means "unknown",
    /// never "none".
    pub async fn find_session_for_request(
        &self,
        request_id: &str,
        created_after: DateTime<Utc>,
    ) -> Result<Option<CheckoutSession>, CallError> {
        let mut matches = Vec::new();
        let mut starting_after: Option<String> = None;
        loop {
            let mut list = ListCheckoutSession::new()
                .limit(PAGE)
                .created(RangeQueryTs::Bounds(RangeBoundsTs {
                    gte: Some(created_after.timestamp()),
                    ..RangeBoundsTs::default()
                }));
            if let Some(cursor) = &starting_after {
                list = list.starting_after(cursor.clone());
            }
            let list = &list;
            let client = &self.client;
            let page = self
                .call(Endpoint::ListSessions, move || {
                    list.customize()
                        .request_strategy(RequestStrategy::Once)
                        .send(client)
                })
                .await?;
            starting_after = page.data.last().map(|s| s.id.as_str().to_owned());
            matches.extend(page.data.into_iter().filter(|s| belongs_to(s, request_id)));
            if !page.has_more || starting_after.is_none() {
                break;
            }
        }
        Ok(most_relevant(matches))
    }
}
#[cfg(test)]
mod tests {
    use std::time::Duration;

    use checkout_contract::CheckoutRequestEvent;

    use super::*;
    use crate::stripe_http::RetryHeaders;

    fn request() -> ValidCheckoutRequest {
        serde_json::from_str::<CheckoutRequestEvent>(
            r#"{"request_id":"550e8400-e29b-41d4-a716-446655440000","user_id":123,"amount_cents":500,
            "currency":"eur","purpose":"balance_topup","timestamp":"2024-01-15T10:30:00Z",
            "success_url":"https://example.com/balance?status=success",
            "cancel_url":"https://example.com/balance?status=cancel"}"#,
        )
        .unwrap()
        .validate()
        .unwrap()
    }

    #[test]
    fn the_status_table_of_the_issue() {
        for status in [400, 402, 404, 422] {
            assert_eq!(classify_status(status), ErrorClass::Permanent, "{status}");
        }
        for status in [401, 403] {
            assert_eq!(
                classify_status(status),
                ErrorClass::Unauthorized,
                "{status}"
            );
        }
        for status in [409, 429, 500, 502, 503, 504] {
            assert_eq!(classify_status(status), ErrorClass::Transient, "{status}");
        }
        assert_eq!(
            classify(&HttpError::Timeout(Duration::from_secs(1))),
            ErrorClass::Transient
        );
        assert_eq!(
            classify(&HttpError::Connection("connection refused".into())),
            ErrorClass::Transient
        );
        assert_eq!(
            classify(&HttpError::Unreadable {
                status: 502,
                headers: RetryHeaders::default()
            }),
            ErrorClass::Transient,
            "a proxy's HTML page"
        );
    }

    #[test]
    fn stripe_should_retry_true_makes_a_permanent_answer_transient() {
        let told = |status, should_retry| {
            classify(&api_error(
                status,
                "invalid_request_error",
                RetryHeaders {
                    should_retry,
                    retry_after: None,
                },
            ))
        };
        assert_eq!(told(400, Some(true)), ErrorClass::Transient);
        assert_eq!(told(400, None), ErrorClass::Permanent);
        assert_eq!(told(401, Some(true)), ErrorClass::Unauthorized);
        assert_eq!(
            told(429, Some(false)),
            ErrorClass::Transient,
            "false stops the retries, it does not make Stripe's 429 the request's fault"
        );
    }

    #[test]
    fn stripe_should_retry_false_stops_and_retry_after_is_waited() {
        let policy = RetryPolicy {
            max_attempts: 5,
            base: Duration::from_millis(10),
            max: Duration::from_millis(50),
        };
        let next = |status, headers| {
            let error = api_error(status, "api_error", headers);
            next_attempt(&policy, classify(&error), &error, 1)
        };
        let stop = RetryHeaders {
            should_retry: Some(false),
            retry_after: None,
        };
        assert_eq!(next(500, stop), None);
        assert_eq!(next(429, stop), None);
        assert!(next(500, RetryHeaders::default()).is_some());
        let after = RetryHeaders {
            should_retry: Some(true),
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(next(429, after), Some(Duration::from_secs(2)));
        let error = api_error(503, "api_error", after);
        assert_eq!(
            next_attempt(&policy, classify(&error), &error, 5),
            None,
            "the budget still ends the call"
        );
    }

    #[test]
    fn the_form_carries_everything_the_webhook_needs_later() {
        let form = serde_urlencoded_form(&session_params(&request()));
        for expected in [
            "mode=payment",
            "client_reference_id=550e8400-e29b-41d4-a716-446655440000",
            "line_items[0][price_data][currency]=eur",
            "line_items[0][price_data][unit_amount]=500",
            "line_items[0][price_data][product_data][name]=balance_topup",
            "line_items[0][quantity]=1",
            "metadata[request_id]=550e8400-e29b-41d4-a716-446655440000",
            "metadata[user_id]=123",
            "metadata[amount_cents]=500",
            "metadata[currency]=eur",
            "metadata[purpose]=balance_topup",
            "success_url=https://example.com/balance?status=success",
            "cancel_url=https://example.com/balance?status=cancel",
        ] {
            assert!(
                form.contains(&expected.to_owned()),
                "{expected} missing from {form:?}"
            );
        }
        assert_eq!(
            idempotency_key(&request(), 0),
            "checkout:550e8400-e29b-41d4-a716-446655440000"
        );
    }

    #[test]
    fn the_parameters_are_a_pure_function_of_the_request() {
        let form = serde_urlencoded_form(&session_params(&request()));
        assert!(
            form.iter().all(|item| !item.contains("traceparent")),
            "nothing per delivery in the call: {form:?}"
        );
        // The same parameters (metadata is a HashMap: its order varies, and
        // Stripe compares parameters, not bytes).
        let sorted = || {
            let mut form = serde_urlencoded_form(&session_params(&request()));
            form.sort();
            form
        };
        assert_eq!(
            sorted(),
            sorted(),
            "every copy of a request makes the identical call"
        );
    }

    #[test]
    fn later_key_generations_stay_per_request() {
        assert_eq!(
            idempotency_key(&request(), 2),
            "checkout:550e8400-e29b-41d4-a716-446655440000:2"
        );
    }

    fn api_error(status: u16, type_: &str, headers: RetryHeaders) -> HttpError {
        let api = stripe_shared::ApiErrors {
            advice_code: None,
            charge: None,
            code: None,
            decline_code: None,
            doc_url: None,
            message: Some("m".into()),
            network_advice_code: None,
            network_decline_code: None,
            param: None,
            payment_intent: None,
            payment_method: None,
            payment_method_type: None,
            request_log_url: None,
            setup_intent: None,
            source: None,
            type_: type_.parse().unwrap(),
        };
        HttpError::Api {
            status,
            error: Box::new(api),
            headers,
        }
    }

    fn stripe_error(status: u16, type_: &str) -> Failure {
        let error = api_error(status, type_, RetryHeaders::default());
        let (status, message) = describe(&error);
        Failure {
            class: classify(&error),
            status,
            message,
            attempts: 3,
            api_type: error.api_error().map(|api| api.type_.clone()),
        }
    }

    #[test]
    fn an_idempotency_error_is_a_key_conflict_not_a_rejection() {
        let e = CreateError::from(stripe_error(400, "idempotency_error"));
        assert!(matches!(e, CreateError::KeyConflict { .. }), "{e:?}");
        let e = CreateError::from(stripe_error(400, "invalid_request_error"));
        assert!(
            matches!(e, CreateError::Rejected { status: 400, .. }),
            "{e:?}"
        );
    }

    #[test]
    fn only_stripes_own_500_spends_the_key() {
        let e = CreateError::from(stripe_error(500, "api_error"));
        assert!(
            matches!(
                e,
                CreateError::GaveUp {
                    key_spent: true,
                    attempts: 3,
                    ..
                }
            ),
            "{e:?}"
        );
        for error in [
            stripe_error(503, "api_error"),
            stripe_error(429, "invalid_request_error"),
        ] {
            let e = CreateError::from(error);
            assert!(
                matches!(
                    e,
                    CreateError::GaveUp {
                        key_spent: false,
                        ..
                    }
                ),
                "{e:?}"
            );
        }
        let timeout = Failure {
            class: ErrorClass::Transient,
            status: None,
            message: "timeout".into(),
            attempts: 1,
            api_type: None,
        };
        assert!(matches!(
            CreateError::from(timeout),
            CreateError::GaveUp {
                key_spent: false,
                ..
            }
        ));
    }

    #[test]
    fn call_errors_keep_their_class() {
        for (status, type_, class) in [
            (404, "invalid_request_error", ErrorClass::Permanent),
            (401, "invalid_request_error", ErrorClass::Unauthorized),
            (500, "api_error", ErrorClass::Transient),
        ] {
            assert_eq!(CallError::from(stripe_error(status, type_)).class(), class);
        }
    }

    use crate::stripe_event::fixture_session as session;

    #[test]
    fn sessions_are_matched_by_reference_or_metadata() {
        let id = "550e8400-e29b-41d4-a716-446655440000";
        assert!(belongs_to(&session(|_| {}), id));
        assert!(belongs_to(
            &session(|s| s["client_reference_id"] = serde_json::Value::Null),
            id
        ));
        assert!(!belongs_to(&session(|_| {}), "another"));
    }

    #[test]
    fn of_two_sessions_the_paid_one_counts() {
        let newer = session(|s| s["id"] = "cs_newer".into());
        let paid = session(|s| {
            s["id"] = "cs_paid".into();
            s["status"] = "complete".into();
            s["payment_status"] = "paid".into();
        });
        let chosen = most_relevant(vec![newer.clone(), paid]).unwrap();
        assert_eq!(chosen.id.as_str(), "cs_paid");
        let older = session(|s| s["id"] = "cs_older".into());
        assert_eq!(
            most_relevant(vec![newer, older]).unwrap().id.as_str(),
            "cs_newer"
        );
        assert!(most_relevant(Vec::new()).is_none());
    }

    /// The request body as async-stripe sends it, decoded into `key=value` items.
    fn serde_urlencoded_form(params: &CreateCheckoutSession) -> Vec<String> {
        let body = params.build().body.expect("a form body");
        body.split('&').map(percent_decode).collect()
    }

    fn percent_decode(s: &str) -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' if i + 3 <= bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 3;
                }
                b'+' => {
                    out.push(b' ');
                    i += 1;
                }
                b => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        String::from_utf8(out).unwrap()
    }
}
