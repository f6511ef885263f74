//! async-stripe itself creates, retrieves and expires sessions.

use stripe_checkout::checkout_session::{ExpireCheckoutSession, RetrieveCheckoutSession};
use stripe_emulator::Config;
use stripe_shared::{CheckoutSessionPaymentStatus, CheckoutSessionStatus};

use crate::helpers::spawn;

#[tokio::test]
async fn async_stripe_creates_retrieves_and_expires_a_session() {
    let emu = spawn(Config::default()).await;
    let client = emu.client();

    let created = emu.create_session("req-1").await;
    assert!(created.id.as_str().starts_with("cs_test_"));
    assert_eq!(created.status, Some(CheckoutSessionStatus::Open));
    assert_eq!(created.payment_status, CheckoutSessionPaymentStatus::Unpaid);
    assert_eq!(created.amount_total, Some(1500));
    assert_eq!(created.client_reference_id.as_deref(), Some("req-1"));
    assert_eq!(created.metadata.as_ref().unwrap()["request_id"], "req-1");
    let url = created.url.clone().expect("hosted page url");
    assert_eq!(url, format!("{}pay/{}", emu.api_base, created.id));

    let fetched = RetrieveCheckoutSession::new(created.id.clone())
        .send(&client)
        .await
        .expect("retrieved");
    assert_eq!(fetched.id, created.id);
    assert_eq!(fetched.url.as_deref(), Some(url.as_str()));

    let expired = ExpireCheckoutSession::new(created.id.clone())
        .send(&client)
        .await
        .expect("expired");
    assert_eq!(expired.status, Some(CheckoutSessionStatus::Expired));
    assert_eq!(
        expired.url, None,
        "Stripe clears the URL of a closed session"
    );

    // Expiring twice is a state error, as on Stripe.
    let err = ExpireCheckoutSession::new(created.id.clone())
        .send(&client)
        .await
        .unwrap_err();
    match err {
        stripe::StripeError::Stripe(e, 400) => assert!(e.message.unwrap().contains("open")),
        other => panic!("expected a 400, got {other:?}"),
    }

    let report = emu.handle.sessions();
    assert_eq!(report.sessions.len(), 1);
    assert_eq!(report.created_per_client_reference_id["req-1"], 1);
}

#[tokio::test]
async fn unknown_session_is_a_typed_404() {
    let emu = spawn(Config::default()).await;
    let err = RetrieveCheckoutSession::new("cs_test_nope")
        .send(&emu.client())
        .await
        .unwrap_err();
    match err {
        stripe::StripeError::Stripe(e, 404) => {
            assert_eq!(e.code, Some(stripe::ApiErrorsCode::ResourceMissing));
        }
        other => panic!("expected a 404, got {other:?}"),
    }
}
