//! The happy paths and the terminal outcomes, end to end.

use checkout_contract::CheckoutStatus;
use serde_json::Value;
use stripe_emulator::Outcome;

use crate::helpers::{WAIT, metric, spawn_app};

const SEED_REQUEST: &str = r#"{
  "request_id": "550e8400-e29b-41d4-a716-446655440000",
  "user_id": 123,
  "amount_cents": 500,
  "currency": "eur",
  "purpose": "balance_topup",
  "timestamp": "2024-01-15T10:30:00Z",
  "success_url": "https://example.com/balance?status=success",
  "cancel_url": "https://example.com/balance?status=cancel"
}"#;
const SEED_ID: &str = "550e8400-e29b-41d4-a716-446655440000";

/// The seed's field names, in the seed's order.
const FINISHED_FIELDS: [&str; 11] = [
    "request_id",
    "user_id",
    "amount_cents",
    "currency",
    "purpose",
    "status",
    "session_id",
    "session_url",
    "payment_intent_id",
    "error_message",
    "timestamp",
];

fn raw_events(app: &crate::helpers::TestApp, status: &str) -> Vec<Value> {
    app.finished
        .records()
        .iter()
        .map(|r| r.json())
        .filter(|v| v["status"] == status)
        .collect()
}

fn assert_seed_shape(raw: &Value) {
    let keys: Vec<&str> = raw
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = FINISHED_FIELDS.to_vec();
    expected.sort_unstable();
    let mut got = keys.clone();
    got.sort_unstable();
    assert_eq!(got, expected, "exactly the seed's fields: {raw}");
    assert_eq!(raw["request_id"], SEED_ID);
    assert_eq!(raw["user_id"], 123);
    assert_eq!(raw["amount_cents"], 500);
    assert_eq!(raw["currency"], "eur");
    assert_eq!(raw["purpose"], "balance_topup");
    assert!(raw["timestamp"].as_str().unwrap().ends_with('Z'), "{raw}");
}

