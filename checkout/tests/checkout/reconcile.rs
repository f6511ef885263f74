//! Reconciliation with Stripe: a payment whose every webhook is lost still
//! gets its outcome, the same event a webhook would have published; the
//! open sessions are rebuilt from `checkout.finished` after a restart; a
//! signed webhook async-stripe cannot parse is decided from the session.

use std::time::Duration;

use checkout::config::ReconcileConfig;
use checkout_contract::kafka::HEADER_TRACEPARENT;
use checkout_contract::trace::TraceContext;
use checkout_contract::{CheckoutFinishedEvent, CheckoutStatus};
use reqwest::StatusCode;
use serde_json::json;
use stripe_emulator::{DeliveryPolicy, Faults, Outcome};
use stripe_webhook::Webhook;

use crate::helpers::{Options, TestApp, WAIT, WEBHOOK_SECRET, metric, request, spawn_app_with};

/// Nothing listens there: every delivery attempt fails.
const LOST: &str = "http://127.0.0.1:9/webhooks/stripe";

/// Reconciliation every second, for sessions older than `after_secs`.
pub fn reconciling(after_secs: u64) -> Options {
    Options {
        reconcile: ReconcileConfig {
            interval: Duration::from_secs(1),
            after: Duration::from_secs(after_secs),
        },
        ..Options::default()
    }
}

/// Sends a request and returns its request_id and session id.
async fn open_session(app: &TestApp) -> (String, String) {
    let r = request(700);
    app.send(&r).await;
    let created = app
        .wait_for(&r.request_id, CheckoutStatus::SessionCreated)
        .await;
    (r.request_id, created.session_id.expect("a session id"))
}

/// Every webhook from now on is lost (the emulator retries in vain).
pub fn lose_webhooks(app: &TestApp) {
    app.emulator.set_webhook(Some(LOST.to_owned()), None);
}

/// Waits until nothing is tracked as open and reconciliation counted
/// `success` outcomes: after that, no round publishes anything more.
async fn settled(app: &TestApp, outcome: &str, count: u64) {
    let line = format!("checkout_reconciled_total{{outcome=\"{outcome}\"}}");
    testkit::eventually("reconciliation settled", WAIT, || async {
        let text = app.metrics().await;
        (metric::<u64>(&text, "checkout_open_sessions") == 0
            && metric::<u64>(&text, &line) == count)
            .then_some(())
    })
    .await;
}

/// The trace ids of the `checkout.finished` records of `request_id` with `status`.
fn trace_ids(app: &TestApp, request_id: &str, status: CheckoutStatus) -> Vec<String> {
    app.finished
        .records()
        .iter()
        .filter(|r| r.key.as_deref() == Some(request_id))
        .filter(|r| {
            serde_json::from_slice::<CheckoutFinishedEvent>(&r.payload)
                .is_ok_and(|e| e.status == status)
        })
        .map(|r| {
            r.header(HEADER_TRACEPARENT)
                .and_then(TraceContext::parse)
                .expect("a traceparent")
                .trace_id()
        })
        .collect()
}

fn of_status(
    app: &TestApp,
    request_id: &str,
    status: CheckoutStatus,
) -> Vec<CheckoutFinishedEvent> {
    app.events_for(request_id)
        .into_iter()
        .filter(|e| e.status == status)
        .collect()
}

#[tokio::test]
async fn a_paid_session_whose_every_webhook_is_lost_gets_one_success_from_reconciliation() {
    let app = spawn_app_with(reconciling(2)).await;
    let (request_id, session_id) = open_session(&app).await;
    lose_webhooks(&app);
    app.emulator.pay(&session_id, Outcome::Paid).unwrap();

    let success = app.wait_for(&request_id, CheckoutStatus::Success).await;
    settled(&app, "success", 1).await;
    assert_eq!(success.session_id.as_deref(), Some(session_id.as_str()));
    assert_eq!((success.user_id, success.amount_cents), (123, 700));
    assert!(success.payment_intent_id.is_some(), "{success:?}");
    assert_eq!(
        of_status(&app, &request_id, CheckoutStatus::Success).len(),
        1
    );
    assert!(
        app.emulator
            .events()
            .iter()
            .filter(|e| e.session_id == session_id)
            .all(|e| e.delivered == 0),
        "no webhook got through: the success came from reconciliation"
    );
    // The outcome continues the checkout's trace.
    assert_eq!(
        trace_ids(&app, &request_id, CheckoutStatus::Success),
        trace_ids(&app, &request_id, CheckoutStatus::SessionCreated)
    );
}

