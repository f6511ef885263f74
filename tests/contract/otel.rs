//! Spans exported over OTLP to a receiver speaking the protocol (testkit's
//! `OtlpReceiver`): each hop's span continues the W3C context it was given,
//! the context a hop passes on is its own exported span's, and an error
//! inside a span marks it failed.

use std::time::Duration;

use checkout_contract::telemetry::{otlp_provider, span_layer};
use checkout_contract::trace::TraceContext;
use testkit::otlp::{OtlpReceiver, ReceivedSpan};
use tracing::field::Empty;
use tracing_subscriber::layer::SubscriberExt as _;

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("a span {name} in {spans:#?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_hop_is_a_child_of_the_context_it_received() {
    let receiver = OtlpReceiver::start().await;
    let provider = otlp_provider(Some(&receiver.endpoint()), "contract-test").unwrap();
    let subscriber = tracing_subscriber::registry().with(span_layer(&provider));
    let caller = TraceContext::new_root();
    // Synchronous: the subscriber is this thread's default.
    let (hop, produced, next, fresh) = tracing::subscriber::with_default(subscriber, || {
        let call = tracing::info_span!("call", trace_id = Empty);
        let hop = TraceContext::continue_in(Some(caller), &call);
        let produce = call.in_scope(|| tracing::info_span!("produce"));
        let produced = hop.within(&produce);
        drop((produce, call));
        // The next service, given the produced record's header.
        let consume = tracing::info_span!("consume", trace_id = Empty);
        let next = TraceContext::continue_in(TraceContext::parse(&produced.header()), &consume);
        consume.in_scope(|| tracing::error!(error = "card declined", "cannot go on"));
        drop(consume);
        let start = tracing::info_span!("start", trace_id = Empty);
        (hop, produced, next, TraceContext::continue_in(None, &start))
    });
    // Shutting down exports what is batched (as a binary does on exit).
    tokio::task::spawn_blocking(move || provider.shutdown())
        .await
        .unwrap()
        .unwrap();
    let spans = receiver
        .wait_for("four spans", Duration::from_secs(30), |s| s.len() >= 4)
        .await;

    let call = named(&spans, "call");
    assert_eq!(call.service, "contract-test");
    assert_eq!(call.trace_id, caller.trace_id());
    assert_eq!(call.parent_span_id, caller.span_id());
    assert_eq!(
        call.span_id,
        hop.span_id(),
        "the hop passes on its own span"
    );
    assert_eq!(call.attribute("trace_id"), Some(caller.trace_id().as_str()));

    let produce = named(&spans, "produce");
    assert_eq!(produce.parent_span_id, call.span_id);
    assert_eq!(produce.span_id, produced.span_id());

    let consume = named(&spans, "consume");
    assert_eq!(consume.trace_id, caller.trace_id());
    assert_eq!(consume.parent_span_id, produce.span_id);
    assert_eq!(consume.span_id, next.span_id());
    assert_eq!(
        consume.status_code, 2,
        "an error inside marks the span failed"
    );

    let start = named(&spans, "start");
    assert_eq!(start.parent_span_id, "", "no context: a new trace");
    assert_eq!(start.trace_id, fresh.trace_id());
    assert_ne!(start.trace_id, caller.trace_id());
}

#[test]
fn without_an_exporter_the_ids_are_the_w3c_ones() {
    let parent = TraceContext::new_root();
    let span = tracing::info_span!("hop");
    let hop = TraceContext::continue_in(Some(parent), &span);
    assert_eq!(hop.trace_id(), parent.trace_id());
    assert_ne!(hop.span_id(), parent.span_id());
    assert_eq!(hop.within(&span), hop);
}
