//! The webhook endpoint: signatures, status codes, duplicates and ordering;
//! Stripe-shaped payloads (with fields and values the client does not know)
//! publish their outcome.

use checkout_contract::{CheckoutFinishedEvent, CheckoutStatus};
use reqwest::StatusCode;
use serde_json::{Value, json};
use stripe_emulator::{Faults, Outcome};
use stripe_webhook::Webhook;

use crate::helpers::{
    API_KEY, Options, TestApp, WAIT, WEBHOOK_SECRET, metric, request, spawn_app, spawn_app_with,
};

/// A session the worker created, as Stripe's API returns it.
async fn created_session(app: &TestApp, amount: i64) -> (String, Value) {
    let r = request(amount);
    app.send(&r).await;
    let id = app
        .wait_for(&r.request_id, CheckoutStatus::SessionCreated)
        .await
        .session_id
        .unwrap();
    let session = app
        .http
        .get(format!("{}v1/checkout/sessions/{id}", app.api_base))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    (r.request_id, session)
}

fn event(type_: &str, session: &Value) -> String {
    json!({
        "id": format!("evt_test_{}", uuid::Uuid::new_v4().simple()),
        "object": "event",
        "api_version": stripe_emulator::session::API_VERSION,
        "created": chrono::Utc::now().timestamp(),
        "data": {"object": session},
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": type_,
    })
    .to_string()
}

async fn post(
    app: &TestApp,
    body: impl Into<reqwest::Body>,
    signature: Option<&str>,
) -> StatusCode {
    let mut req = app
        .http
        .post(&app.webhook_url)
        .header("content-type", "application/json")
        .body(body);
    if let Some(sig) = signature {
        req = req.header("Stripe-Signature", sig);
    }
    req.send().await.unwrap().status()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

#[tokio::test]
async fn bad_deliveries_get_400_or_413_and_publish_nothing() {
    let app = spawn_app_with(Options {
        // Rotation: the old secret first, the current one second.
        webhook_secrets: vec![
            "whsec_old_rotated_out".to_owned(),
            WEBHOOK_SECRET.to_owned(),
        ],
        ..Options::default()
    })
    .await;
    let (request_id, mut session) = created_session(&app, 500).await;
    session["status"] = json!("expired");
    let payload = event("checkout.session.expired", &session);

    let good = Webhook::generate_test_header(&payload, WEBHOOK_SECRET, None);
    let wrong_secret = Webhook::generate_test_header(&payload, "whsec_attacker", None);
    let stale = Webhook::generate_test_header(&payload, WEBHOOK_SECRET, Some(now() - 301));
    let tampered = payload.replace("\"amount_total\":500", "\"amount_total\":5");
    assert_ne!(tampered, payload);
    let malformed = "{\"id\": \"evt_broken\", \"type\": ";
    let malformed_sig = Webhook::generate_test_header(malformed, WEBHOOK_SECRET, None);

    assert_eq!(
        post(&app, payload.clone(), None).await,
        StatusCode::BAD_REQUEST,
        "unsigned"
    );
    assert_eq!(
        post(&app, payload.clone(), Some(&wrong_secret)).await,
        StatusCode::BAD_REQUEST,
        "wrong secret"
    );
    assert_eq!(
        post(&app, payload.clone(), Some(&stale)).await,
        StatusCode::BAD_REQUEST,
        "stale"
    );
    assert_eq!(
        post(&app, tampered, Some(&good)).await,
        StatusCode::BAD_REQUEST,
        "tampered body"
    );
    assert_eq!(
        post(&app, payload.clone(), Some("t=abc,v1=00")).await,
        StatusCode::BAD_REQUEST,
        "bad header"
    );
    assert_eq!(
        post(&app, malformed, Some(&malformed_sig)).await,
        StatusCode::BAD_REQUEST,
        "malformed JSON"
    );
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(300 * 1024));
    let huge_sig = Webhook::generate_test_header(&huge, WEBHOOK_SECRET, None);
    assert_eq!(
        post(&app, huge, Some(&huge_sig)).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "too big"
    );

    // Several v1 values (as during a rotation on Stripe's side): any match is enough.
    let (t, v1) = good.split_once(",v1=").unwrap();
    let two_signatures = format!("{t},v1={},v1={v1}", "ab".repeat(32));
    assert_eq!(
        post(&app, payload.clone(), Some(&two_signatures)).await,
        StatusCode::OK
    );

    // Same key, same partition: had anything been published before, it would come first.
    let failed = app.wait_for(&request_id, CheckoutStatus::Failed).await;
    assert!(failed.error_message.unwrap().contains("expired"));
    let events: Vec<CheckoutStatus> = app
        .events_for(&request_id)
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        events,
        [CheckoutStatus::SessionCreated, CheckoutStatus::Failed]
    );
}

