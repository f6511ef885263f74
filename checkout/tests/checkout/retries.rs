//! Every row of the retry table: 429, 500, timeout, 400 (`idempotency_error`),
//! invalid input, 401. Stripe unavailable is waited out, never answered `failed`.

use std::time::Duration;

use checkout_contract::CheckoutStatus;
use stripe_emulator::Faults;

use crate::helpers::{Options, WAIT, request, spawn_app, spawn_app_with};

#[tokio::test]
async fn rate_limited_calls_are_retried_with_the_same_key_until_they_succeed() {
    let app = spawn_app_with(Options {
        faults: Faults {
            rate_429: 1.0,
            ..Faults::default()
        },
        max_attempts: 1000,
        ..Options::default()
    })
    .await;
    let r = request(500);
    app.send(&r).await;
    testkit::eventually("three 429s", WAIT, || async {
        (app.emulator.stats().injected_429 >= 3).then_some(())
    })
    .await;
    assert!(
        app.events_for(&r.request_id).is_empty(),
        "nothing published while Stripe says 429"
    );

    app.emulator.set_faults(Faults::default()).unwrap();
    let created = app
        .wait_for(&r.request_id, CheckoutStatus::SessionCreated)
        .await;
    assert!(created.session_id.is_some());
    assert_eq!(app.sessions_created_for(&r.request_id), 1);
}

#[tokio::test]
async fn a_stripe_outage_is_waited_out_and_never_answered_failed() {
    let app = spawn_app_with(Options {
        faults: Faults {
            rate_500: 1.0,
            ..Faults::default()
        },
        max_attempts: 3,
        ..Options::default()
    })
    .await;
    let r = request(500);
    app.send(&r).await;
    // Two rounds of the retry budget: Stripe unavailable is no answer, the request waits.
    testkit::eventually("two rounds of create calls", WAIT, || async {
        (app.emulator.stats().create_calls >= 6).then_some(())
    })
    .await;
    let stats = app.emulator.stats();
    // Stripe saves a 500 under the idempotency key: replays prove the key was reused.
    assert!(stats.idempotent_replays >= 2, "{stats:?}");
    assert_eq!(stats.sessions_created, 0);
    assert!(
        app.events_for(&r.request_id).is_empty(),
        "nothing published while Stripe is down"
    );

    app.emulator.set_faults(Faults::default()).unwrap();
    let created = app
        .wait_for(&r.request_id, CheckoutStatus::SessionCreated)
        .await;
    let report = app.emulator.sessions();
    assert_eq!(report.sessions.len(), 1, "one session");
    assert_eq!(
        created.session_id.as_deref(),
        Some(report.sessions[0].id.as_str())
    );
    // The first key holds Stripe's saved 500 for 24 h: once a lookup showed no
    // session, the request moved on to the key's next generation.
    assert_eq!(
        report.sessions[0].idempotency_key,
        Some(format!("checkout:{}:1", r.request_id))
    );
    let statuses: Vec<_> = app
        .events_for(&r.request_id)
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(statuses, [CheckoutStatus::SessionCreated], "never failed");
}

#[tokio::test]
async fn timed_out_attempts_are_retried_and_make_one_session() {
    let app = spawn_app_with(Options {
        faults: Faults {
            latency_ms: 1500,
            ..Faults::default()
        },
        stripe_timeout: Duration::from_millis(300),
        max_attempts: 1000,
        ..Options::default()
    })
    .await;
    let r = request(500);
    app.send(&r).await;
    testkit::eventually("two timed-out attempts", WAIT, || async {
        (app.emulator.stats().api_calls >= 2).then_some(())
    })
    .await;
    assert!(
        app.events_for(&r.request_id).is_empty(),
        "nothing published while Stripe is slow"
    );

    app.emulator.set_faults(Faults::default()).unwrap();
    app.wait_for(&r.request_id, CheckoutStatus::SessionCreated)
        .await;
    // Late answers of the slow attempts must not have created more sessions.
    testkit::eventually("slow attempts settled", WAIT, || async {
        let report = app.emulator.sessions();
        (report.sessions.len() == 1).then_some(())
    })
    .await;
    assert_eq!(app.sessions_created_for(&r.request_id), 1);
}

#[tokio::test]
async fn a_request_reusing_a_request_id_gets_its_sessions_state_not_failed() {
    let app = spawn_app().await;
    let first = request(1000);
    app.send(&first).await;
    let created = app
        .wait_for(&first.request_id, CheckoutStatus::SessionCreated)
        .await;
    let calls_before = app.emulator.stats().create_calls;

    // Same request_id, other amount: Stripe answers 400 idempotency_error.
    // A session for the request exists: its state is the answer.
    let mut conflicting = first.clone();
    conflicting.amount_cents = 2000;
    app.send(&conflicting).await;
    let again = testkit::eventually("a second session_created", WAIT, || async {
        let events: Vec<_> = app
            .events_for(&first.request_id)
            .into_iter()
            .filter(|e| e.status == CheckoutStatus::SessionCreated)
            .collect();
        (events.len() == 2).then(|| events[1].clone())
    })
    .await;
    assert_eq!(again.session_id, created.session_id);
    assert_eq!(again.amount_cents, 1000, "what the session charges");
    assert_eq!(
        app.emulator.stats().create_calls,
        calls_before + 1,
        "no retry of a 400"
    );
    assert!(
        app.events_for(&first.request_id)
            .iter()
            .all(|e| e.status == CheckoutStatus::SessionCreated),
        "never failed"
    );
    assert_eq!(app.emulator.stats().sessions_created, 1);
}

#[tokio::test]
async fn invalid_requests_fail_without_calling_stripe() {
    let app = spawn_app().await;
    let mut r = request(10); // below EUR's minimum of 50
    r.user_id = 77;
    app.send(&r).await;
    let failed = app.wait_for(&r.request_id, CheckoutStatus::Failed).await;
    let message = failed.error_message.unwrap();
    assert!(message.contains("amount_cents"), "{message}");
    assert_eq!(failed.user_id, 77);
    assert_eq!(failed.session_id, None);
    assert_eq!(app.emulator.stats().api_calls, 0);
}

#[tokio::test]
async fn a_refused_api_key_stops_the_worker_instead_of_failing_requests() {
    let mut app = spawn_app_with(Options {
        emulator_api_key: Some("sk_test_a_different_key".to_owned()),
        ..Options::default()
    })
    .await;
    let r = request(500);
    app.send(&r).await;
    let result = app.finished_run(WAIT).await;
    let err = result.expect_err("the run ends with an error");
    assert!(matches!(err, checkout::Error::Worker(_)), "{err:?}");
    assert!(err.to_string().contains("401"), "{err}");
    assert_eq!(
        app.emulator.stats().unauthorized,
        1,
        "one refusal, then the worker stopped"
    );
    assert!(
        app.events_for(&r.request_id).is_empty(),
        "no failed event for a configuration fault"
    );
}
