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
    use checkout_contract::trace::TRACEPARENT;

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
        let produced = message
            .header(HEADER_TRACEPARENT)
            .and_then(TraceContext::parse)
            .unwrap_or_else(|| panic!("a traceparent on {:?}", message.key));
        if incoming.as_deref() == Some(sent.header().as_str()) {
            assert_eq!(produced.trace_id(), sent.trace_id());
            assert_ne!(produced.span_id(), sent.span_id());
        } else {
            assert_ne!(produced.trace_id(), sent.trace_id());
        }
    }
}

/// A `checkout.finished` message as the consumer would poll it, with a
/// `traceparent` header when `trace` is given.
fn polled(payload: Vec<u8>, key: &str, offset: i64, trace: Option<&TraceContext>) -> OwnedMessage {
    let header = trace.map(TraceContext::header);
    OwnedMessage::new(
        Some(payload),
        Some(key.as_bytes().to_vec()),
        "checkout.finished".into(),
        Timestamp::NotAvailable,
        0,
        offset,
        header.as_ref().map(|h| {
            OwnedHeaders::new().insert(Header {
                key: HEADER_TRACEPARENT,
                value: Some(h),
            })
        }),
    )
}

#[tokio::test]
async fn each_event_of_a_batch_is_logged_under_its_own_trace_and_a_lone_one_stores_under_it() {
    // PostgreSQL: sqlx logs its statements on the calling task (SQLite's
    // run on a worker thread, out of this thread's log capture).
    let world = crate::helpers::World::new(Backend::Postgres).await;
    let handler = CheckoutFinished::new(
        world.db.store().await,
        world.producer.clone(),
        world.topics.finished_dlq.clone(),
        Arc::new(Metrics::default()),
    );
    // Traced; untraced (the worker's trace derived from its request_id);
    // malformed with a traceparent (dead-lettered).
    let (traced, bare, broken) = (new_request_id(), new_request_id(), new_request_id());
    let (trace, broken_trace) = (TraceContext::new_root(), TraceContext::new_root());
    let derived = TraceContext::for_request(&checkout_contract::RequestId::parse(&bare).unwrap());
    let batch = [
        polled(
            serde_json::to_vec(&success(&traced, new_user(), 500)).unwrap(),
            &traced,
            0,
            Some(&trace),
        ),
        polled(
            serde_json::to_vec(&success(&bare, new_user(), 700)).unwrap(),
            &bare,
            1,
            None,
        ),
        polled(
            format!(r#"{{"request_id":"{broken}","status":"refunded"}}"#).into_bytes(),
            &broken,
            2,
            Some(&broken_trace),
        ),
    ];
    let lone = new_request_id();
    let lone_trace = TraceContext::new_root();
    let lone_message = polled(
        serde_json::to_vec(&success(&lone, new_user(), 900)).unwrap(),
        &lone,
        3,
        Some(&lone_trace),
    );

    let (guard, logs) = testkit::capture_logs();
    let outcomes = handler.handle(&batch).await.unwrap();
    let lone_outcome = handler.handle(&[lone_message]).await.unwrap();
    drop(guard);
    assert!(
        matches!(
            outcomes[..],
            [
                Outcome::Credited { .. },
                Outcome::Credited { .. },
                Outcome::DeadLettered { .. }
            ]
        ),
        "{outcomes:?}"
    );
    assert!(
        matches!(lone_outcome[..], [Outcome::Credited { .. }]),
        "{lone_outcome:?}"
    );
    let text = logs.text();
    for (request_id, trace_id, line) in [
        (&traced, trace.trace_id(), "balance credited"),
        (&bare, derived.trace_id(), "balance credited"),
        (&broken, broken_trace.trace_id(), "dead-letter topic"),
        (&lone, lone_trace.trace_id(), "balance credited"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(line) && l.contains(request_id.as_str())),
            "{line:?} for {request_id}:\n{text}"
        );
        testkit::lines_about_checkout(&text, request_id, &trace_id);
    }
    // The lone event's store work ran in its span.
    let lone_span = format!("request_id={lone} trace_id={}", lone_trace.trace_id());
    assert!(
        text.lines()
            .any(|l| l.contains("sqlx::query") && l.contains(&lone_span)),
        "the store's statements for {lone} in its span:\n{text}"
    );
}
