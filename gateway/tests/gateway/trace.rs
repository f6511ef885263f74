//! StartCheckout continues the caller's W3C `traceparent` (or starts one):
//! the same trace id goes onto `checkout.requests` as a Kafka header and
//! comes back in the response metadata, with the gateway's own span id.
//! WatchCheckout and GetCheckout continue the checkout's trace (metadata,
//! each update's `traceparent`, and every log line about the checkout).

use std::time::Duration;

use checkout_contract::kafka::HEADER_TRACEPARENT;
use checkout_contract::trace::{TRACEPARENT, TraceContext};
use checkout_contract::{RequestId, pb};

use crate::helpers::*;

fn produced_trace(read: &Record) -> TraceContext {
    let value = read
        .header(HEADER_TRACEPARENT)
        .unwrap_or_else(|| panic!("traceparent header: {:?}", read.headers));
    TraceContext::parse(value).expect("a valid traceparent")
}

#[tokio::test]
async fn the_callers_trace_goes_onto_the_kafka_request_and_back_in_the_answer() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut client = gw.service_client().await;

    let sent = TraceContext::new_root();
    let mut request = client.request(start_request(7, None));
    request
        .metadata_mut()
        .insert(TRACEPARENT, sent.header().parse().unwrap());
    let response = client.inner.start_checkout(request).await.unwrap();
    let answered = response
        .metadata()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse)
        .expect("traceparent in the response metadata");
    let request_id = response.into_inner().request_id;
    assert_eq!(answered.trace_id(), sent.trace_id());
    assert_ne!(answered.span_id(), sent.span_id(), "the gateway's own span");

    let read = read_all(&kafka, &topics.requests).await;
    let m = read
        .iter()
        .find(|m| m.key.as_deref() == Some(request_id.as_str()))
        .expect("produced");
    assert_eq!(produced_trace(m), answered);

    // Without one (or with garbage), the gateway starts a trace of its own.
    for incoming in [None, Some("not-a-traceparent")] {
        let mut request = client.request(start_request(7, None));
        if let Some(v) = incoming {
            request
                .metadata_mut()
                .insert(TRACEPARENT, v.parse().unwrap());
        }
        let response = client.inner.start_checkout(request).await.unwrap();
        let answered = response
            .metadata()
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse)
            .expect("a new trace");
        assert_ne!(answered.trace_id(), sent.trace_id());
        let request_id = response.into_inner().request_id;
        let read = read_all(&kafka, &topics.requests).await;
        let m = read
            .iter()
            .find(|m| m.key.as_deref() == Some(request_id.as_str()))
            .expect("produced");
        assert_eq!(produced_trace(m), answered);
    }
}

/// Publishes `status` for `request_id` on `checkout.finished` under
/// `trace`, as the checkout worker or the webhook would.
async fn publish_traced(
    kafka: &checkout_contract::kafka::KafkaConfig,
    topics: &checkout_contract::topics::Topics,
    request_id: &str,
    status: checkout_contract::CheckoutStatus,
    trace: &TraceContext,
) {
    let header = trace.header();
    checkout_contract::kafka::send_json(
        &worker_producer(kafka),
        &topics.finished,
        request_id,
        &finished(request_id, 7, status),
        &[(HEADER_TRACEPARENT, header.as_str())],
    )
    .await
    .expect("finished event acknowledged");
}

/// The `traceparent` of an answer's metadata.
fn metadata_trace(metadata: &tonic::metadata::MetadataMap) -> Option<TraceContext> {
    metadata
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse)
}

