//! Events as the seed document's examples have them
//! (`kafka-topics-for-checkout.md`), with the ids a test chooses: what the
//! gateway or the balance API would send on `checkout.requests`, and what
//! the checkout worker or webhook would publish on `checkout.finished`.

use checkout_contract::events::iso8601;
use checkout_contract::{CheckoutFinishedEvent, CheckoutRequestEvent, CheckoutStatus, RequestId};

/// The seed's session, on every `finished` event.
pub const SESSION_ID: &str = "cs_test_abc123";
/// The session's page, on `session_created`.
pub const SESSION_URL: &str = "https://checkout.stripe.com/c/pay/cs_test_abc123";
/// The seed's payment intent, on `success`.
pub const PAYMENT_INTENT_ID: &str = "pi_test_xyz789";
/// Why a `failed` checkout failed.
pub const ERROR_MESSAGE: &str = "card_declined";
/// The seed's `success_url` and `cancel_url`.
pub const SUCCESS_URL: &str = "https://example.com/balance?status=success";
pub const CANCEL_URL: &str = "https://example.com/balance?status=cancel";

/// The fields of a `checkout.requests` event, in the seed's order.
pub const REQUEST_FIELDS: [&str; 8] = [
    "request_id",
    "user_id",
    "amount_cents",
    "currency",
    "purpose",
    "timestamp",
    "success_url",
    "cancel_url",
];

/// Checks that `raw` is a JSON object with the seed's request fields,
/// nothing else, in the seed's order, and returns it parsed.
///
/// # Panics
/// When it is not.
pub fn assert_seed_request_json(raw: &str) -> serde_json::Value {
    let event: serde_json::Value =
        serde_json::from_str(raw).unwrap_or_else(|e| panic!("not JSON ({e}): {raw}"));
    let fields = event
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {raw}"));
    assert_eq!(
        fields.len(),
        REQUEST_FIELDS.len(),
        "the seed's fields only: {raw}"
    );
    let positions: Vec<usize> = REQUEST_FIELDS
        .iter()
        .map(|f| {
            raw.find(&format!("\"{f}\":"))
                .unwrap_or_else(|| panic!("{f} in {raw}"))
        })
        .collect();
    assert!(
        positions.is_sorted(),
        "fields out of the seed's order: {raw}"
    );
    event
}

/// A request_id no other test uses.
pub fn new_request_id() -> String {
    RequestId::new_random().to_string()
}

/// A user id no other test uses (1 to 1,000,000,000).
pub fn new_user() -> i64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    i64::from(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) % 1_000_000_000) + 1
}

/// The seed's request for `request_id`, `user_id` and `amount_cents` eur,
/// made now (a request older than Stripe's idempotency window gets
/// `failed` without a session).
pub fn request(request_id: &str, user_id: i64, amount_cents: i64) -> CheckoutRequestEvent {
    CheckoutRequestEvent {
        request_id: request_id.to_owned(),
        user_id,
        amount_cents,
        currency: "eur".into(),
        purpose: "balance_topup".into(),
        timestamp: checkout_contract::events::now(),
        success_url: SUCCESS_URL.into(),
        cancel_url: CANCEL_URL.into(),
    }
}

/// The seed's `checkout.finished` event with `status`, carrying what that
/// status has: the session ([`SESSION_ID`], and [`SESSION_URL`] on
/// `session_created`), the payment intent on `success`, the error on
/// `failed`; at the seed's time.
pub fn finished(
    request_id: &str,
    user_id: i64,
    amount_cents: i64,
    status: CheckoutStatus,
) -> CheckoutFinishedEvent {
    CheckoutFinishedEvent {
        request_id: request_id.to_owned(),
        user_id,
        amount_cents,
        currency: "eur".into(),
        purpose: "balance_topup".into(),
        status,
        session_id: Some(SESSION_ID.into()),
        session_url: (status == CheckoutStatus::SessionCreated).then(|| SESSION_URL.into()),
        payment_intent_id: (status == CheckoutStatus::Success).then(|| PAYMENT_INTENT_ID.into()),
        error_message: (status == CheckoutStatus::Failed).then(|| ERROR_MESSAGE.into()),
        timestamp: iso8601::parse("2024-01-15T10:35:00Z").expect("the seed's timestamp"),
    }
}

/// A `success` top-up, like the seed's.
pub fn success(request_id: &str, user_id: i64, amount_cents: i64) -> CheckoutFinishedEvent {
    finished(request_id, user_id, amount_cents, CheckoutStatus::Success)
}