/// Stripe's payloads for the four event types, in the exact shape of the
/// pinned API version, with an unknown field at the top and in the session
/// and enum values the client does not know (see `src/testdata/`).
const STRIPE_EVENTS: [(&str, &str); 4] = [
    (
        "checkout.session.completed",
        include_str!("../../src/testdata/event_checkout_session_completed.json"),
    ),
    (
        "checkout.session.async_payment_succeeded",
        include_str!("../../src/testdata/event_checkout_session_async_payment_succeeded.json"),
    ),
    (
        "checkout.session.async_payment_failed",
        include_str!("../../src/testdata/event_checkout_session_async_payment_failed.json"),
    ),
    (
        "checkout.session.expired",
        include_str!("../../src/testdata/event_checkout_session_expired.json"),
    ),
];

#[tokio::test]
async fn stripe_shaped_events_with_unknown_fields_and_values_publish_their_outcome() {
    let app = spawn_app().await;
    for (type_, fixture) in STRIPE_EVENTS {
        // A real request and its session; the fixture made to be about them.
        let (request_id, session) = created_session(&app, 500).await;
        let mut payload: Value = serde_json::from_str(fixture).unwrap();
        assert_eq!(payload["type"], type_);
        assert!(payload.get("unknown_envelope_field").is_some());
        let object = &mut payload["data"]["object"];
        assert!(object.get("unknown_session_field").is_some());
        object["id"] = session["id"].clone();
        object["client_reference_id"] = json!(request_id);
        object["metadata"]["request_id"] = json!(request_id);
        payload["id"] = json!(format!("evt_test_{}", uuid::Uuid::new_v4().simple()));
        let payload = payload.to_string();
        let signature = Webhook::generate_test_header(&payload, WEBHOOK_SECRET, None);
        assert_eq!(
            post(&app, payload, Some(&signature)).await,
            StatusCode::OK,
            "{type_}"
        );

        let (status, error) = match type_ {
            "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
                (CheckoutStatus::Success, None)
            }
            "checkout.session.async_payment_failed" => {
                (CheckoutStatus::Failed, Some("asynchronous payment failed"))
            }
            _ => (CheckoutStatus::Failed, Some("checkout session expired")),
        };
        let finished = app.wait_for(&request_id, status).await;
        assert_eq!(
            finished.session_id.as_ref(),
            session["id"].as_str().map(str::to_owned).as_ref()
        );
        assert_eq!(
            (finished.user_id, finished.amount_cents),
            (123, 500),
            "{type_}"
        );
        assert_eq!(finished.error_message.as_deref(), error, "{type_}");
        assert_eq!(
            finished.payment_intent_id.as_deref(),
            (status == CheckoutStatus::Success).then_some("pi_3TqRsT9x8obd1Gi61AbCdEfG"),
            "{type_}"
        );
        assert_eq!(
            app.events_for(&request_id)
                .iter()
                .map(|e| e.status)
                .collect::<Vec<_>>(),
            [CheckoutStatus::SessionCreated, status],
            "{type_}: one outcome, nothing else"
        );
    }
}

