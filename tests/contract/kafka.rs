use std::time::Duration;

use checkout_contract::events::{CheckoutRequestEvent, iso8601};
use checkout_contract::kafka::{
    CONTENT_TYPE_JSON, HEADER_CONTENT_TYPE, HEADER_REQUEST_ID, ensure_topics, header,
    partition_count, send_json,
};
use checkout_contract::topics::{PARTITIONS, Topics};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};

fn request(id: &str) -> CheckoutRequestEvent {
    CheckoutRequestEvent {
        request_id: id.to_owned(),
        user_id: 123,
        amount_cents: 500,
        currency: "eur".into(),
        purpose: "balance_topup".into(),
        timestamp: iso8601::parse("2024-01-15T10:30:00Z").unwrap(),
        success_url: "https://example.com/balance?status=success".into(),
        cancel_url: "https://example.com/balance?status=cancel".into(),
    }
}

#[tokio::test]
async fn ensure_topics_creates_three_partitions_and_is_idempotent() {
    testkit::init_tracing();
    let broker = testkit::broker::broker().await;
    let config = broker.config("contract-test");
    let topics = Topics::with_suffix(&format!(".{}", uuid::Uuid::new_v4().simple()));
    let names = [topics.requests.as_str(), topics.finished.as_str()];

    assert_eq!(
        partition_count(&config, names[0]).await.unwrap(),
        0,
        "topic must not exist yet"
    );
    ensure_topics(&config, &names, PARTITIONS)
        .await
        .expect("first ensure_topics");
    for t in names {
        assert_eq!(partition_count(&config, t).await.unwrap(), 3, "{t}");
    }
    ensure_topics(&config, &names, PARTITIONS)
        .await
        .expect("second ensure_topics is a no-op");
    for t in names {
        assert_eq!(partition_count(&config, t).await.unwrap(), 3, "{t}");
    }
}

#[tokio::test]
async fn a_produced_event_is_consumed_back_intact_with_key_and_headers() {
    testkit::init_tracing();
    let broker = testkit::broker::broker().await;
    let config = broker.config("contract-test");
    let topics = testkit::broker::fresh_topics(&config).await;
    let producer = config.producer().unwrap();

    let id = uuid::Uuid::new_v4().to_string();
    let sent = request(&id);
    let delivered = send_json(
        &producer,
        &topics.requests,
        &id,
        &sent,
        &[("traceparent", "00-abc-def-01")],
    )
    .await
    .expect("broker acknowledges");
    assert!((0..PARTITIONS).contains(&delivered.partition));

    let consumer: StreamConsumer = config
        .consumer_config(&testkit::unique("contract"))
        .create()
        .unwrap();
    consumer.subscribe(&[&topics.requests]).unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("message arrives within 30 s")
        .expect("consumer error");

    assert_eq!(msg.key(), Some(id.as_bytes()));
    assert_eq!(msg.partition(), delivered.partition);
    assert_eq!(msg.offset(), delivered.offset);
    assert_eq!(header(&msg, HEADER_REQUEST_ID), Some(id.as_str()));
    assert_eq!(header(&msg, HEADER_CONTENT_TYPE), Some(CONTENT_TYPE_JSON));
    assert_eq!(header(&msg, "traceparent"), Some("00-abc-def-01"));
    let payload = msg.payload().expect("payload");
    let back: CheckoutRequestEvent = serde_json::from_slice(payload).unwrap();
    assert_eq!(back, sent);
    assert_eq!(
        payload,
        serde_json::to_vec(&sent).unwrap().as_slice(),
        "the exact JSON bytes"
    );
}

#[tokio::test]
async fn events_of_one_request_share_a_partition() {
    let broker = testkit::broker::broker().await;
    let config = broker.config("contract-test");
    let topics = testkit::broker::fresh_topics(&config).await;
    let producer = config.producer().unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let mut partitions = Vec::new();
    for _ in 0..3 {
        partitions.push(
            send_json(&producer, &topics.finished, &id, &request(&id), &[])
                .await
                .unwrap()
                .partition,
        );
    }
    assert!(
        partitions.windows(2).all(|w| w[0] == w[1]),
        "{partitions:?}"
    );
}
