//! Injected faults, each observable from the outside: latency (as a ratio),
//! 429s, duplicate and out-of-order deliveries, bad signatures, stale timestamps.

use std::time::{Duration, Instant};

use stripe_checkout::checkout_session::RetrieveCheckoutSession;
use stripe_emulator::{Config, Faults, Outcome};

use crate::helpers::{fast_retries, spawn, with_receiver};

#[tokio::test]
async fn added_latency_slows_every_api_call() {
    let emu = spawn(Config::default()).await;
    let client = emu.client();
    let s = emu.create_session("lat").await;
    let timed = || async {
        let start = Instant::now();
        for _ in 0..5 {
            RetrieveCheckoutSession::new(s.id.clone())
                .send(&client)
                .await
                .unwrap();
        }
        start.elapsed()
    };
    let fast = timed().await;
    emu.handle
        .set_faults(Faults {
            latency_ms: 200,
            ..Faults::default()
        })
        .unwrap();
    let slow = timed().await;
    println!("5 retrieves: {fast:?} without latency, {slow:?} with 200 ms added");
    assert!(
        slow >= Duration::from_millis(1000),
        "each call waits at least the added latency"
    );
    assert!(
        slow.as_secs_f64() > 3.0 * fast.as_secs_f64(),
        "latency dominates: {slow:?} vs {fast:?}"
    );
}

#[tokio::test]
async fn rate_limited_calls_are_typed_429s_that_create_nothing() {
    let emu = spawn(Config::default().with_faults(Faults {
        rate_429: 1.0,
        ..Faults::default()
    }))
    .await;
    match crate::helpers::create_request("r", 1000)
        .send(&emu.client())
        .await
        .unwrap_err()
    {
        stripe::StripeError::Stripe(e, 429) => {
            assert_eq!(e.code, Some(stripe::ApiErrorsCode::RateLimit))
        }
        other => panic!("expected 429, got {other:?}"),
    }
    assert!(emu.handle.sessions().sessions.is_empty());
    assert_eq!(emu.handle.stats().injected_429, 1);
}

#[tokio::test]
async fn duplicate_fault_delivers_the_same_event_twice() {
    let faults = Faults {
        webhook_duplicate_rate: 1.0,
        ..Faults::default()
    };
    let (emu, receiver) = with_receiver(
        Config::default()
            .with_faults(faults)
            .with_delivery(fast_retries(5)),
    )
    .await;
    let s = emu.create_session("dup").await;
    emu.handle.pay(s.id.as_str(), Outcome::Paid).unwrap();
    let deliveries = receiver.wait_for(2).await;
    assert_eq!(deliveries[0].event_id(), deliveries[1].event_id());
    assert!(
        deliveries
            .iter()
            .all(|d| d.verdict.is_ok() && d.answered == 200)
    );
    assert_eq!(emu.handle.stats().webhook_duplicates, 1);
}

#[tokio::test]
async fn out_of_order_fault_sends_a_held_event_after_the_next_one() {
    let faults = Faults {
        webhook_out_of_order_rate: 1.0,
        ..Faults::default()
    };
    let (emu, receiver) = with_receiver(
        Config::default()
            .with_faults(faults)
            .with_delivery(fast_retries(5)),
    )
    .await;
    let s = emu.create_session("ooo").await;
    emu.handle
        .pay(s.id.as_str(), Outcome::AsyncSucceeded)
        .unwrap();
    let deliveries = receiver.wait_for(2).await;
    let types: Vec<String> = deliveries.iter().map(|d| d.event_type()).collect();
    assert_eq!(
        types,
        [
            "checkout.session.async_payment_succeeded",
            "checkout.session.completed"
        ]
    );
    assert!(deliveries.iter().all(|d| d.verdict.is_ok()));

    // A lone held event still goes out once the hold time passes.
    let lone = emu.create_session("ooo-lone").await;
    emu.handle.pay(lone.id.as_str(), Outcome::Paid).unwrap();
    let deliveries = receiver.wait_for(3).await;
    assert_eq!(deliveries[2].event_type(), "checkout.session.completed");
    assert!(emu.handle.stats().webhook_reordered >= 2);
}

#[tokio::test]
async fn bad_signature_is_rejected_by_the_receiver_then_retried() {
    let faults = Faults {
        webhook_bad_signature_rate: 1.0,
        ..Faults::default()
    };
    let (emu, receiver) = with_receiver(
        Config::default()
            .with_faults(faults)
            .with_delivery(fast_retries(100)),
    )
    .await;
    let s = emu.create_session("badsig").await;
    emu.handle.pay(s.id.as_str(), Outcome::Paid).unwrap();
    let first = receiver.wait_for(1).await;
    assert_eq!(first[0].verdict.as_ref().unwrap_err(), "BadSignature");
    assert_eq!(first[0].answered, 400);

    emu.handle.set_faults(Faults::default()).unwrap();
    let all = receiver
        .wait_until("a correctly signed retry", |d| d.verdict.is_ok())
        .await;
    let last = all.last().unwrap();
    assert_eq!(
        last.event_id(),
        first[0].event_id(),
        "the retry carries the same event"
    );
    assert_eq!(last.answered, 200);
}

#[tokio::test]
async fn stale_timestamp_fails_the_tolerance_check_then_retried() {
    let faults = Faults {
        webhook_stale_timestamp_rate: 1.0,
        ..Faults::default()
    };
    let (emu, receiver) = with_receiver(
        Config::default()
            .with_faults(faults)
            .with_delivery(fast_retries(100)),
    )
    .await;
    let s = emu.create_session("stale").await;
    emu.handle.pay(s.id.as_str(), Outcome::Expired).unwrap();
    let first = receiver.wait_for(1).await;
    assert!(
        first[0]
            .verdict
            .as_ref()
            .unwrap_err()
            .starts_with("BadTimestamp"),
        "{:?}",
        first[0].verdict
    );
    let t: i64 = first[0]
        .signature
        .trim_start_matches("t=")
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        chrono::Utc::now().timestamp() - t > 300,
        "older than Stripe's 300 s tolerance"
    );

    emu.handle.set_faults(Faults::default()).unwrap();
    receiver
        .wait_until("a fresh retry", |d| d.verdict.is_ok())
        .await;
}

#[tokio::test]
async fn deliveries_give_up_after_the_configured_attempts() {
    let faults = Faults {
        webhook_bad_signature_rate: 1.0,
        ..Faults::default()
    };
    let (emu, receiver) = with_receiver(
        Config::default()
            .with_faults(faults)
            .with_delivery(fast_retries(3)),
    )
    .await;
    let s = emu.create_session("giveup").await;
    emu.handle.pay(s.id.as_str(), Outcome::Paid).unwrap();
    testkit::eventually(
        "the delivery to be given up",
        Duration::from_secs(5),
        || async { (emu.handle.stats().webhooks_given_up == 1).then_some(()) },
    )
    .await;
    assert_eq!(receiver.deliveries().len(), 3);
    let events = emu.handle.events();
    assert_eq!(
        (events[0].attempts, events[0].delivered, events[0].given_up),
        (3, 0, 1)
    );
}