#[tokio::test]
async fn seed_request_creates_a_session_and_payment_succeeds() {
    let app = spawn_app().await;
    // The seed's example, made now: a request older than Stripe's
    // idempotency window gets `failed` without a session.
    let now = checkout_contract::events::iso8601::format(&checkout_contract::events::now());
    let seed_request = SEED_REQUEST.replace("2024-01-15T10:30:00Z", &now);
    app.send_raw(0, SEED_ID, seed_request.as_bytes()).await;

    let created = app.wait_for(SEED_ID, CheckoutStatus::SessionCreated).await;
    let raw = raw_events(&app, "session_created").pop().unwrap();
    assert_seed_shape(&raw);
    let session_id = created.session_id.clone().unwrap();
    assert!(session_id.starts_with("cs_test_"), "{session_id}");
    let url = created
        .session_url
        .clone()
        .expect("session_url for session_created");
    assert!(url.starts_with("http"), "{url}");
    assert_eq!(raw["payment_intent_id"], Value::Null);
    assert_eq!(raw["error_message"], Value::Null);

    // What Stripe received: one session with our metadata and reference.
    let report = app.emulator.sessions();
    let session = report
        .sessions
        .iter()
        .find(|s| s.id == session_id)
        .expect("the session exists");
    assert_eq!(session.client_reference_id.as_deref(), Some(SEED_ID));
    assert_eq!(session.amount_total, 500);
    assert_eq!(session.currency, "eur");
    assert_eq!(
        session.metadata.get("user_id").map(String::as_str),
        Some("123")
    );
    assert_eq!(
        session.idempotency_key.as_deref(),
        Some(format!("checkout:{SEED_ID}").as_str())
    );

    app.emulator.pay(&session_id, Outcome::Paid).unwrap();
    let success = app.wait_for(SEED_ID, CheckoutStatus::Success).await;
    let raw = raw_events(&app, "success").pop().unwrap();
    assert_seed_shape(&raw);
    assert_eq!(success.session_id.as_deref(), Some(session_id.as_str()));
    let pi = success
        .payment_intent_id
        .expect("payment_intent_id on success");
    assert!(pi.starts_with("pi_"), "{pi}");
    assert_eq!(success.error_message, None);

    // The service's /metrics tells the same story. The consumers' lag comes
    // with librdkafka's statistics (every 5 s): the worker's group on the
    // partition it read, the open-session tail on checkout.finished.
    let worker_lag = format!(
        "kafka_consumer_lag_messages{{group=\"{}\",partition=\"0\",topic=\"{}\"}}",
        app.group, app.topics.requests
    );
    let tail_lag = format!("topic=\"{}\"}}", app.topics.finished);
    let accepted = "checkout_webhook_deliveries_total{event_type=\"checkout.session.completed\",outcome=\"accepted\"}";
    let published_success = "checkout_finished_published_total{status=\"success\"}";
    let text = testkit::eventually("the checkout's metrics", WAIT, || async {
        let text = app.metrics().await;
        let tail_reports = text
            .lines()
            .any(|l| l.starts_with("kafka_consumer_lag_messages{") && l.contains(&tail_lag));
        (text.contains(&worker_lag)
            && tail_reports
            && metric::<u64>(&text, accepted) >= 1
            && metric::<u64>(&text, published_success) >= 1)
            .then_some(text)
    })
    .await;
    for (line, least) in [
        (
            "checkout_stripe_request_duration_seconds_count{endpoint=\"create_session\",outcome=\"ok\"}",
            1,
        ),
        ("checkout_stripe_budget_wait_seconds_count", 1),
        ("checkout_request_duration_seconds_count", 1),
        (
            "checkout_finished_published_total{status=\"session_created\"}",
            1,
        ),
        (
            "checkout_stripe_retries_total{endpoint=\"create_session\"}",
            0,
        ),
        ("checkout_dead_lettered_total{reason=\"invalid_json\"}", 0),
    ] {
        let value: u64 = metric(&text, line);
        assert!(value >= least, "{line} {value} < {least}:\n{text}");
    }
    assert_eq!(
        metric::<u64>(
            &text,
            "checkout_finished_published_total{status=\"failed\"}"
        ),
        0,
        "{text}"
    );
    assert_eq!(
        metric::<i64>(&text, "checkout_stripe_in_flight"),
        0,
        "{text}"
    );
    assert!(
        metric::<f64>(&text, "process_resident_memory_bytes") > 0.0,
        "{text}"
    );
    assert!(metric::<f64>(&text, "process_open_fds") > 0.0, "{text}");
}

#[tokio::test]
async fn async_payment_failure_and_expiry_end_in_failed() {
    let app = spawn_app().await;
    let failing = crate::helpers::request(700);
    let expiring = crate::helpers::request(800);
    let settling = crate::helpers::request(900);
    for r in [&failing, &expiring, &settling] {
        app.send(r).await;
    }
    let app = &app;
    let session = |id: String| async move {
        app.wait_for(&id, CheckoutStatus::SessionCreated)
            .await
            .session_id
            .unwrap()
    };
    let failing_session = session(failing.request_id.clone()).await;
    let expiring_session = session(expiring.request_id.clone()).await;
    let settling_session = session(settling.request_id.clone()).await;

    app.emulator
        .pay(&failing_session, Outcome::AsyncFailed)
        .unwrap();
    app.emulator
        .pay(&expiring_session, Outcome::Expired)
        .unwrap();
    app.emulator
        .pay(&settling_session, Outcome::AsyncSucceeded)
        .unwrap();

    let failed = app
        .wait_for(&failing.request_id, CheckoutStatus::Failed)
        .await;
    assert_eq!(failed.amount_cents, 700);
    assert_eq!(failed.session_id.as_deref(), Some(failing_session.as_str()));
    assert!(failed.error_message.unwrap().contains("failed"));

    let expired = app
        .wait_for(&expiring.request_id, CheckoutStatus::Failed)
        .await;
    assert_eq!(expired.amount_cents, 800);
    assert!(expired.error_message.unwrap().contains("expired"));

    let settled = app
        .wait_for(&settling.request_id, CheckoutStatus::Success)
        .await;
    assert_eq!(settled.amount_cents, 900);
    assert!(settled.payment_intent_id.is_some());

    // Every webhook was acknowledged, and nothing else was published for them.
    testkit::eventually("all webhooks delivered", WAIT, || async {
        app.emulator
            .events()
            .iter()
            .all(|e| e.delivered > 0)
            .then_some(())
    })
    .await;
    for (r, terminal) in [
        (&failing, CheckoutStatus::Failed),
        (&expiring, CheckoutStatus::Failed),
        (&settling, CheckoutStatus::Success),
    ] {
        let statuses: Vec<CheckoutStatus> = app
            .events_for(&r.request_id)
            .iter()
            .map(|e| e.status)
            .collect();
        assert_eq!(
            statuses,
            [CheckoutStatus::SessionCreated, terminal],
            "{}",
            r.request_id
        );
    }
}

