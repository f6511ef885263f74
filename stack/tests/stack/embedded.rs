use std::time::Duration;

use checkout_contract::CheckoutStatus;
use checkout_contract::kafka::{KafkaConfig, ensure_topics, header, partition_count, send_json};
use checkout_contract::topics::{PARTITIONS, Topics};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};
use stack::embedded_broker::EmbeddedBroker;

#[tokio::test]
async fn embedded_broker_serves_the_checkout_topics_on_its_fixed_port() {
    testkit::init_tracing();
    let port = testkit::free_port();
    let topics = Topics::default();
    let broker = EmbeddedBroker::start(([127, 0, 0, 1], port).into(), &topics)
        .await
        .expect("broker starts");
    assert_eq!(broker.bootstrap(), format!("127.0.0.1:{port}"));
    let config = KafkaConfig::new(broker.bootstrap(), "stack-test");

    for t in [&topics.requests, &topics.finished] {
        assert_eq!(
            partition_count(&config, t).await.unwrap(),
            PARTITIONS,
            "{t}"
        );
    }
    // The topics exist, so ensure_topics needs no admin API (which the mock lacks).
    ensure_topics(&config, &topics.all(), PARTITIONS)
        .await
        .expect("ensure_topics is a no-op");

    // What every service needs: idempotent keyed produce with headers, and a group consumer.
    let producer = config.producer().unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    let event = testkit::events::finished(&id, 7, 500, CheckoutStatus::SessionCreated);
    send_json(&producer, &topics.finished, &id, &event, &[])
        .await
        .expect("ack");

    let consumer: StreamConsumer = config.consumer_config("stack-test-group").create().unwrap();
    consumer.subscribe(&[&topics.finished]).unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("within 30 s")
        .unwrap();
    assert_eq!(msg.key(), Some(id.as_bytes()));
    assert_eq!(header(&msg, "request_id"), Some(id.as_str()));
    let back: checkout_contract::CheckoutFinishedEvent =
        serde_json::from_slice(msg.payload().unwrap()).unwrap();
    assert_eq!(back, event);
}

#[tokio::test]
async fn a_busy_port_is_one_clear_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let err = EmbeddedBroker::start(addr, &Topics::default())
        .await
        .err()
        .expect("must fail");
    let text = err.to_string();
    assert!(
        text.contains(&addr.to_string()) && text.contains("cannot listen"),
        "{text}"
    );
}
