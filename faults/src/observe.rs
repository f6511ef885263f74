//! What the suite reads after the run: every event on a topic, the ledger
//! and balances in PostgreSQL, and the consumer groups' lag.

use std::collections::BTreeMap;
use std::time::Duration;

use checkout_contract::kafka::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use sqlx::PgPool;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Every message value on `topic`, from the beginning to the end offsets
/// seen at the start of the read.
pub async fn read_topic(kafka: &KafkaConfig, topic: &str) -> Vec<Vec<u8>> {
    let consumer: BaseConsumer = kafka.tail_config().create().expect("tail consumer");
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer
            .fetch_metadata(Some(&topic), TIMEOUT)
            .expect("metadata");
        let partitions: Vec<i32> = metadata.topics()[0]
            .partitions()
            .iter()
            .map(|p| p.id())
            .collect();
        assert!(!partitions.is_empty(), "topic {topic} has no partitions");
        let mut ends = BTreeMap::new();
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            let (low, high) = consumer
                .fetch_watermarks(&topic, p, TIMEOUT)
                .expect("watermarks");
            if high > low {
                ends.insert(p, high);
                tpl.add_partition_offset(&topic, p, Offset::Beginning)
                    .expect("partition");
            }
        }
        consumer.assign(&tpl).expect("assign");
        let mut values = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !ends.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "could not read {topic} to its end: {ends:?} left"
            );
            let Some(message) = consumer.poll(Duration::from_millis(200)) else {
                continue;
            };
            let message = message.expect("consume");
            values.push(message.payload().unwrap_or_default().to_vec());
            if ends
                .get(&message.partition())
                .is_some_and(|end| message.offset() + 1 >= *end)
            {
                ends.remove(&message.partition());
            }
        }
        values
    })
    .await
    .expect("reader task")
}

/// Ledger rows per request_id.
pub async fn ledger_rows(db: &PgPool) -> BTreeMap<String, (i64, i64)> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT request_id, COUNT(*), SUM(amount_cents)::BIGINT FROM ledger GROUP BY request_id",
    )
    .fetch_all(db)
    .await
    .expect("ledger query");
    rows.into_iter()
        .map(|(id, n, sum)| (id, (n, sum)))
        .collect()
}

/// The sum of every balance.
pub async fn balance_sum(db: &PgPool) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>("SELECT SUM(balance_cents)::BIGINT FROM balances")
        .fetch_one(db)
        .await
        .expect("balances query")
        .unwrap_or(0)
}

/// How many checkouts blazing_sun holds in a terminal state.
pub async fn terminal_checkouts(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM checkouts WHERE status IN ('success', 'failed')")
        .fetch_one(db)
        .await
        .unwrap_or(0)
}

/// Total lag of `group` on `topic` when every partition with messages has a
/// committed offset; `None` while some partition was never committed.
pub async fn lag(kafka: &KafkaConfig, group: &str, topic: &str) -> Option<i64> {
    let rows = stack::monitor::lag(kafka, group, &[topic.to_owned()])
        .await
        .ok()?;
    if rows.is_empty() || rows.iter().any(|r| r.end > 0 && r.committed.is_none()) {
        return None;
    }
    Some(rows.iter().map(|r| r.lag).sum())
}

/// The end offset of each partition of `topic` (read with `group`'s lag).
pub async fn end_offsets(kafka: &KafkaConfig, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    stack::monitor::lag(kafka, group, &[topic.to_owned()])
        .await
        .expect("end offsets")
        .into_iter()
        .map(|r| (r.partition, r.end))
        .collect()
}

/// Whether `group` has committed at least `offsets` on every partition of
/// `topic` named there (a partition at 0 needs no commit).
pub async fn committed_at_least(
    kafka: &KafkaConfig,
    group: &str,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
) -> bool {
    let Ok(rows) = stack::monitor::lag(kafka, group, &[topic.to_owned()]).await else {
        return false;
    };
    offsets.iter().all(|(partition, offset)| {
        *offset == 0
            || rows
                .iter()
                .any(|r| r.partition == *partition && r.committed.is_some_and(|c| c >= *offset))
    })
}
