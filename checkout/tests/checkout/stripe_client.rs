//! The Stripe wrapper's calls against the emulator, through async-stripe's
//! request types over the service's transport: retrieve, expire, and the lookup of a request's
//! session (`created[gte]`, paging newest first).

use checkout::stripe::{CallError, Stripe};
use checkout::stripe_event::{EXPIRED_MESSAGE, SessionState, from_session};
use checkout_contract::secret::Secret;
use checkout_contract::{CheckoutStatus, ValidCheckoutRequest};
use chrono::TimeDelta;
use stripe_emulator::{Emulator, Faults};
use tokio::sync::oneshot;

use crate::helpers::{API_KEY, WEBHOOK_SECRET, request};

/// An emulator on port 0 (stopped when the sender drops) and a wrapper pointed at it.
async fn stripe() -> (Stripe, stripe_emulator::Handle, oneshot::Sender<()>) {
    testkit::init_tracing();
    let emulator = Emulator::build(stripe_emulator::Config::default())
        .await
        .expect("emulator starts");
    let handle = emulator.handle();
    let mut config = checkout::Config::new(
        "127.0.0.1:1",
        emulator.api_base(),
        Secret::new(API_KEY),
        Secret::new(WEBHOOK_SECRET),
    );
    config.stripe.rate_limit = 1000.0;
    config.stripe.retry.base = std::time::Duration::from_millis(10);
    config.stripe.retry.max = std::time::Duration::from_millis(50);
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(emulator.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let stripe = Stripe::new(&config.stripe).expect("client");
    (stripe, handle, stop)
}

fn valid(amount_cents: i64) -> ValidCheckoutRequest {
    request(amount_cents).validate().expect("valid")
}

#[tokio::test]
async fn retrieve_and_expire_say_what_a_session_is_now() {
    let (stripe, _emulator, _stop) = stripe().await;
    let r = valid(500);
    let created = stripe.create_session(&r, 0).await.expect("created");

    let open = stripe
        .retrieve_session(&created.id)
        .await
        .expect("retrieved");
    let SessionState::Open { event, expires_at } = from_session(&open) else {
        panic!("open: {open:?}")
    };
    assert_eq!(event.status, CheckoutStatus::SessionCreated);
    assert_eq!(event.session_url, created.url);
    assert!(expires_at > chrono::Utc::now().timestamp());

    let expired = stripe.expire_session(&created.id).await.expect("expired");
    let SessionState::Finished(failed) = from_session(&expired) else {
        panic!("expired: {expired:?}")
    };
    assert_eq!(failed.status, CheckoutStatus::Failed);
    assert_eq!(failed.error_message.as_deref(), Some(EXPIRED_MESSAGE));
    assert_eq!(failed.request_id, r.request_id.to_string());

    // A second expiry: Stripe refuses (the session is not open), permanently.
    let again = stripe.expire_session(&created.id).await;
    assert!(
        matches!(again, Err(CallError::Rejected { status: 400, .. })),
        "{again:?}"
    );
    let unknown = stripe.retrieve_session("cs_test_unknown").await;
    assert!(
        matches!(unknown, Err(CallError::Rejected { status: 404, .. })),
        "{unknown:?}"
    );
}

#[tokio::test]
async fn the_lookup_pages_through_newer_sessions_and_respects_created_after() {
    let (stripe, _emulator, _stop) = stripe().await;
    let r = valid(700);
    let created = stripe.create_session(&r, 0).await.expect("created");
    // More than a page of newer sessions of other requests.
    for _ in 0..120 {
        stripe
            .create_session(&valid(500), 0)
            .await
            .expect("created");
    }
    let id = r.request_id.to_string();
    let since = r.timestamp - TimeDelta::hours(1);

    let found = stripe
        .find_session_for_request(&id, since)
        .await
        .expect("listed")
        .expect("found on the second page");
    assert_eq!(found.id.as_str(), created.id);

    let other = valid(500).request_id.to_string();
    assert!(
        stripe
            .find_session_for_request(&other, since)
            .await
            .expect("listed")
            .is_none()
    );
    let later = chrono::Utc::now() + TimeDelta::minutes(5);
    assert!(
        stripe
            .find_session_for_request(&id, later)
            .await
            .expect("listed")
            .is_none(),
        "sessions created before created_after are not looked at"
    );
}

#[tokio::test]
async fn an_unavailable_stripe_is_an_error_never_none() {
    let (stripe, emulator, _stop) = stripe().await;
    let r = valid(500);
    stripe.create_session(&r, 0).await.expect("created");
    emulator
        .set_faults(Faults {
            rate_500: 1.0,
            ..Faults::default()
        })
        .unwrap();
    let id = r.request_id.to_string();
    let lookup = stripe
        .find_session_for_request(&id, r.timestamp - TimeDelta::hours(1))
        .await;
    assert!(
        matches!(lookup, Err(CallError::GaveUp { .. })),
        "{lookup:?}"
    );
    assert!(matches!(
        stripe.retrieve_session("cs_test_x").await,
        Err(CallError::GaveUp { .. })
    ));
}
