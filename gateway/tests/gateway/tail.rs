//! The status tail on real topics: answers never go backwards after a
//! terminal status, whatever is republished later; topics created after
//! the gateway started are read.

use std::time::Duration;

use checkout_contract::kafka::ensure_topics;
use checkout_contract::topics::{PARTITIONS, Topics};
use checkout_contract::{CheckoutStatus, pb};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::*;

#[tokio::test]
async fn a_status_republished_after_the_terminal_one_changes_no_answer() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut client = gw.service_client().await;
    let producer = worker_producer(&kafka);

    let id = client
        .start(start_request(31, Some("order-backwards")))
        .await
        .unwrap()
        .request_id;
    let c1 = publish(&producer, &topics, &id, 31, CheckoutStatus::SessionCreated).await;
    let c2 = publish(&producer, &topics, &id, 31, CheckoutStatus::Success).await;
    // A worker redelivery republishes session_created after the payment,
    // then the reconciliation publishes success once more.
    let c3 = publish(&producer, &topics, &id, 31, CheckoutStatus::SessionCreated).await;
    let c4 = publish(&producer, &topics, &id, 31, CheckoutStatus::Success).await;
    assert!(c1.partition == c4.partition && c2.offset < c3.offset && c3.offset < c4.offset);

    // What follows the success on its partition: the second success, never
    // the republished session_created (which the tail read before it).
    let mut after_success = client.watch(&id, Some(c2)).await.unwrap();
    let (updates, end) = drain(&mut after_success).await;
    end.expect("ends OK after the terminal status");
    assert_eq!(statuses(&updates), [pb::CheckoutStatus::Success]);
    assert_eq!(updates[0].cursor, Some(c4));

    let got = client.get(&id).await.unwrap();
    assert_eq!(got.event.unwrap().status(), pb::CheckoutStatus::Success);
    assert_eq!(got.cursor, Some(c4));
    let again = client
        .start(start_request(31, Some("order-backwards")))
        .await
        .unwrap();
    assert_eq!(again.request_id, id);
    assert_eq!(again.status(), pb::CheckoutStatus::Success);
    assert_eq!(again.session_url, None);

    let mut from_start = client.watch(&id, None).await.unwrap();
    let (updates, end) = drain(&mut from_start).await;
    end.expect("ends OK after the terminal status");
    assert_eq!(
        statuses(&updates),
        [
            pb::CheckoutStatus::SessionCreated,
            pb::CheckoutStatus::Success
        ]
    );
    assert_eq!(updates[1].cursor, Some(c2));
}

#[tokio::test]
async fn topics_created_after_the_gateway_started_are_read() {
    // Growing a topic under a running gateway cannot be shown on the test
    // broker: Tansu 0.6.0 answers CreatePartitions with UNSUPPORTED_FEATURE,
    // stops serving when a fetched topic is deleted, and librdkafka 2.12.1
    // crashes (rd_kafka_metadata_cache_find) when a topic comes back with a
    // new id. The tail's unit tests add partitions to a live assignment on
    // the real broker instead; here, topics that appear after the start.
    let broker = testkit::broker::broker().await;
    let kafka = broker.config(&testkit::unique("gateway-test"));
    let topics = Topics::with_suffix(&format!(".{}", uuid::Uuid::new_v4().simple()));
    let gw = TestGateway::start_unready(&kafka, &topics, |_| {}).await;
    gw.wait_for_health(ServingStatus::NotServing).await;

    ensure_topics(&kafka, &topics.all(), PARTITIONS)
        .await
        .expect("topics created");
    gw.wait_for_health(ServingStatus::Serving).await;
    let client = gw.service_client().await;
    let producer = worker_producer(&kafka);
    let id = checkout_contract::RequestId::new_random().to_string();
    let cursor = publish(&producer, &topics, &id, 32, CheckoutStatus::SessionCreated).await;
    let got = testkit::eventually(
        "GetCheckout sees a status on a topic created after the start",
        Duration::from_secs(15),
        || {
            let mut c = client.clone();
            let id = id.clone();
            async move { c.get(&id).await.ok() }
        },
    )
    .await;
    assert_eq!(got.cursor, Some(cursor));
    assert_eq!(
        got.event.unwrap().status(),
        pb::CheckoutStatus::SessionCreated
    );
}
