//! Reading what the code under test wrote to a topic: a [`Record`] per
//! message, decoded for assertions, and a [`TopicRecorder`] that tails a
//! topic in the background so a test can look at what arrived so far or
//! wait for a record; [`send_raw`] produces what no service would. (A one-off snapshot of a topic up to its high
//! watermarks is [`crate::broker::read_all`].)

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use checkout_contract::CheckoutFinishedEvent;
use checkout_contract::kafka::KafkaConfig;
use checkout_contract::topics::PARTITIONS;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;

/// One record of a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    /// Headers in order, values as (lossy) UTF-8.
    pub headers: Vec<(String, String)>,
}

impl Record {
    pub fn of(message: &impl Message) -> Self {
        let headers = message
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| {
                        let value = String::from_utf8_lossy(h.value.unwrap_or_default());
                        (h.key.to_owned(), value.into_owned())
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            partition: message.partition(),
            offset: message.offset(),
            key: message
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: message.payload().unwrap_or_default().to_vec(),
            headers,
        }
    }

    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The payload as JSON.
    ///
    /// # Panics
    /// When it is not JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "record {}/{} is not JSON ({e}): {}",
                self.partition,
                self.offset,
                String::from_utf8_lossy(&self.payload)
            )
        })
    }

    /// The payload as a `checkout.finished` event.
    ///
    /// # Panics
    /// When it is not one.
    pub fn finished_event(&self) -> CheckoutFinishedEvent {
        serde_json::from_value(self.json()).unwrap_or_else(|e| {
            panic!(
                "record {}/{} is not a checkout.finished event: {e}",
                self.partition, self.offset
            )
        })
    }
}

/// Every record on a topic now, in partition then offset order (see
/// [`crate::broker::read_all`]).
///
/// # Panics
/// When the broker does not answer or the records are not all read `within`.
pub async fn read_records(config: &KafkaConfig, topic: &str, within: Duration) -> Vec<Record> {
    crate::broker::read_all(config, topic, within)
        .await
        .iter()
        .map(Record::of)
        .collect()
}

/// Tails every partition of a topic from the beginning, in the background,
/// until dropped.
pub struct TopicRecorder {
    topic: String,
    records: Arc<Mutex<Vec<Record>>>,
    task: JoinHandle<()>,
}

impl TopicRecorder {
    /// Starts reading `topic` on the broker of `kafka` (a consumer of its
    /// own, outside any group).
    ///
    /// # Panics
    /// When the consumer cannot be created.
    pub fn start(kafka: &KafkaConfig, topic: &str) -> Self {
        let config = KafkaConfig::new(
            kafka.bootstrap_servers.clone(),
            crate::unique("testkit-recorder"),
        );
        let consumer: StreamConsumer = config.tail_config().create().expect("tail consumer");
        let mut assignment = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            assignment
                .add_partition_offset(topic, p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&assignment).expect("assign");
        let records = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&records);
        let name = topic.to_owned();
        let task = tokio::spawn(async move {
            loop {
                match consumer.recv().await {
                    Ok(m) => lock(&sink).push(Record::of(&m)),
                    Err(e) => tracing::warn!(error = %e, topic = %name, "recorder consumer error"),
                }
            }
        });
        Self {
            topic: topic.to_owned(),
            records,
            task,
        }
    }

    /// What arrived so far, in arrival order.
    pub fn records(&self) -> Vec<Record> {
        lock(&self.records).clone()
    }

    /// The first record that `matches`, waiting up to `within` for it.
    ///
    /// # Panics
    /// When none arrived in time.
    pub async fn wait_for(&self, within: Duration, matches: impl Fn(&Record) -> bool) -> Record {
        let what = format!("a matching record on {}", self.topic);
        crate::eventually(&what, within, || async {
            lock(&self.records).iter().find(|r| matches(r)).cloned()
        })
        .await
    }

    /// The first record keyed `key`, waiting up to `within` for it.
    ///
    /// # Panics
    /// When none arrived in time.
    pub async fn wait_for_key(&self, key: &str, within: Duration) -> Record {
        self.wait_for(within, |r| r.key.as_deref() == Some(key))
            .await
    }
}

impl Drop for TopicRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The first record keyed `key` on `topic`, reading every partition from
/// the start and waiting up to `within`.
///
/// # Panics
/// When none arrived in time.
pub async fn first_with_key(
    kafka: &KafkaConfig,
    topic: &str,
    key: &str,
    within: Duration,
) -> Record {
    TopicRecorder::start(kafka, topic)
        .wait_for_key(key, within)
        .await
}

/// Produces `payload` keyed `key` to `topic`, on `partition` if given, with
/// `headers`, exactly as given: for what no service would send (a
/// malformed payload, foreign headers, a chosen partition).
///
/// # Panics
/// When the broker does not acknowledge it.
pub async fn send_raw(
    producer: &FutureProducer,
    topic: &str,
    partition: Option<i32>,
    key: &str,
    payload: &[u8],
    headers: &[(&str, &[u8])],
) {
    let headers = headers
        .iter()
        .fold(OwnedHeaders::new(), |all, &(key, value)| {
            all.insert(Header {
                key,
                value: Some(value),
            })
        });
    let mut record = FutureRecord::to(topic)
        .key(key)
        .payload(payload)
        .headers(headers);
    record.partition = partition;
    producer
        .send(record, Duration::from_secs(5))
        .await
        .map_err(|(e, _)| e)
        .unwrap_or_else(|e| panic!("a raw message to {topic} not acknowledged: {e}"));
}

fn lock(records: &Mutex<Vec<Record>>) -> std::sync::MutexGuard<'_, Vec<Record>> {
    records.lock().unwrap_or_else(PoisonError::into_inner)
}
