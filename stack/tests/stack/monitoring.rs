use std::time::Duration;

use checkout_contract::CheckoutStatus;
use checkout_contract::kafka::send_json;
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use stack::monitor::{self, TailOptions};
use testkit::CapturedLogs;

#[tokio::test]
async fn topics_tail_and_lag_work_against_the_real_broker() {
    testkit::init_tracing();
    let broker = testkit::broker::broker().await;
    let config = broker.config("stack-monitor-test");
    let topics = testkit::broker::fresh_topics(&config).await;

    let listed = monitor::topics(&config).await.unwrap();
    assert!(listed.contains(&(topics.finished.clone(), 3)), "{listed:?}");
    assert!(listed.contains(&(topics.requests.clone(), 3)), "{listed:?}");

    let producer = config.producer().unwrap();
    let mut sent = Vec::new();
    for status in [
        CheckoutStatus::SessionCreated,
        CheckoutStatus::Success,
        CheckoutStatus::Failed,
    ] {
        let id = uuid::Uuid::new_v4().to_string();
        let event = testkit::events::finished(&id, 7, 500, status);
        send_json(&producer, &topics.finished, &id, &event, &[])
            .await
            .unwrap();
        sent.push(serde_json::to_string(&event).unwrap());
    }

    // tail --from-beginning prints each event as its JSON line.
    let out = CapturedLogs::default();
    let options = TailOptions {
        from_beginning: true,
        max_messages: Some(3),
        timeout: Some(Duration::from_secs(20)),
    };
    let printed = monitor::tail(&config, &topics.finished, &options, out.clone())
        .await
        .unwrap();
    assert_eq!(printed, 3);
    let text = out.text();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.sort_unstable();
    sent.sort();
    assert_eq!(lines, sent);

    // A group that consumed and committed everything shows zero lag; before, the full count.
    let group = testkit::unique("stack-lag");
    let before = monitor::lag(&config, &group, std::slice::from_ref(&topics.finished))
        .await
        .unwrap();
    assert_eq!(before.len(), 3);
    assert_eq!(before.iter().map(|r| r.lag).sum::<i64>(), 3);
    assert!(before.iter().all(|r| r.committed.is_none()));

    let consumer: StreamConsumer = config.consumer_config(&group).create().unwrap();
    consumer.subscribe(&[&topics.finished]).unwrap();
    for _ in 0..3 {
        let m = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .unwrap()
            .unwrap();
        consumer.store_offset_from_message(&m).unwrap();
        let _ = m.offset();
    }
    consumer.commit_consumer_state(CommitMode::Sync).unwrap();
    let after = monitor::lag(&config, &group, std::slice::from_ref(&topics.finished))
        .await
        .unwrap();
    assert_eq!(after.iter().map(|r| r.lag).sum::<i64>(), 0, "{after:?}");
    assert_eq!(after.iter().map(|r| r.end).sum::<i64>(), 3, "{after:?}");
}
