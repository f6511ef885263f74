//! A service calling the gateway: StartCheckout with a bearer token and an
//! idempotency key, retried with the same key while the gateway (or the
//! broker behind it) is unavailable.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use checkout_contract::pb::StartCheckoutRequest;
use checkout_contract::pb::checkout_gateway_client::CheckoutGatewayClient;
use tonic::Request;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;

/// How long one checkout may take to be accepted.
const ACCEPT_WITHIN: Duration = Duration::from_secs(120);

/// Checkout `i`'s request (amount and user spread over `i`), keyed `{key_prefix}-{i}`.
pub fn checkout_request(key_prefix: &str, i: usize) -> StartCheckoutRequest {
    let n = i64::try_from(i).expect("small");
    StartCheckoutRequest {
        user_id: 1 + n % 25,
        amount_cents: 100 + (n * 37) % 900,
        currency: "eur".into(),
        success_url: "https://example.com/checkout/success".into(),
        cancel_url: "https://example.com/checkout/cancel".into(),
        idempotency_key: Some(format!("{key_prefix}-{i}")),
        ..Default::default()
    }
}

/// Adds `Authorization: Bearer {token}` to `request`.
pub fn authorized<T>(token: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    let bearer: MetadataValue<_> = format!("Bearer {token}").parse().expect("header");
    request.metadata_mut().insert("authorization", bearer);
    request
}

/// Whether a failed call may be retried: the gateway or its broker is
/// unavailable, or the connection broke under the call (the gateway was
/// killed: tonic reports that as UNKNOWN "h2 protocol error" or "transport error").
pub fn is_transient(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
    ) || (status.code() == tonic::Code::Unknown
        && ["h2 protocol error", "transport error"]
            .iter()
            .any(|m| status.message().starts_with(m)))
}

/// StartCheckout of checkout `i`, retried with the same idempotency key
/// until accepted; counts each retry in `retries`. Returns the request_id.
///
/// # Panics
/// On an answer that is not transient, or when it is not accepted within 120 s.
pub async fn start_checkout(
    client: &mut CheckoutGatewayClient<Channel>,
    token: &str,
    key_prefix: &str,
    i: usize,
    retries: &AtomicUsize,
) -> String {
    let deadline = Instant::now() + ACCEPT_WITHIN;
    loop {
        let mut request = authorized(token, checkout_request(key_prefix, i));
        request.set_timeout(Duration::from_secs(15));
        match client.start_checkout(request).await {
            Ok(response) => return response.into_inner().request_id,
            Err(status) => {
                assert!(is_transient(&status), "checkout {i}: unexpected {status:?}");
                assert!(
                    Instant::now() < deadline,
                    "checkout {i} not accepted within {ACCEPT_WITHIN:?}: {status:?}"
                );
                retries.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}