#[tokio::test]
async fn watch_and_get_continue_the_checkouts_trace_in_metadata_updates_and_logs() {
    use checkout_contract::CheckoutStatus;

    let (guard, logs) = testkit::capture_logs();
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut client = gw.service_client().await;

    let sent = TraceContext::new_root();
    let mut request = client.request(start_request(7, None));
    request
        .metadata_mut()
        .insert(TRACEPARENT, sent.header().parse().unwrap());
    let response = client.inner.start_checkout(request).await.unwrap();
    let started = metadata_trace(response.metadata()).expect("StartCheckout's traceparent");
    let request_id = response.into_inner().request_id;

    // The worker continues StartCheckout's span; the webhook the worker's.
    let worker = started.child();
    let webhook = worker.child();
    publish_traced(
        &kafka,
        &topics,
        &request_id,
        CheckoutStatus::SessionCreated,
        &worker,
    )
    .await;
    let watch = client.request(pb::WatchCheckoutRequest {
        request_id: request_id.clone(),
        resume_after: None,
    });
    let response = client.inner.watch_checkout(watch).await.unwrap();
    let watching = metadata_trace(response.metadata()).expect("WatchCheckout's traceparent");
    assert_eq!(watching.trace_id(), sent.trace_id(), "the checkout's trace");
    for other in [&sent, &started, &worker] {
        assert_ne!(watching.span_id(), other.span_id(), "the stream's own span");
    }
    let mut stream = response.into_inner();
    let first = within(Duration::from_secs(15), "session_created", stream.message())
        .await
        .unwrap()
        .expect("session_created");
    assert_eq!(first.traceparent, worker.header(), "the worker's span");
    publish_traced(
        &kafka,
        &topics,
        &request_id,
        CheckoutStatus::Success,
        &webhook,
    )
    .await;
    let (rest, end) = drain(&mut stream).await;
    end.expect("ends OK after success");
    assert_eq!(statuses(&rest), [pb::CheckoutStatus::Success]);
    assert_eq!(rest[0].traceparent, webhook.header(), "the webhook's span");

    let get = client.request(pb::GetCheckoutRequest {
        request_id: request_id.clone(),
    });
    let response = client.inner.get_checkout(get).await.unwrap();
    let got = metadata_trace(response.metadata()).expect("GetCheckout's traceparent");
    assert_eq!(got.trace_id(), sent.trace_id());
    assert_ne!(got.span_id(), watching.span_id());
    assert_eq!(response.into_inner().traceparent, webhook.header());

    // A watch that starts before anything is known learns the trace from
    // the first update that carries one.
    let early_id = uuid::Uuid::new_v4().to_string();
    let response = client
        .inner
        .watch_checkout(client.request(pb::WatchCheckoutRequest {
            request_id: early_id.clone(),
            resume_after: None,
        }))
        .await
        .unwrap();
    assert_eq!(
        metadata_trace(response.metadata()),
        None,
        "no trace known yet"
    );
    let mut early = response.into_inner();
    let other = TraceContext::new_root();
    publish_traced(&kafka, &topics, &early_id, CheckoutStatus::Failed, &other).await;
    let (updates, end) = drain(&mut early).await;
    end.expect("ends OK after failed");
    assert_eq!(updates[0].traceparent, other.header());

    // A status without a traceparent is logged under the trace derived from
    // its request_id, as the worker derives it.
    let untraced_id = uuid::Uuid::new_v4().to_string();
    let mut untraced = client.watch(&untraced_id, None).await.unwrap();
    publish(
        &worker_producer(&kafka),
        &topics,
        &untraced_id,
        7,
        CheckoutStatus::Failed,
    )
    .await;
    let (updates, end) = drain(&mut untraced).await;
    end.expect("ends OK after failed");
    assert_eq!(statuses(&updates), [pb::CheckoutStatus::Failed]);

    gw.stop().await.unwrap();
    drop(guard);
    let text = logs.text();
    let derived = TraceContext::for_request(&RequestId::parse(&untraced_id).unwrap()).trace_id();
    let tail_line = text
        .lines()
        .find(|l| l.contains("status update passed to the streams") && l.contains(&untraced_id))
        .unwrap_or_else(|| panic!("the tail logs the untraced status:\n{text}"));
    assert!(
        tail_line.contains(&format!("trace_id={derived}")),
        "under the trace derived from its request_id ({derived}): {tail_line}"
    );
    for (what, line) in [
        ("watch started", "watch started"),
        ("an update sent", "update sent"),
        ("the watch's end", "watch ended: terminal status sent"),
        ("the GetCheckout", "checkout looked up"),
        ("the tail's update", "status update passed to the streams"),
    ] {
        assert!(
            text.lines()
                .any(|l| l.contains(line) && l.contains(&request_id)),
            "{what} is logged for {request_id}:\n{text}"
        );
    }
    let about = testkit::lines_about_checkout(&text, &request_id, &sent.trace_id()).len();
    assert!(about >= 8, "{about} lines about the checkout:\n{text}");
    let sent_late = text
        .lines()
        .find(|l| l.contains("update sent") && l.contains(&early_id))
        .unwrap_or_else(|| panic!("the early watch's update is logged:\n{text}"));
    assert!(
        sent_late.contains(&format!("trace_id={}", other.trace_id())),
        "{sent_late}"
    );
}
