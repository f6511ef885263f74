//! Every row of the retry table: 429, 500, timeout, 400, invalid input, 401.

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
async fn server_errors_use_up_the_retry_budget_then_fail() {
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
    let failed = app.wait_for(&r.request_id, CheckoutStatus::Failed).await;
    let message = failed.error_message.unwrap();
    assert!(
        message.contains("after 3 attempts") && message.contains("500"),
        "{message}"
    );
    let stats = app.emulator.stats();
    assert_eq!(stats.create_calls, 3, "{stats:?}");
    // Stripe saves a 500 under the idempotency key: two replays prove the key was reused.
    assert_eq!(stats.injected_500, 1, "{stats:?}");
    assert_eq!(stats.idempotent_replays, 2, "{stats:?}");
    assert_eq!(stats.sessions_created, 0);
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
async fn a_permanent_stripe_error_fails_at_once() {
    let app = spawn_app().await;
    let first = request(1000);
    app.send(&first).await;
    app.wait_for(&first.request_id, CheckoutStatus::SessionCreated)
        .await;
    let calls_before = app.emulator.stats().create_calls;

    // Same request_id, other amount: Stripe answers 400 idempotency_error.
    let mut conflicting = first.clone();
    conflicting.amount_cents = 2000;
    app.send(&conflicting).await;
    let failed = app
        .wait_for(&first.request_id, CheckoutStatus::Failed)
        .await;
    let message = failed.error_message.unwrap();
    assert!(
        message.contains("400") && message.contains("idempotency"),
        "{message}"
    );
    assert_eq!(failed.amount_cents, 2000);
    assert_eq!(
        app.emulator.stats().create_calls,
        calls_before + 1,
        "no retry of a 400"
    );
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
