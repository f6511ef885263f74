//! Creating a Checkout Session for a validated request, with Stripe's error
//! classes handled the way the issue's table says:
//!
//! | Stripe answer                 | What happens                                     |
//! |-------------------------------|--------------------------------------------------|
//! | 2xx                           | [`CreatedSession`]                               |
//! | 400, 402, 404 (other 4xx)     | [`CreateError::Rejected`]: no retry              |
//! | 401, 403                      | [`CreateError::Unauthorized`]: stop the worker   |
//! | 409, 429, 5xx, timeout, I/O   | retry, jittered, same idempotency key, then [`CreateError::GaveUp`] |
//!
//! Every attempt carries the idempotency key `checkout:{request_id}`, so a
//! retried or redelivered request never creates a second session, and takes
//! a slot of the client-side [`RateLimiter`].

use std::collections::HashMap;

use checkout_contract::ValidCheckoutRequest;
use checkout_contract::trace::TRACEPARENT;
use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeError, StripeRequest};
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    ProductData,
};
use stripe_shared::CheckoutSessionMode;

use crate::config::StripeConfig;
use crate::rate_limit::RateLimiter;
use crate::retry::RetryPolicy;

/// A session Stripe created (or replayed for the same idempotency key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedSession {
    pub id: String,
    pub url: Option<String>,
}

/// Why no session was created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// A permanent answer (400, 402, 404, ...): the request itself is the problem.
    #[error("Stripe rejected the checkout session ({status}): {message}")]
    Rejected { status: u16, message: String },
    /// 401/403: our key is wrong or lacks permission; every request would fail.
    #[error("Stripe refused our API key ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    /// Transient failures used up the retry budget.
    #[error("Stripe unavailable after {attempts} attempts: {last}")]
    GaveUp { attempts: u32, last: String },
}

/// What to do about one failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    Permanent,
    Unauthorized,
    Transient,
}

/// Classifies an error of one attempt.
pub fn classify(error: &StripeError) -> ErrorClass {
    match error {
        StripeError::Stripe(_, status) => classify_status(*status),
        // No answer in time, the connection failed, or an answer we could not
        // read (a proxy's HTML 502 page): all worth another try.
        StripeError::Timeout | StripeError::ClientError(_) | StripeError::JSONDeserialize(_) => {
            ErrorClass::Transient
        }
        StripeError::ConfigError(_) => ErrorClass::Permanent,
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

fn describe(error: &StripeError) -> (Option<u16>, String) {
    match error {
        StripeError::Stripe(api, status) => {
            let mut text = api.type_.as_str().to_owned();
            if let Some(code) = &api.code {
                text.push_str(&format!(" ({})", code.as_str()));
            }
            if let Some(message) = &api.message {
                text.push_str(": ");
                text.push_str(message);
            }
            if let Some(param) = &api.param {
                text.push_str(&format!(" [param {param}]"));
            }
            (Some(*status), text)
        }
        other => (None, other.to_string()),
    }
}

/// The idempotency key of a request: the same on every attempt and every redelivery.
pub fn idempotency_key(request: &ValidCheckoutRequest) -> String {
    format!("checkout:{}", request.request_id)
}

/// The Checkout Session parameters for a request.
/// `traceparent` (the caller's trace) goes into the metadata, so the
/// webhook can continue the trace on `checkout.finished`.
pub fn session_params(
    request: &ValidCheckoutRequest,
    traceparent: Option<&str>,
) -> CreateCheckoutSession {
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
    let mut metadata = HashMap::from([
        ("request_id".to_owned(), request_id.clone()),
        ("user_id".to_owned(), request.user_id.to_string()),
        ("amount_cents".to_owned(), request.amount_cents.to_string()),
        ("currency".to_owned(), request.currency.code().to_owned()),
        ("purpose".to_owned(), request.purpose.as_str().to_owned()),
    ]);
    if let Some(t) = traceparent {
        metadata.insert(TRACEPARENT.to_owned(), t.to_owned());
    }
    CreateCheckoutSession::new()
        .mode(CheckoutSessionMode::Payment)
        .line_items(vec![item])
        .client_reference_id(request_id)
        .metadata(metadata)
        .success_url(request.success_url.as_str())
        .cancel_url(request.cancel_url.as_str())
}

/// The Stripe client the worker shares between its in-flight requests.
#[derive(Debug)]
pub struct Stripe {
    client: Client,
    limiter: RateLimiter,
    retry: RetryPolicy,
}

impl Stripe {
    /// # Errors
    /// When the base URL or key cannot be used in an HTTP request.
    pub fn new(config: &StripeConfig) -> Result<Self, StripeError> {
        let client = ClientBuilder::new(config.secret_key.expose())
            .url(config.api_base.clone())
            .timeout(config.timeout)
            .app_info(
                "blazing-sun-checkout",
                Some(env!("CARGO_PKG_VERSION").to_owned()),
                None,
            )
            .build()?;
        // A burst of a few calls after an idle spell; the sustained rate is the limit.
        let burst = (config.rate_limit / 5.0).clamp(1.0, 10.0) as u32;
        Ok(Self {
            client,
            limiter: RateLimiter::new(config.rate_limit, burst),
            retry: config.retry,
        })
    }

    /// Creates (or, for a known idempotency key, gets back) the request's session.
    ///
    /// # Errors
    /// See [`CreateError`].
    pub async fn create_session(
        &self,
        request: &ValidCheckoutRequest,
        traceparent: Option<&str>,
    ) -> Result<CreatedSession, CreateError> {
        let key = idempotency_key(request);
        let strategy = RequestStrategy::Idempotent(
            IdempotencyKey::new(&key).expect("key is short and non-empty"),
        );
        let params = session_params(request, traceparent);
        let mut attempts = 0;
        loop {
            self.limiter.acquire().await;
            attempts += 1;
            let call = params.customize().request_strategy(strategy.clone());
            let error = match call.send(&self.client).await {
                Ok(session) => {
                    return Ok(CreatedSession {
                        id: session.id.as_str().to_owned(),
                        url: session.url,
                    });
                }
                Err(e) => e,
            };
            let (status, message) = describe(&error);
            match classify(&error) {
                ErrorClass::Permanent => {
                    return Err(CreateError::Rejected {
                        status: status.unwrap_or(0),
                        message,
                    });
                }
                ErrorClass::Unauthorized => {
                    return Err(CreateError::Unauthorized {
                        status: status.unwrap_or(0),
                        message,
                    });
                }
                ErrorClass::Transient if self.retry.allows_another(attempts) => {
                    let wait = self.retry.backoff(attempts);
                    tracing::warn!(
                        request_id = %request.request_id, attempts, status, error = %message,
                        wait_ms = wait.as_millis(), "transient Stripe error, retrying with the same idempotency key"
                    );
                    tokio::time::sleep(wait).await;
                }
                ErrorClass::Transient => {
                    let last = status.map_or(message.clone(), |s| format!("{s} {message}"));
                    return Err(CreateError::GaveUp { attempts, last });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use checkout_contract::CheckoutRequestEvent;

    use super::*;

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
        assert_eq!(classify(&StripeError::Timeout), ErrorClass::Transient);
        assert_eq!(
            classify(&StripeError::ClientError("connection refused".into())),
            ErrorClass::Transient
        );
    }

    #[test]
    fn the_form_carries_everything_the_webhook_needs_later() {
        let form = serde_urlencoded_form(&session_params(&request(), None));
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
            idempotency_key(&request()),
            "checkout:550e8400-e29b-41d4-a716-446655440000"
        );
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
