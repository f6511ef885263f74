//! StartCheckout continues the caller's W3C `traceparent` (or starts one):
//! the same trace id goes onto `checkout.requests` as a Kafka header and
//! comes back in the response metadata, with the gateway's own span id.

use checkout_contract::kafka::HEADER_TRACEPARENT;
use checkout_contract::trace::{TRACEPARENT, TraceContext};

use crate::helpers::*;

fn produced_trace(read: &Read) -> TraceContext {
    let (_, value) = read
        .headers
        .iter()
        .find(|(k, _)| k == HEADER_TRACEPARENT)
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
    let m = read.iter().find(|m| m.key == request_id).expect("produced");
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
        let m = read.iter().find(|m| m.key == request_id).expect("produced");
        assert_eq!(produced_trace(m), answered);
    }
}