#[tokio::test]
async fn an_expired_session_whose_webhook_is_lost_is_reported_failed_expired() {
    let app = spawn_app_with(reconciling(2)).await;
    let (request_id, session_id) = open_session(&app).await;
    lose_webhooks(&app);
    app.emulator.pay(&session_id, Outcome::Expired).unwrap();

    let failed = app.wait_for(&request_id, CheckoutStatus::Failed).await;
    settled(&app, "failed", 1).await;
    assert!(
        failed
            .error_message
            .as_deref()
            .unwrap_or_default()
            .contains("expired"),
        "{failed:?}"
    );
    assert_eq!(failed.session_id.as_deref(), Some(session_id.as_str()));
    let statuses: Vec<CheckoutStatus> = app
        .events_for(&request_id)
        .iter()
        .map(|e| e.status)
        .collect();
    assert_eq!(
        statuses,
        [CheckoutStatus::SessionCreated, CheckoutStatus::Failed]
    );
}

#[tokio::test]
async fn a_reconciliation_and_a_late_webhook_publish_the_same_success() {
    let app = spawn_app_with(Options {
        // The emulator keeps trying long enough for the webhook to come late.
        delivery: DeliveryPolicy {
            max_attempts: 1000,
            retry_base: Duration::from_millis(50),
            retry_max: Duration::from_millis(200),
            ..Options::default().delivery
        },
        ..reconciling(2)
    })
    .await;
    let (request_id, session_id) = open_session(&app).await;
    lose_webhooks(&app);
    app.emulator.pay(&session_id, Outcome::Paid).unwrap();
    app.wait_for(&request_id, CheckoutStatus::Success).await;
    settled(&app, "success", 1).await;

    // The webhook finally gets through.
    app.emulator.set_webhook(
        Some(app.webhook_url.clone()),
        Some(WEBHOOK_SECRET.to_owned()),
    );
    let both = testkit::eventually("the late webhook's success", WAIT, || async {
        let successes = of_status(&app, &request_id, CheckoutStatus::Success);
        (successes.len() == 2).then_some(successes)
    })
    .await;
    let same_but_time = |e: &CheckoutFinishedEvent| CheckoutFinishedEvent {
        timestamp: both[0].timestamp,
        ..e.clone()
    };
    assert_eq!(
        same_but_time(&both[1]),
        both[0],
        "a harmless duplicate: blazing_sun credits the session once"
    );
    let traces = trace_ids(&app, &request_id, CheckoutStatus::Success);
    assert_eq!(traces.len(), 2);
    assert!(
        traces
            .iter()
            .all(|t| trace_ids(&app, &request_id, CheckoutStatus::SessionCreated).contains(t)),
        "both continue the checkout's trace: {traces:?}"
    );
    assert_eq!(
        metric::<u64>(
            &app.metrics().await,
            "checkout_reconciled_total{outcome=\"success\"}"
        ),
        1
    );
}

#[tokio::test]
async fn a_session_opened_before_a_restart_is_reconciled_after_it() {
    let mut app = spawn_app_with(Options {
        // One attempt per webhook: given up before the new instance listens.
        delivery: DeliveryPolicy {
            max_attempts: 1,
            ..Options::default().delivery
        },
        ..reconciling(3)
    })
    .await;
    let (request_id, session_id) = open_session(&app).await;
    app.stop().await.expect("a clean stop");

    // While no instance runs: paid, every webhook lost.
    lose_webhooks(&app);
    app.emulator.pay(&session_id, Outcome::Paid).unwrap();
    testkit::eventually("the webhook given up", WAIT, || async {
        app.emulator
            .events()
            .iter()
            .any(|e| e.session_id == session_id && e.given_up > 0)
            .then_some(())
    })
    .await;
    app.restart().await;

    let success = app.wait_for(&request_id, CheckoutStatus::Success).await;
    settled(&app, "success", 1).await;
    assert_eq!(success.session_id.as_deref(), Some(session_id.as_str()));
    assert_eq!(
        of_status(&app, &request_id, CheckoutStatus::Success).len(),
        1
    );
    assert_eq!(
        trace_ids(&app, &request_id, CheckoutStatus::Success),
        trace_ids(&app, &request_id, CheckoutStatus::SessionCreated),
        "the trace comes from the session_created record read after the restart"
    );
}

