//! `dead_letter` on a real broker: the copy keeps payload, key and headers
//! byte for byte and adds exactly one `dlq-reason` and one `dlq-source`,
//! even for a message that was dead-lettered before; `Inbound` and
//! `DeadLetter` read the copy back.

use std::time::Duration;

use checkout_contract::dead_letter::{DeadLetter, MAX_REASON_BYTES, Source, dead_letter};
use checkout_contract::inbound::Inbound;
use checkout_contract::kafka::{HEADER_DLQ_REASON, HEADER_DLQ_SOURCE, KafkaConfig};
use checkout_contract::trace::TraceContext;
use rdkafka::message::{Message, OwnedMessage};

/// The one record on `topic`.
async fn first_of(config: &KafkaConfig, topic: &str) -> OwnedMessage {
    testkit::broker::read_all(config, topic, Duration::from_secs(30))
        .await
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no record on {topic}"))
}

#[tokio::test]
async fn a_dead_letter_copy_is_the_original_plus_one_reason_and_one_source() {
    testkit::init_tracing();
    let broker = testkit::broker::broker().await;
    let config = broker.config("contract-test");
    let topics = testkit::broker::fresh_topics(&config).await;
    let producer = config.producer().unwrap();

    let id = uuid::Uuid::new_v4().to_string();
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let payload = format!(r#"{{"request_id":"{id}","amount_cents":"five"}}"#);
    let headers: [(&str, &[u8]); 2] = [
        ("traceparent", traceparent.as_bytes()),
        ("x-binary", &[0, 255]),
    ];
    let finished = &topics.finished;
    testkit::topic::send_raw(&producer, finished, None, &id, payload.as_bytes(), &headers).await;
    let original = first_of(&config, &topics.finished).await;

    let long_reason = format!("not a checkout.finished event: {}", "é".repeat(400));
    dead_letter(&producer, &topics.finished_dlq, &original, &long_reason)
        .await
        .unwrap();
    let copy = first_of(&config, &topics.finished_dlq).await;

    assert_eq!(copy.key(), original.key());
    assert_eq!(copy.payload(), original.payload());
    let mut expected = testkit::broker::headers_of(&original);
    let reason = testkit::broker::headers_of(&copy)
        .into_iter()
        .find(|(k, _)| k == HEADER_DLQ_REASON)
        .map(|(_, v)| String::from_utf8(v).expect("cut on a char boundary"))
        .unwrap();
    assert!(reason.len() <= MAX_REASON_BYTES && long_reason.starts_with(&reason));
    let source = Source::of(&original);
    expected.push((HEADER_DLQ_REASON.to_owned(), reason.clone().into_bytes()));
    expected.push((
        HEADER_DLQ_SOURCE.to_owned(),
        source.to_string().into_bytes(),
    ));
    assert_eq!(testkit::broker::headers_of(&copy), expected);

    let read = DeadLetter::read(&copy);
    assert_eq!(read.source, Some(source));
    assert_eq!(read.reason.as_deref(), Some(reason.as_str()));
    let inbound = Inbound::read(&copy);
    assert_eq!(inbound.request_id(), Some(id.as_str()));
    assert_eq!(inbound.trace(), TraceContext::parse(traceparent));

    // Dead-lettering the copy again (a DLQ read by a consumer that rejects
    // it) still gives one set of dlq headers: the new ones.
    dead_letter(&producer, &topics.requests_dlq, &copy, "again")
        .await
        .unwrap();
    let twice = first_of(&config, &topics.requests_dlq).await;
    let dlq_headers: Vec<_> = testkit::broker::headers_of(&twice)
        .into_iter()
        .filter(|(k, _)| k.starts_with("dlq-"))
        .collect();
    assert_eq!(
        dlq_headers,
        vec![
            (HEADER_DLQ_REASON.to_owned(), b"again".to_vec()),
            (
                HEADER_DLQ_SOURCE.to_owned(),
                Source::of(&copy).to_string().into_bytes()
            ),
        ]
    );
    assert_eq!(twice.payload(), original.payload());
}
