//! One trace id from `checkout.requests` to `checkout.finished`: the
//! worker continues the request's `traceparent`, writes it into the Stripe
//! session's metadata, and the webhook restores it onto the finished event.

use checkout_contract::CheckoutStatus;
use checkout_contract::kafka::{HEADER_TRACEPARENT, send_json};
use checkout_contract::trace::{TRACEPARENT, TraceContext};
use stripe_emulator::Outcome;

use crate::helpers::{TestApp, request, spawn_app};

/// The trace on the finished event of `request_id` with `status`.
fn finished_trace(app: &TestApp, request_id: &str, status: &str) -> TraceContext {
    let record = app
        .finished
        .records()
        .into_iter()
        .find(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            v["request_id"] == request_id && v["status"] == status
        })
        .unwrap_or_else(|| panic!("{status} for {request_id}"));
    let header = record
        .header(HEADER_TRACEPARENT)
        .unwrap_or_else(|| panic!("{status} has a traceparent: {:?}", record.headers));
    TraceContext::parse(header).expect("a valid traceparent")
}

#[tokio::test]
async fn the_requests_trace_reaches_the_session_metadata_and_both_finished_events() {
    let app = spawn_app().await;
    let sent = TraceContext::new_root();
    let r = request(500);
    let header = sent.header();
    send_json(
        &app.producer,
        &app.topics.requests,
        &r.request_id,
        &r,
        &[(HEADER_TRACEPARENT, header.as_str())],
    )
    .await
    .expect("request produced");

    let created = app
        .wait_for(&r.request_id, CheckoutStatus::SessionCreated)
        .await;
    let session_id = created.session_id.unwrap();
    let report = app.emulator.sessions();
    let session = report
        .sessions
        .iter()
        .find(|s| s.id == session_id)
        .expect("the session");
    assert_eq!(
        session.metadata.get(TRACEPARENT).map(String::as_str),
        Some(header.as_str()),
        "the caller's traceparent is in the session metadata"
    );
    let worker = finished_trace(&app, &r.request_id, "session_created");
    assert_eq!(worker.trace_id(), sent.trace_id());
    assert_ne!(worker.span_id(), sent.span_id(), "the worker's own span");

    app.emulator.pay(&session_id, Outcome::Paid).unwrap();
    app.wait_for(&r.request_id, CheckoutStatus::Success).await;
    let webhook = finished_trace(&app, &r.request_id, "success");
    assert_eq!(webhook.trace_id(), sent.trace_id());
    assert_ne!(webhook.span_id(), sent.span_id());
}

#[tokio::test]
async fn a_request_without_a_trace_gets_one_derived_from_its_request_id() {
    let app = spawn_app().await;
    let r = request(500);
    app.send(&r).await;
    let created = app
        .wait_for(&r.request_id, CheckoutStatus::SessionCreated)
        .await;
    let expected = r.request_id.replace('-', "");
    assert_eq!(
        finished_trace(&app, &r.request_id, "session_created").trace_id(),
        expected
    );
    app.emulator
        .pay(&created.session_id.unwrap(), Outcome::Expired)
        .unwrap();
    app.wait_for(&r.request_id, CheckoutStatus::Failed).await;
    assert_eq!(
        finished_trace(&app, &r.request_id, "failed").trace_id(),
        expected
    );
}