/// A signed event whose session async-stripe cannot read (a field of
/// another type, as a newer API version might send).
fn unparsable_event(session_id: &str) -> String {
    json!({
        "id": format!("evt_future_{}", uuid::Uuid::new_v4().simple()),
        "object": "event",
        "api_version": "2099-01-01.future",
        "created": chrono::Utc::now().timestamp(),
        "data": {"object": {"id": session_id, "object": "checkout.session", "amount_total": {"value": 700}}},
        "livemode": false,
        "pending_webhooks": 1,
        "request": {"id": null, "idempotency_key": null},
        "type": "checkout.session.completed",
    })
    .to_string()
}

async fn post_signed(app: &TestApp, payload: String) -> StatusCode {
    let signature = Webhook::generate_test_header(&payload, WEBHOOK_SECRET, None);
    app.http
        .post(&app.webhook_url)
        .header("content-type", "application/json")
        .header("Stripe-Signature", signature)
        .body(payload)
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn a_signed_webhook_that_cannot_be_parsed_is_decided_from_the_session() {
    let app = spawn_app_with(Options {
        // A retrieve that fails fails fast.
        max_attempts: 1,
        ..Options::default()
    })
    .await;
    let (request_id, session_id) = open_session(&app).await;
    lose_webhooks(&app);
    app.emulator.pay(&session_id, Outcome::Paid).unwrap();

    // Stripe cannot answer: 503, so Stripe delivers again; nothing published.
    app.emulator
        .set_faults(Faults {
            rate_500: 1.0,
            ..Faults::default()
        })
        .unwrap();
    assert_eq!(
        post_signed(&app, unparsable_event(&session_id)).await,
        StatusCode::SERVICE_UNAVAILABLE
    );
    app.emulator.set_faults(Faults::default()).unwrap();

    assert_eq!(
        post_signed(&app, unparsable_event(&session_id)).await,
        StatusCode::OK
    );
    let success = app.wait_for(&request_id, CheckoutStatus::Success).await;
    assert_eq!(success.session_id.as_deref(), Some(session_id.as_str()));
    assert!(success.payment_intent_id.is_some(), "{success:?}");
    assert_eq!(
        trace_ids(&app, &request_id, CheckoutStatus::Success),
        trace_ids(&app, &request_id, CheckoutStatus::SessionCreated)
    );

    // Signed, unparsable and about no session: acknowledged, nothing published.
    let other =
        unparsable_event("pi_not_a_session").replace("\"checkout.session\"", "\"payment_intent\"");
    assert_eq!(post_signed(&app, other).await, StatusCode::OK);
    // Unsigned stays refused, parsable or not.
    let unsigned = app
        .http
        .post(&app.webhook_url)
        .body(unparsable_event(&session_id))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(unsigned, StatusCode::BAD_REQUEST);

    let text = app.metrics().await;
    assert_eq!(
        metric::<u64>(&text, "checkout_webhook_unparsed_total"),
        3,
        "{text}"
    );
    assert_eq!(
        of_status(&app, &request_id, CheckoutStatus::Success).len(),
        1
    );
}

#[tokio::test]
async fn a_stop_ends_a_reconciliation_waiting_on_stripe_at_once() {
    let mut app = spawn_app_with(Options {
        stripe_timeout: Duration::from_secs(120),
        ..reconciling(1)
    })
    .await;
    let (_, session_id) = open_session(&app).await;
    lose_webhooks(&app);
    app.emulator.pay(&session_id, Outcome::Paid).unwrap();
    // Every call to Stripe now hangs for a minute.
    let calls = app.emulator.stats().api_calls;
    app.emulator
        .set_faults(Faults {
            latency_ms: 60_000,
            ..Faults::default()
        })
        .unwrap();
    testkit::eventually("reconciliation waiting on Stripe", WAIT, || async {
        (app.emulator.stats().api_calls > calls).then_some(())
    })
    .await;

    let stopping = std::time::Instant::now();
    app.stop().await.expect("a clean stop");
    assert!(
        stopping.elapsed() < Duration::from_secs(3),
        "stopped in {:?}",
        stopping.elapsed()
    );
}
