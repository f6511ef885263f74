//! The seed's three monitoring commands, against any broker (embedded,
//! Tansu, Apache Kafka):
//!
//! | seed (`docker compose exec kafka ...`)          | here                                        |
//! |-------------------------------------------------|---------------------------------------------|
//! | `kafka-topics.sh --list`                        | `checkout-stack topics`                     |
//! | `kafka-console-consumer.sh --topic T --from-beginning` | `checkout-stack tail T --from-beginning` |
//! | `kafka-consumer-groups.sh --group G --describe` | `checkout-stack lag G`                      |

use std::io::Write;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use checkout_contract::kafka::KafkaConfig;
use checkout_contract::topics::{consumer_groups, topic};

const TIMEOUT: Duration = Duration::from_secs(10);

/// One partition's position of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    pub topic: String,
    pub partition: i32,
    /// The group's committed offset; `None` when it never committed.
    pub committed: Option<i64>,
    pub end: i64,
    pub lag: i64,
}

fn consumer(config: &KafkaConfig, group: Option<&str>) -> Result<BaseConsumer, KafkaError> {
    let mut c = config.tail_config();
    if let Some(group) = group {
        c.set("group.id", group);
    }
    c.create()
}

/// Every topic (internal `__` topics left out) with its partition count, sorted.
///
/// # Errors
/// When the broker cannot be reached.
pub async fn topics(config: &KafkaConfig) -> Result<Vec<(String, usize)>, KafkaError> {
    let consumer = consumer(config, None)?;
    tokio::task::spawn_blocking(move || {
        let metadata = consumer.fetch_metadata(None, TIMEOUT)?;
        let mut list: Vec<(String, usize)> = metadata
            .topics()
            .iter()
            .filter(|t| !t.name().starts_with("__"))
            .map(|t| (t.name().to_owned(), t.partitions().len()))
            .collect();
        list.sort();
        Ok(list)
    })
    .await
    .map_err(|_| KafkaError::Canceled)?
}

/// The topics a group reads, by the seed's wiring (`checkout-service` reads
/// `checkout.requests`, `blazing-sun-main` reads `checkout.finished`).
pub fn default_topics_of(group: &str) -> Vec<String> {
    match group {
        consumer_groups::CHECKOUT_SERVICE => vec![topic::CHECKOUT_REQUESTS.to_owned()],
        consumer_groups::MAIN_APP => vec![topic::CHECKOUT_FINISHED.to_owned()],
        _ => vec![
            topic::CHECKOUT_REQUESTS.to_owned(),
            topic::CHECKOUT_FINISHED.to_owned(),
        ],
    }
}

/// Committed offset, end offset and lag of `group` on every partition of `topics`.
///
/// # Errors
/// When the broker cannot be reached or a topic does not exist.
pub async fn lag(
    config: &KafkaConfig,
    group: &str,
    topics: &[String],
) -> Result<Vec<PartitionLag>, KafkaError> {
    let consumer = consumer(config, Some(group))?;
    let topics = topics.to_vec();
    tokio::task::spawn_blocking(move || {
        let mut tpl = TopicPartitionList::new();
        for t in &topics {
            let metadata = consumer.fetch_metadata(Some(t), TIMEOUT)?;
            let Some(m) = metadata.topics().iter().find(|m| m.name() == t) else {
                continue;
            };
            if let Some(e) = m.error() {
                return Err(KafkaError::MetadataFetch(e.into()));
            }
            for p in m.partitions() {
                tpl.add_partition(t, p.id());
            }
        }
        let committed = consumer.committed_offsets(tpl, TIMEOUT)?;
        let mut rows = Vec::new();
        for el in committed.elements() {
            let (_, end) = consumer.fetch_watermarks(el.topic(), el.partition(), TIMEOUT)?;
            let committed = match el.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            };
            rows.push(PartitionLag {
                topic: el.topic().to_owned(),
                partition: el.partition(),
                committed,
                end,
                lag: end - committed.unwrap_or(0),
            });
        }
        rows.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(rows)
    })
    .await
    .map_err(|_| KafkaError::Canceled)?
}

/// Options of `tail`, named like `kafka-console-consumer.sh`'s.
#[derive(Debug, Clone, Default)]
pub struct TailOptions {
    pub from_beginning: bool,
    /// Stop after this many messages.
    pub max_messages: Option<usize>,
    /// Stop when no message arrived for this long.
    pub timeout: Option<Duration>,
}

/// Prints each message's value on its own line to `out` (`key` and headers
/// left out, as the console consumer does). Returns how many were printed.
///
/// # Errors
/// When the broker cannot be reached, the topic does not exist, or `out` fails.
pub async fn tail(
    config: &KafkaConfig,
    topic: &str,
    options: &TailOptions,
    mut out: impl Write + Send + 'static,
) -> Result<usize, anyhow::Error> {
    let consumer = consumer(config, None)?;
    let topic = topic.to_owned();
    let options = options.clone();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer.fetch_metadata(Some(&topic), TIMEOUT)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .find(|m| m.name() == topic && m.error().is_none())
            .map(|m| m.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        anyhow::ensure!(!partitions.is_empty(), "topic {topic} does not exist");
        let start = if options.from_beginning {
            Offset::Beginning
        } else {
            Offset::End
        };
        let mut tpl = TopicPartitionList::new();
        for p in partitions {
            tpl.add_partition_offset(&topic, p, start)?;
        }
        consumer.assign(&tpl)?;
        let mut printed = 0;
        let mut idle_since = std::time::Instant::now();
        loop {
            if options.max_messages.is_some_and(|max| printed >= max) {
                return Ok(printed);
            }
            if options.timeout.is_some_and(|t| idle_since.elapsed() >= t) {
                return Ok(printed);
            }
            match consumer.poll(Duration::from_millis(100)) {
                None => {}
                Some(Err(e)) => return Err(e.into()),
                Some(Ok(m)) => {
                    let value = m.payload().map(String::from_utf8_lossy).unwrap_or_default();
                    writeln!(out, "{value}")?;
                    out.flush()?;
                    printed += 1;
                    idle_since = std::time::Instant::now();
                }
            }
        }
    })
    .await?
}
