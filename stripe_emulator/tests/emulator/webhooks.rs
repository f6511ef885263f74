//! Delivered events pass async-stripe-webhook's signature check and parse
//! into its typed events; failed deliveries are retried.

use stripe_emulator::{Config, Outcome};
use stripe_shared::CheckoutSessionPaymentStatus;
use stripe_webhook::{EventObject, EventType};

use crate::helpers::{fast_retries, with_receiver};

fn session_of(event: &stripe_webhook::Event) -> &stripe_shared::CheckoutSession {
    match &event.data.object {
        EventObject::CheckoutSessionCompleted(s)
        | EventObject::CheckoutSessionAsyncPaymentSucceeded(s)
        | EventObject::CheckoutSessionAsyncPaymentFailed(s)
        | EventObject::CheckoutSessionExpired(s) => s,
        other => panic!("not a checkout session event: {other:?}"),
    }
}

#[tokio::test]
async fn paid_session_delivers_a_verified_typed_completed_event() {
    let (emu, receiver) = with_receiver(Config::default()).await;
    let created = emu.create_session("req-paid").await;
    emu.handle.pay(created.id.as_str(), Outcome::Paid).unwrap();

    let deliveries = receiver.wait_for(1).await;
    let event = deliveries[0]
        .verify()
        .expect("valid signature and typed event");
    assert_eq!(event.type_, EventType::CheckoutSessionCompleted);
    assert!(event.id.as_str().starts_with("evt_"));
    assert!(!event.livemode);
    let session = session_of(&event);
    assert_eq!(session.id, created.id);
    assert_eq!(session.payment_status, CheckoutSessionPaymentStatus::Paid);
    assert!(session.payment_intent.is_some());
    assert_eq!(session.metadata.as_ref().unwrap()["request_id"], "req-paid");
}

#[tokio::test]
async fn all_four_event_types_verify_and_parse() {
    let (emu, receiver) = with_receiver(Config::default()).await;
    let a = emu.create_session("req-a").await;
    let b = emu.create_session("req-b").await;
    let c = emu.create_session("req-c").await;
    emu.handle
        .pay(a.id.as_str(), Outcome::AsyncSucceeded)
        .unwrap();
    emu.handle.pay(b.id.as_str(), Outcome::AsyncFailed).unwrap();
    emu.handle.pay(c.id.as_str(), Outcome::Expired).unwrap();

    let deliveries = receiver.wait_for(5).await;
    assert_eq!(deliveries.len(), 5);
    let mut seen = Vec::new();
    for d in &deliveries {
        let event = d.verify().unwrap_or_else(|e| panic!("{e:?}: {}", d.body));
        let session = session_of(&event);
        seen.push((
            session.client_reference_id.clone().unwrap(),
            event.type_.clone(),
            session.payment_status.clone(),
        ));
    }
    let of = |r: &str| {
        seen.iter()
            .filter(|(id, ..)| id == r)
            .map(|(_, t, p)| (t.clone(), p.clone()))
            .collect::<Vec<_>>()
    };
    use CheckoutSessionPaymentStatus::{Paid, Unpaid};
    // Each session's events arrive in the order they happened.
    assert_eq!(
        of("req-a"),
        [
            (EventType::CheckoutSessionCompleted, Unpaid),
            (EventType::CheckoutSessionAsyncPaymentSucceeded, Paid)
        ]
    );
    assert_eq!(
        of("req-b"),
        [
            (EventType::CheckoutSessionCompleted, Unpaid),
            (EventType::CheckoutSessionAsyncPaymentFailed, Unpaid)
        ]
    );
    assert_eq!(of("req-c"), [(EventType::CheckoutSessionExpired, Unpaid)]);
}

#[tokio::test]
async fn a_failing_endpoint_is_retried_until_it_answers_2xx() {
    let (emu, receiver) = with_receiver(Config::default().with_delivery(fast_retries(5))).await;
    receiver.fail_next(2);
    let s = emu.create_session("req-retry").await;
    emu.handle.pay(s.id.as_str(), Outcome::Paid).unwrap();

    let deliveries = receiver.wait_for(3).await;
    assert_eq!(
        deliveries.iter().map(|d| d.answered).collect::<Vec<_>>(),
        [500, 500, 200]
    );
    let ids: Vec<String> = deliveries.iter().map(|d| d.event_id()).collect();
    assert!(
        ids.iter().all(|id| *id == ids[0]),
        "retries resend the same event"
    );
    testkit::eventually(
        "stats to count the delivery",
        std::time::Duration::from_secs(5),
        || async {
            let s = emu.handle.stats();
            (s.webhooks_delivered == 1).then_some(())
        },
    )
    .await;
    let stats = emu.handle.stats();
    assert_eq!(
        (
            stats.webhook_attempts,
            stats.webhook_failed_attempts,
            stats.webhooks_given_up
        ),
        (3, 2, 0)
    );
}

#[tokio::test]
async fn expiring_through_the_api_sends_expired_with_the_request() {
    let (emu, receiver) = with_receiver(Config::default()).await;
    let s = emu.create_session("req-exp").await;
    stripe_checkout::checkout_session::ExpireCheckoutSession::new(s.id.clone())
        .send(&emu.client())
        .await
        .unwrap();
    let d = receiver.wait_for(1).await;
    let event = d[0].verify().unwrap();
    assert_eq!(event.type_, EventType::CheckoutSessionExpired);
    let request = event.request.expect("the API request that caused it");
    assert!(request.id.unwrap().starts_with("req_"));
    let again = d[0].verify().unwrap();
    assert_eq!(
        session_of(&again).status,
        Some(stripe_shared::CheckoutSessionStatus::Expired)
    );
}

#[tokio::test]
async fn sessions_expire_on_their_own_after_the_lifetime() {
    let config = Config::default().with_session_lifetime(std::time::Duration::from_secs(1));
    let (emu, receiver) = with_receiver(config).await;
    let s = emu.create_session("req-timeout").await;
    let d = receiver.wait_for(1).await;
    let event = d[0].verify().unwrap();
    assert_eq!(event.type_, EventType::CheckoutSessionExpired);
    assert_eq!(session_of(&event).id, s.id);
    assert!(
        emu.handle.pay(s.id.as_str(), Outcome::Paid).is_err(),
        "an expired session cannot be paid"
    );
}
