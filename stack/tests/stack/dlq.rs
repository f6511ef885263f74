//! `checkout-stack dlq replay` on the real broker: records dead-lettered by
//! the contract's `dead_letter` are listed by a dry run (nothing sent),
//! sent back onto their origin topic byte for byte with their original
//! headers by a replay, and never sent twice.

use std::time::Duration;

use checkout_contract::dead_letter::dead_letter;
use checkout_contract::kafka::{HEADER_DLQ_REASON, HEADER_DLQ_SOURCE, KafkaConfig};
use rdkafka::message::{Message, OwnedMessage};
use stack::dlq::{self, ReplayError, ReplayOptions, Replayed};
use testkit::CapturedLogs;

/// How long reading a topic back may take.
const READ: Duration = Duration::from_secs(20);

async fn read_all(config: &KafkaConfig, topic: &str) -> Vec<OwnedMessage> {
    testkit::broker::read_all(config, topic, READ).await
}

type HeaderList = Vec<(String, Vec<u8>)>;

/// What a record is, wherever it is: key, payload, headers.
type Content = (Option<Vec<u8>>, Option<Vec<u8>>, HeaderList);

fn content(m: &OwnedMessage) -> Content {
    (
        m.key().map(<[u8]>::to_vec),
        m.payload().map(<[u8]>::to_vec),
        testkit::broker::headers_of(m),
    )
}

#[tokio::test]
async fn a_dry_run_lists_a_replay_sends_back_once_and_a_second_replay_sends_nothing() {
    testkit::init_tracing();
    let broker = testkit::broker::broker().await;
    let config = broker.config("stack-dlq-test");
    let topics = testkit::broker::fresh_topics(&config).await;
    let producer = config.producer().unwrap();

    // Three events on checkout.finished that blazing_sun would refuse,
    // each with its own key, trace and an extra header.
    let ids: Vec<String> = (0..3).map(|_| uuid::Uuid::new_v4().to_string()).collect();
    for (i, id) in ids.iter().enumerate() {
        let payload = format!(r#"{{"request_id":"{id}","status":"paid-{i}"}}"#);
        let traceparent = format!("00-{}-00f067aa0ba902b7-01", uuid::Uuid::new_v4().simple());
        let headers: [(&str, &[u8]); 3] = [
            ("request_id", id.as_bytes()),
            ("traceparent", traceparent.as_bytes()),
            ("x-extra", &[0, 255, 7]),
        ];
        let finished = &topics.finished;
        testkit::topic::send_raw(&producer, finished, None, id, payload.as_bytes(), &headers).await;
    }
    let originals = read_all(&config, &topics.finished).await;
    assert_eq!(originals.len(), 3);
    for m in &originals {
        dead_letter(&producer, &topics.finished_dlq, m, "invalid status")
            .await
            .unwrap();
    }
    let dead = read_all(&config, &topics.finished_dlq).await;
    assert_eq!(dead.len(), 3);
    for d in &dead {
        let headers = testkit::broker::headers_of(d);
        let source = headers
            .iter()
            .find(|(k, _)| k == HEADER_DLQ_SOURCE)
            .map(|(_, v)| String::from_utf8(v.clone()).unwrap())
            .unwrap();
        assert!(
            source.starts_with(&format!("{}/", topics.finished)),
            "{source}"
        );
        assert_eq!(
            headers
                .iter()
                .filter(|(k, _)| k.starts_with("dlq-"))
                .count(),
            2,
            "one dlq-reason and one dlq-source: {headers:?}"
        );
        assert!(
            headers
                .iter()
                .any(|(k, v)| k == HEADER_DLQ_REASON && v == b"invalid status")
        );
    }

    let group = testkit::unique("stack-dlq-replay");
    let options = ReplayOptions {
        group: group.clone(),
        ..ReplayOptions::default()
    };

    // The dry run lists all three and sends and commits nothing.
    let out = CapturedLogs::default();
    let dry = ReplayOptions {
        dry_run: true,
        ..options.clone()
    };
    let listed = dlq::replay(&config, &topics.finished_dlq, &dry, out.clone())
        .await
        .unwrap();
    assert_eq!(
        listed,
        Replayed {
            records: 3,
            sent: 0
        }
    );
    let text = out.text();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("would replay "))
        .collect();
    assert_eq!(lines.len(), 3, "{text}");
    for id in &ids {
        assert!(
            lines.iter().any(|l| l.contains(&format!("request_id={id}"))
                && l.contains(&format!(
                    "-> {}  source={}/",
                    topics.finished, topics.finished
                ))
                && l.contains("reason=\"invalid status\"")),
            "{id} not listed:\n{text}"
        );
    }
    assert!(text.contains("dry run: 3 record(s)"), "{text}");
    assert_eq!(
        read_all(&config, &topics.finished).await.len(),
        3,
        "nothing sent"
    );
    let lag = stack::monitor::lag(&config, &group, std::slice::from_ref(&topics.finished_dlq))
        .await
        .unwrap();
    assert!(
        lag.iter().all(|r| r.committed.is_none()),
        "nothing committed: {lag:?}"
    );

    // The replay sends each back, byte for byte with its original headers.
    let out = CapturedLogs::default();
    let replayed = dlq::replay(&config, &topics.finished_dlq, &options, out.clone())
        .await
        .unwrap();
    assert_eq!(
        replayed,
        Replayed {
            records: 3,
            sent: 3
        }
    );
    let text = out.text();
    assert_eq!(
        text.lines().filter(|l| l.starts_with("replayed ")).count(),
        4,
        "{text}"
    );
    assert!(text.contains("replayed 3 record(s)"), "{text}");
    let after = read_all(&config, &topics.finished).await;
    assert_eq!(after.len(), 6, "three originals and three replayed copies");
    let mut sent: Vec<_> = after
        .iter()
        .filter(|m| {
            !originals
                .iter()
                .any(|o| o.partition() == m.partition() && o.offset() == m.offset())
        })
        .map(content)
        .collect();
    let mut expected: Vec<_> = originals.iter().map(content).collect();
    sent.sort();
    expected.sort();
    assert_eq!(sent, expected);
    let lag = stack::monitor::lag(&config, &group, std::slice::from_ref(&topics.finished_dlq))
        .await
        .unwrap();
    assert_eq!(
        lag.iter().map(|r| r.lag).sum::<i64>(),
        0,
        "all committed: {lag:?}"
    );

    // A second replay finds nothing new.
    let out = CapturedLogs::default();
    let again = dlq::replay(&config, &topics.finished_dlq, &options, out.clone())
        .await
        .unwrap();
    assert_eq!(
        again,
        Replayed {
            records: 0,
            sent: 0
        }
    );
    assert!(
        out.text().contains("replayed 0 record(s)"),
        "{}",
        out.text()
    );
    assert_eq!(read_all(&config, &topics.finished).await.len(), 6);
}

