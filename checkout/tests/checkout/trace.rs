//! One trace id from `checkout.requests` to `checkout.finished`: the
//! worker continues the request's `traceparent` onto `session_created`, and
//! the webhook restores it onto the finished event. Nothing of the trace goes
//! to Stripe: the create call must be the same for every copy of a request.

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
            let v = r.json();
            v["request_id"] == request_id && v["status"] == status
        })
        .unwrap_or_else(|| panic!("{status} for {request_id}"));
    let header = record
        .header(HEADER_TRACEPARENT)
        .unwrap_or_else(|| panic!("{status} has a traceparent: {:?}", record.headers));
    TraceContext::parse(header).expect("a valid traceparent")
}

#[tokio::test]
async fn the_requests_trace_reaches_both_finished_events_but_not_stripe() {
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
        session.metadata.get(TRACEPARENT),
        None,
        "nothing per delivery in the session's parameters"
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

#[tokio::test]
async fn every_line_about_a_checkout_carries_its_request_id_and_trace_id() {
    let (guard, logs) = testkit::capture_logs();
    let mut app = spawn_app().await;
    let sent = TraceContext::new_root();
    let header = sent.header();
    let r = request(500);
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
    app.emulator
        .pay(&created.session_id.unwrap(), Outcome::Paid)
        .unwrap();
    app.wait_for(&r.request_id, CheckoutStatus::Success).await;

    // A poison message whose request_id can be recovered, under its own trace.
    let poisoned = TraceContext::new_root();
    let poisoned_header = poisoned.header();
    let partial = uuid::Uuid::new_v4().to_string();
    let json = format!(r#"{{"request_id":"{partial}","user_id":5}}"#);
    testkit::topic::send_raw(
        &app.producer,
        &app.topics.requests,
        None,
        &partial,
        json.as_bytes(),
        &[(HEADER_TRACEPARENT, poisoned_header.as_bytes())],
    )
    .await;
    app.wait_for(&partial, CheckoutStatus::Failed).await;
    let answered = finished_trace(&app, &partial, "failed");
    assert_eq!(
        answered.trace_id(),
        poisoned.trace_id(),
        "the failed answer's trace"
    );
    app.stop().await.unwrap();
    drop(guard);

    let text = logs.text();
    for (request_id, trace_id, lines) in [
        (
            &r.request_id,
            sent.trace_id(),
            ["session created", "handled"],
        ),
        (&partial, poisoned.trace_id(), ["poison message", "handled"]),
    ] {
        for line in lines {
            assert!(
                text.lines()
                    .any(|l| l.contains(line) && l.contains(request_id.as_str())),
                "{line:?} logged for {request_id}:\n{text}"
            );
        }
        let about = testkit::lines_about_checkout(&text, request_id, &trace_id).len();
        assert!(about >= 2, "{about} lines about {request_id}:\n{text}");
    }
}