#[tokio::test]
async fn the_same_request_three_times_makes_one_session() {
    let app = spawn_app().await;
    let r = crate::helpers::request(1500);
    for _ in 0..3 {
        app.send(&r).await;
    }
    let created = testkit::eventually("three session_created", WAIT, || async {
        let created: Vec<_> = app
            .events_for(&r.request_id)
            .into_iter()
            .filter(|e| e.status == CheckoutStatus::SessionCreated)
            .collect();
        (created.len() == 3).then_some(created)
    })
    .await;
    let ids: std::collections::HashSet<_> = created
        .iter()
        .map(|e| e.session_id.clone().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "the same session every time: {ids:?}");
    assert_eq!(app.sessions_created_for(&r.request_id), 1);
    assert_eq!(app.emulator.stats().sessions_created, 1);
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_commits_them() {
    let mut app = crate::helpers::spawn_app_with(crate::helpers::Options {
        faults: stripe_emulator::Faults {
            latency_ms: 1000,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let r = crate::helpers::request(500);
    app.send(&r).await;
    testkit::eventually("the request is in flight", WAIT, || async {
        (app.emulator.stats().api_calls >= 1).then_some(())
    })
    .await;
    assert!(app.events_for(&r.request_id).is_empty());

    app.stop().await.expect("a clean stop");
    // Finished within the grace period, published, and its offset committed.
    app.wait_for(&r.request_id, CheckoutStatus::SessionCreated)
        .await;
    assert_eq!(
        app.committed_total().await,
        1,
        "the handled message is committed"
    );
}

#[tokio::test]
async fn a_crash_mid_request_redelivers_it_and_the_key_keeps_one_session() {
    let mut app = crate::helpers::spawn_app_with(crate::helpers::Options {
        faults: stripe_emulator::Faults {
            latency_ms: 1000,
            ..Default::default()
        },
        ..Default::default()
    })
    .await;
    let r = crate::helpers::request(500);
    app.send(&r).await;
    testkit::eventually("the request is in flight", WAIT, || async {
        (app.emulator.stats().api_calls >= 1).then_some(())
    })
    .await;
    app.crash().await;
    assert!(
        app.events_for(&r.request_id).is_empty(),
        "nothing was finished"
    );
    assert_eq!(
        app.committed_total().await,
        0,
        "nothing unfinished is committed"
    );

    app.emulator
        .set_faults(stripe_emulator::Faults::default())
        .unwrap();
    app.restart().await;
    let created = app
        .wait_for(&r.request_id, CheckoutStatus::SessionCreated)
        .await;
    assert_eq!(
        app.sessions_created_for(&r.request_id),
        1,
        "the redelivery reused the session"
    );
    let report = app.emulator.sessions();
    assert_eq!(report.sessions.len(), 1);
    assert_eq!(
        created.session_id.as_deref(),
        Some(report.sessions[0].id.as_str())
    );
}
