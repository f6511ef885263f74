//! One trace id from StartCheckout to the balance credit, through the whole
//! system the launcher starts: the caller's `traceparent` comes back from
//! the gateway, travels as a Kafka header on `checkout.requests`, comes back
//! on both `checkout.finished` events (the webhook takes it from the
//! `session_created` record, not from the Stripe session's metadata),
//! the gateway's WatchCheckout stream continues it (metadata and updates),
//! and blazing_sun logs the credit under it. A current-thread runtime keeps
//! every part's async work on the test's thread, where its logs are captured:
//! every captured line that mentions the checkout's request_id carries its
//! trace_id, and every line with the trace id names the request.

use std::time::Duration;

use checkout_contract::kafka::HEADER_TRACEPARENT;
use checkout_contract::pb::checkout_gateway_client::CheckoutGatewayClient;
use checkout_contract::pb::{GetCheckoutRequest, StartCheckoutRequest, WatchCheckoutRequest};
use checkout_contract::topics::topic;
use checkout_contract::trace::{TRACEPARENT, TraceContext};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
use stack::StackConfig;
use stack::system::{self, DEMO_USER_ID};

/// Every `(payload, traceparent)` on `topic` for `request_id`, once `count` are there.
async fn traced(
    bootstrap: &str,
    topic: &str,
    request_id: &str,
    count: usize,
) -> Vec<(serde_json::Value, String)> {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", testkit::unique("stack-trace-test"))
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    let mut found = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while found.len() < count {
            let m = consumer.recv().await.unwrap();
            if m.key() != Some(request_id.as_bytes()) {
                continue;
            }
            let payload = serde_json::from_slice(m.payload().unwrap()).unwrap();
            let trace = m
                .headers()
                .and_then(|hs| hs.iter().find(|h| h.key == HEADER_TRACEPARENT))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            found.push((payload, trace));
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{count} messages for {request_id} on {topic}: {found:?}"));
    found
}

/// The `traceparent` of an answer's metadata.
fn metadata_trace(metadata: &tonic::metadata::MetadataMap) -> String {
    metadata
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .map(trace_id)
        .unwrap_or_else(|| panic!("a traceparent in {metadata:?}"))
}

fn trace_id(header: &str) -> String {
    TraceContext::parse(header)
        .unwrap_or_else(|| panic!("a valid traceparent: {header:?}"))
        .trace_id()
}

#[tokio::test]
async fn one_trace_id_from_start_checkout_to_the_balance_credit() {
    let data = tempfile::tempdir().unwrap();
    let (guard, logs) = testkit::capture_logs();
    let running = system::start(StackConfig::on_free_ports(data.path().to_path_buf()))
        .await
        .expect("stack starts");
    let emulator = running.emulator.expect("emulator by default");
    let bs = format!("http://{}", running.blazing_sun);
    let sent = TraceContext::new_root();

    let mut client = CheckoutGatewayClient::connect(format!("http://{}", running.gateway))
        .await
        .unwrap();
    let mut request = tonic::Request::new(StartCheckoutRequest {
        user_id: DEMO_USER_ID,
        amount_cents: 700,
        currency: "eur".into(),
        success_url: format!("{bs}/?checkout=success"),
        cancel_url: format!("{bs}/?checkout=cancel"),
        ..Default::default()
    });
    let metadata = request.metadata_mut();
    metadata.insert(
        "authorization",
        format!("Bearer {}", running.demo_user_token)
            .parse()
            .unwrap(),
    );
    metadata.insert(TRACEPARENT, sent.header().parse().unwrap());
    let response = client.start_checkout(request).await.expect("StartCheckout");
    let answered = response
        .metadata()
        .get(TRACEPARENT)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        trace_id(&answered),
        sent.trace_id(),
        "the gateway continues the caller's trace"
    );
    let request_id = response.into_inner().request_id;

    let mut watch = tonic::Request::new(WatchCheckoutRequest {
        request_id: request_id.clone(),
        resume_after: None,
    });
    watch.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", running.demo_user_token)
            .parse()
            .unwrap(),
    );
    let watching = client.watch_checkout(watch).await.expect("WatchCheckout");
    assert_eq!(
        metadata_trace(watching.metadata()),
        sent.trace_id(),
        "the stream continues the checkout's trace"
    );
    let mut stream = watching.into_inner();
    let mut next_update = async || {
        tokio::time::timeout(Duration::from_secs(60), stream.message())
            .await
            .expect("an update within 60 s")
            .expect("the stream goes on")
            .expect("an update")
    };
    let streamed = next_update().await;
    assert_eq!(trace_id(&streamed.traceparent), sent.trace_id());

    let requests = traced(
        &running.kafka_bootstrap,
        topic::CHECKOUT_REQUESTS,
        &request_id,
        1,
    )
    .await;
    assert_eq!(
        trace_id(&requests[0].1),
        sent.trace_id(),
        "header on checkout.requests"
    );

    let created = traced(
        &running.kafka_bootstrap,
        topic::CHECKOUT_FINISHED,
        &request_id,
        1,
    )
    .await;
    assert_eq!(created[0].0["status"], "session_created");
    assert_eq!(
        trace_id(&created[0].1),
        sent.trace_id(),
        "the worker's span on session_created"
    );
    let session_id = created[0].0["session_id"].as_str().unwrap().to_owned();

    let http = reqwest::Client::new();
    let session: serde_json::Value = http
        .get(format!(
            "http://{emulator}/v1/checkout/sessions/{session_id}"
        ))
        .bearer_auth("sk_test_reader")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        session["metadata"].get(TRACEPARENT).is_none(),
        "the session's parameters are the same for every copy of a request: no trace in them ({session})"
    );

    crate::launcher::pay(&http, &format!("http://{emulator}"), &session_id).await;
    let finished = traced(
        &running.kafka_bootstrap,
        topic::CHECKOUT_FINISHED,
        &request_id,
        2,
    )
    .await;
    assert_eq!(finished[1].0["status"], "success");
    assert_eq!(
        trace_id(&finished[1].1),
        sent.trace_id(),
        "the webhook restores it on success"
    );
    let streamed = next_update().await;
    assert_eq!(
        streamed.event.as_ref().map(|e| e.status()),
        Some(checkout_contract::pb::CheckoutStatus::Success)
    );
    assert_eq!(trace_id(&streamed.traceparent), sent.trace_id());

    let line = testkit::eventually(
        "blazing_sun logs the credit",
        Duration::from_secs(30),
        || {
            let text = logs.text();
            let line = text
                .lines()
                .find(|l| l.contains("balance credited") && l.contains(&request_id))
                .map(str::to_owned);
            async move { line }
        },
    )
    .await;
    assert!(
        line.contains(&format!("trace_id={}", sent.trace_id())),
        "the credit is logged under the trace: {line}"
    );
    let mut get = tonic::Request::new(GetCheckoutRequest {
        request_id: request_id.clone(),
    });
    get.metadata_mut().insert(
        "authorization",
        format!("Bearer {}", running.demo_user_token)
            .parse()
            .unwrap(),
    );
    let got = client.get_checkout(get).await.expect("GetCheckout");
    assert_eq!(metadata_trace(got.metadata()), sent.trace_id());
    drop(guard);

    let text = logs.text();
    let about = testkit::lines_about_checkout(&text, &request_id, &sent.trace_id());
    for (what, message) in [
        ("the gateway's StartCheckout", "checkout requested"),
        ("the gateway's tail", "status update passed to the streams"),
        ("the gateway's stream", "update sent"),
        ("the gateway's GetCheckout", "checkout looked up"),
        ("the checkout worker", "session created"),
        ("the webhook", "published checkout.finished"),
        ("blazing_sun", "balance credited"),
    ] {
        assert!(
            about.iter().any(|l| l.contains(message)),
            "{what} logs {message:?} about the checkout:\n{}",
            about.join("\n")
        );
    }

    running
        .run_until_stopped(async {})
        .await
        .expect("clean shutdown");
}
