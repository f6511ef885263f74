//! blazing_sun continues the trace a `checkout.finished` event carries in
//! its `traceparent` header: the credit is logged with the event's
//! request_id and the same trace_id (the real handler and store, its logs
//! captured on the test's thread).

use std::sync::Arc;

use blazing_sun::{CheckoutFinished, Metrics, Outcome};
use checkout_contract::kafka::{HEADER_TRACEPARENT, KafkaConfig};
use checkout_contract::trace::TraceContext;
use rdkafka::Timestamp;
use rdkafka::message::{Header, OwnedHeaders, OwnedMessage};

use crate::helpers::{Backend, new_request_id, new_user, store, success};

#[tokio::test]
async fn the_credit_is_logged_under_the_events_trace() {
    let (store, _db) = store(Backend::Sqlite).await;
    // Only malformed events are dead-lettered; none is here.
    let producer = KafkaConfig::new("127.0.0.1:1", "blazing-sun-trace-test")
        .producer()
        .unwrap();
    let handler =
        CheckoutFinished::new(store, producer, "unused-dlq", Arc::new(Metrics::default()));

    let trace = TraceContext::new_root();
    let header = trace.header();
    let request_id = new_request_id();
    let event = success(&request_id, new_user(), 500);
    let message = OwnedMessage::new(
        Some(serde_json::to_vec(&event).unwrap()),
        Some(request_id.clone().into_bytes()),
        "checkout.finished".into(),
        Timestamp::NotAvailable,
        0,
        0,
        Some(OwnedHeaders::new().insert(Header {
            key: HEADER_TRACEPARENT,
            value: Some(&header),
        })),
    );

    let (guard, logs) = testkit::capture_logs();
    let outcomes = handler.handle(&[message]).await.unwrap();
    drop(guard);
    assert!(
        matches!(outcomes[..], [Outcome::Credited { .. }]),
        "{outcomes:?}"
    );
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("balance credited"))
        .unwrap_or_else(|| panic!("no credit logged in:\n{text}"));
    assert!(
        line.contains(&format!("trace_id={}", trace.trace_id())),
        "{line}"
    );
    assert!(line.contains(&format!("request_id={request_id}")), "{line}");
}

#[tokio::test]
async fn post_checkout_sends_the_callers_trace_or_a_new_one_on_kafka() {
    use checkout_contract::kafka::header;
    use checkout_contract::trace::TRACEPARENT;
    use rdkafka::Message as _;

    let world = crate::helpers::World::new(Backend::Sqlite).await;
    let app = world.spawn().await;
    let user = new_user();
    let sent = TraceContext::new_root();
    for incoming in [Some(sent.header()), None, Some("garbage".to_owned())] {
        let mut post = reqwest::Client::new()
            .post(app.url("/api/v1/balance/checkout"))
            .bearer_auth(crate::helpers::token(user))
            .json(&serde_json::json!({ "amount_cents": 500 }));
        if let Some(value) = &incoming {
            post = post.header(TRACEPARENT, value);
        }
        let response = post.send().await.unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
        let body: serde_json::Value = response.json().await.unwrap();
        let request_id = body["request_id"].as_str().unwrap();
        let message =
            crate::helpers::read_back(&world.kafka, &world.topics.requests, request_id).await;
        let produced = header(&message, HEADER_TRACEPARENT)
            .and_then(TraceContext::parse)
            .unwrap_or_else(|| panic!("a traceparent on {:?}", message.key()));
        if incoming.as_deref() == Some(sent.header().as_str()) {
            assert_eq!(produced.trace_id(), sent.trace_id());
            assert_ne!(produced.span_id(), sent.span_id());
        } else {
            assert_ne!(produced.trace_id(), sent.trace_id());
        }
    }
}