#[tokio::test]
async fn unknown_event_types_and_unpaid_completions_are_acknowledged_and_ignored() {
    let app = spawn_app().await;
    let (request_id, mut session) = created_session(&app, 500).await;
    session["status"] = json!("complete");
    session["payment_status"] = json!("unpaid");
    let completed_unpaid = event("checkout.session.completed", &session);
    let sig = Webhook::generate_test_header(&completed_unpaid, WEBHOOK_SECRET, None);
    assert_eq!(
        post(&app, completed_unpaid, Some(&sig)).await,
        StatusCode::OK
    );

    let unknown = json!({
        "id": "evt_test_unknown", "object": "event", "api_version": stripe_emulator::session::API_VERSION,
        "created": now(), "data": {"object": {"id": "thing_1", "object": "thing"}},
        "livemode": false, "pending_webhooks": 1, "request": null, "type": "thing.happened"
    })
    .to_string();
    let sig = Webhook::generate_test_header(&unknown, WEBHOOK_SECRET, None);
    assert_eq!(post(&app, unknown, Some(&sig)).await, StatusCode::OK);

    // Then the real ending through the emulator; only it is published.
    let session_id = session["id"].as_str().unwrap();
    app.emulator.pay(session_id, Outcome::Paid).unwrap();
    app.wait_for(&request_id, CheckoutStatus::Success).await;
    let events: Vec<CheckoutStatus> = app
        .events_for(&request_id)
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        events,
        [CheckoutStatus::SessionCreated, CheckoutStatus::Success]
    );

    // Each delivery counted by its type (ours by name, the rest as `other`)
    // and how it was answered.
    let deliveries = |event_type: &str, outcome: &str| {
        format!(
            "checkout_webhook_deliveries_total{{event_type=\"{event_type}\",outcome=\"{outcome}\"}}"
        )
    };
    let completed = "checkout.session.completed";
    let text = testkit::eventually("the deliveries counted", WAIT, || async {
        let text = app.metrics().await;
        (metric::<u64>(&text, &deliveries(completed, "accepted")) == 1).then_some(text)
    })
    .await;
    for (event_type, outcome, count) in [
        (completed, "ignored", 1),
        ("other", "ignored", 1),
        ("other", "bad_signature", 0),
        (completed, "unavailable", 0),
    ] {
        let line = deliveries(event_type, outcome);
        assert_eq!(metric::<u64>(&text, &line), count, "{line}:\n{text}");
    }
    assert!(!text.contains("thing.happened"), "{text}");
}

