//! Kafka down: the webhook answers 5xx so Stripe retries, and succeeds once it is back.

use std::time::Duration;

use checkout_contract::CheckoutStatus;
use stripe_emulator::Outcome;
use testkit::broker::TestBroker;

use crate::helpers::{Options, WAIT, request, spawn_app_with};

#[tokio::test]
async fn webhook_answers_5xx_while_kafka_is_down_then_succeeds() {
    let (_guard, logs) = testkit::capture_logs();
    let mut broker = TestBroker::start().await;
    let app = spawn_app_with(Options {
        bootstrap: Some(broker.bootstrap()),
        publish_timeout: Duration::from_secs(2),
        // The outage times messages out; an idempotent producer then bumps
        // its epoch, which Tansu 0.6.0 cannot take (Nisshi can).
        enable_idempotence: Some(broker.kind().supports_idempotence()),
        ..Options::default()
    })
    .await;
    let r = request(500);
    app.send(&r).await;
    let session_id = app
        .wait_for(&r.request_id, CheckoutStatus::SessionCreated)
        .await
        .session_id
        .unwrap();

    broker.kill9();
    app.emulator.pay(&session_id, Outcome::Paid).unwrap();
    testkit::eventually("a refused delivery", WAIT, || async {
        (app.emulator.stats().webhook_failed_attempts >= 1).then_some(())
    })
    .await;
    assert_eq!(
        app.emulator.stats().webhooks_delivered,
        0,
        "no 2xx without the broker's ack"
    );

    // The refusal is logged about this checkout, under its ids.
    let refused = logs.text();
    let line = refused
        .lines()
        .find(|l| l.contains("publish failed"))
        .unwrap_or_else(|| panic!("no 'publish failed' line in:\n{refused}"));
    assert!(
        line.contains(&format!("request_id={}", r.request_id)) && line.contains("trace_id="),
        "the refusal names its checkout: {line}"
    );

    broker.restart().await;
    let success = app.wait_for(&r.request_id, CheckoutStatus::Success).await;
    assert_eq!(success.session_id.as_deref(), Some(session_id.as_str()));
    testkit::eventually("delivered after the broker came back", WAIT, || async {
        (app.emulator.stats().webhooks_delivered >= 1).then_some(())
    })
    .await;
}