#[tokio::test]
async fn a_missing_topic_is_a_clear_error() {
    testkit::init_tracing();
    let broker = testkit::broker::broker().await;
    let config = broker.config("stack-dlq-test");
    let missing = testkit::unique("checkout.finished.dlq.missing");
    let result = dlq::replay(
        &config,
        &missing,
        &ReplayOptions::default(),
        CapturedLogs::default(),
    )
    .await;
    assert!(
        matches!(&result, Err(ReplayError::NoSuchTopic(t)) if *t == missing),
        "{result:?}"
    );
}

/// Runs `checkout-stack` with `args` against `bootstrap`: exit code and stdout.
async fn stack_cli(bootstrap: &str, args: &[&str]) -> (Option<i32>, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_checkout-stack"))
        .args(args)
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .output()
        .await
        .expect("checkout-stack runs");
    let stdout = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.code(), format!("{stdout}{stderr}"))
}

#[tokio::test]
async fn the_launcher_binary_replays_from_the_command_line() {
    testkit::init_tracing();
    let broker = testkit::broker::broker().await;
    let config = broker.config("stack-dlq-test");
    let topics = testkit::broker::fresh_topics(&config).await;
    let producer = config.producer().unwrap();
    let id = uuid::Uuid::new_v4().to_string();
    checkout_contract::kafka::send_json(
        &producer,
        &topics.requests,
        &id,
        &serde_json::json!({ "request_id": id }),
        &[],
    )
    .await
    .unwrap();
    let original = read_all(&config, &topics.requests).await.remove(0);
    dead_letter(&producer, &topics.requests_dlq, &original, "missing field")
        .await
        .unwrap();
    let bootstrap = broker.bootstrap();

    let (code, help) = stack_cli(&bootstrap, &["dlq", "replay", "--help"]).await;
    assert_eq!(code, Some(0), "{help}");
    assert!(
        help.contains("--dry-run") && help.contains("--to TOPIC"),
        "{help}"
    );
    let (code, usage) = stack_cli(&bootstrap, &["dlq", "replay"]).await;
    assert_eq!(code, Some(64), "{usage}");
    assert!(
        usage.contains("required arguments were not provided") && usage.contains("<DLQ-TOPIC>"),
        "{usage}"
    );

    let (code, dry) = stack_cli(
        &bootstrap,
        &["dlq", "replay", &topics.requests_dlq, "--dry-run"],
    )
    .await;
    assert_eq!(code, Some(0), "{dry}");
    assert!(
        dry.contains(&format!("request_id={id}")) && dry.contains("dry run: 1 record(s)"),
        "{dry}"
    );
    let (code, sent) = stack_cli(&bootstrap, &["dlq", "replay", &topics.requests_dlq]).await;
    assert_eq!(code, Some(0), "{sent}");
    assert!(sent.contains("replayed 1 record(s)"), "{sent}");
    let back = read_all(&config, &topics.requests).await;
    assert_eq!(back.len(), 2, "the original and its replayed copy");
    assert!(back.iter().all(|m| content(m) == content(&original)));
    let (code, again) = stack_cli(&bootstrap, &["dlq", "replay", &topics.requests_dlq]).await;
    assert_eq!(code, Some(0), "{again}");
    assert!(again.contains("replayed 0 record(s)"), "{again}");
}