#[tokio::test]
async fn badly_signed_and_stale_deliveries_are_refused_until_stripe_signs_properly() {
    let app = spawn_app_with(Options {
        faults: Faults {
            webhook_bad_signature_rate: 1.0,
            ..Faults::default()
        },
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
    app.emulator.pay(&session_id, Outcome::Paid).unwrap();
    testkit::eventually("refused badly signed attempts", WAIT, || async {
        (app.emulator.stats().webhook_failed_attempts >= 2).then_some(())
    })
    .await;

    app.emulator
        .set_faults(Faults {
            webhook_stale_timestamp_rate: 1.0,
            ..Faults::default()
        })
        .unwrap();
    let before = app.emulator.stats().webhook_failed_attempts;
    testkit::eventually("refused stale attempts", WAIT, || async {
        (app.emulator.stats().webhook_failed_attempts >= before + 2).then_some(())
    })
    .await;
    assert_eq!(app.emulator.stats().webhooks_delivered, 0);
    assert_eq!(
        app.events_for(&r.request_id).len(),
        1,
        "only session_created so far"
    );

    app.emulator.set_faults(Faults::default()).unwrap();
    let success = app.wait_for(&r.request_id, CheckoutStatus::Success).await;
    assert!(success.payment_intent_id.is_some());
    // Every refused attempt counted; nothing of them trusted, so no type.
    let refused: u64 = metric(
        &app.metrics().await,
        "checkout_webhook_deliveries_total{event_type=\"other\",outcome=\"bad_signature\"}",
    );
    assert!(
        refused >= before + 2,
        "{refused} refused, {before} before the stale ones"
    );
}

#[tokio::test]
async fn duplicated_and_reordered_webhooks_never_contradict() {
    let app = spawn_app_with(Options {
        faults: Faults {
            webhook_duplicate_rate: 1.0,
            webhook_out_of_order_rate: 1.0,
            ..Faults::default()
        },
        ..Options::default()
    })
    .await;
    let outcomes = [
        Outcome::Paid,
        Outcome::AsyncSucceeded,
        Outcome::AsyncFailed,
        Outcome::Expired,
        Outcome::AsyncSucceeded,
        Outcome::AsyncFailed,
    ];
    let mut cases = Vec::new();
    for outcome in outcomes {
        let r = request(500);
        app.send(&r).await;
        cases.push((r, outcome));
    }
    for (r, outcome) in &cases {
        let session_id = app
            .wait_for(&r.request_id, CheckoutStatus::SessionCreated)
            .await
            .session_id
            .unwrap();
        app.emulator.pay(&session_id, *outcome).unwrap();
    }
    testkit::eventually("every event delivered twice", WAIT, || async {
        let events = app.emulator.events();
        (!events.is_empty() && events.iter().all(|e| e.delivered >= 2)).then_some(())
    })
    .await;
    assert!(app.emulator.stats().webhook_duplicates > 0);

    for (r, outcome) in &cases {
        let expected = match outcome {
            Outcome::Paid | Outcome::AsyncSucceeded => CheckoutStatus::Success,
            _ => CheckoutStatus::Failed,
        };
        let terminal: Vec<CheckoutFinishedEvent> =
            testkit::eventually("terminal events", WAIT, || async {
                let t: Vec<_> = app
                    .events_for(&r.request_id)
                    .into_iter()
                    .filter(|e| e.status.is_terminal())
                    .collect();
                (!t.is_empty()).then_some(t)
            })
            .await;
        assert!(
            terminal.iter().all(|e| e.status == expected),
            "{outcome:?} for {} gave {:?}",
            r.request_id,
            terminal.iter().map(|e| e.status).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn a_flood_of_bad_signatures_is_refused_one_by_one_and_publishes_nothing() {
    use futures::StreamExt as _;
    const FLOOD: usize = 2_000;
    let app = spawn_app().await;
    let (request_id, mut session) = created_session(&app, 500).await;
    session["payment_status"] = json!("paid");
    session["status"] = json!("complete");
    let body = event("checkout.session.completed", &session);

    let statuses: Vec<(StatusCode, Value)> = futures::stream::iter(0..FLOOD)
        .map(|i| {
            let (app, body) = (&app, body.clone());
            async move {
                // Well-formed headers, wrong HMACs (and a few wrong secrets).
                let signature = if i % 10 == 0 {
                    Webhook::generate_test_header(&body, "whsec_not_ours", None)
                } else {
                    format!("t={},v1={:064x}", now(), i)
                };
                let response = app
                    .http
                    .post(&app.webhook_url)
                    .header("content-type", "application/json")
                    .header("Stripe-Signature", signature)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let status = response.status();
                (
                    status,
                    response.json::<Value>().await.unwrap_or(Value::Null),
                )
            }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    for (status, body) in &statuses {
        assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
        assert!(
            body["error"].as_str().is_some_and(|e| !e.is_empty()),
            "a clear error: {body}"
        );
    }
    assert_eq!(statuses.len(), FLOOD);

    // Nothing was published for the session, and the service still takes
    // the genuine delivery.
    assert_eq!(
        post(
            &app,
            body.clone(),
            Some(&Webhook::generate_test_header(&body, WEBHOOK_SECRET, None))
        )
        .await,
        StatusCode::OK
    );
    app.wait_for(&request_id, CheckoutStatus::Success).await;
    assert_eq!(
        app.events_for(&request_id)
            .iter()
            .filter(|e| e.status == CheckoutStatus::Success)
            .count(),
        1,
        "one success: the flood published nothing"
    );
}
