//! The test broker itself: starts, serves, survives SIGKILL with its data.

use std::time::{Duration, Instant};

use checkout_contract::kafka::{partition_count, send_json};
use rdkafka::Message;
use rdkafka::consumer::{Consumer, StreamConsumer};

#[tokio::test]
async fn own_broker_keeps_its_topics_and_events_across_kill9() {
    let started = Instant::now();
    let mut broker = testkit::broker::TestBroker::start().await;
    println!("Tansu ready in {:?}", started.elapsed());
    let config = broker.config("testkit-test");
    let topics = testkit::broker::fresh_topics(&config).await;
    let producer = config.producer().unwrap();
    send_json(
        &producer,
        &topics.finished,
        "k1",
        &serde_json::json!({"n": 1}),
        &[],
    )
    .await
    .unwrap();
    drop(producer);

    broker.kill9();
    let restarted = Instant::now();
    broker.restart().await;
    println!("Tansu restarted in {:?}", restarted.elapsed());
    assert_eq!(partition_count(&config, &topics.finished).await.unwrap(), 3);

    let consumer: StreamConsumer = config
        .consumer_config(&testkit::unique("testkit"))
        .create()
        .unwrap();
    consumer.subscribe(&[&topics.finished]).unwrap();
    let msg = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
        .await
        .expect("event survives kill -9")
        .unwrap();
    assert_eq!(msg.key(), Some(&b"k1"[..]));
    assert_eq!(msg.payload(), Some(&br#"{"n":1}"#[..]));
}
