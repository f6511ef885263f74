//! The status tail: every replica reads all partitions of `checkout.finished`
//! and `checkout.requests` itself (manual assignment, no consumer group, no
//! commits), starting `lookback` ago, into the [`Index`]. Any replica can
//! therefore serve any watch, and idempotent retries are recognised across
//! replicas and restarts. One consumer per topic serves every watcher.
//!
//! The two topics are read at different paces. Statuses are streamed to
//! watchers as they arrive ([`consumer`]: the broker answers a fetch as soon
//! as one record is there). Requests only matter to a replica that did not
//! produce them (a replica puts its own into the index when the broker
//! acknowledges them): [`requests_consumer`] lets the broker gather them for
//! up to `GATEWAY_REQUESTS_TAIL_WAIT_MS` into few large fetches, instead of
//! answering one fetch per produced batch. That wait is the window in which a
//! retry on another replica is not yet recognised (see
//! `crate::rpc::start_checkout`).
//!
//! Manual assignment does not follow a topic that grows: every
//! [`PARTITION_REFRESH`] each tail re-reads its topic's metadata and reads
//! partitions added since from their beginning (all they hold is newer than
//! the tail's start).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::Duration;

use checkout_contract::inbound::{Inbound, header_trace};
use checkout_contract::kafka::KafkaConfig;
use checkout_contract::metrics::LagConsumer;
use checkout_contract::shutdown::Stopping;
use checkout_contract::topics::Topics;
use checkout_contract::trace::TraceContext;
use checkout_contract::{CheckoutFinishedEvent, CheckoutRequestEvent, RequestId};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use crate::index::{Index, Position, Recorded, RequestSummary, Update};
use crate::metrics::Metrics;

/// How long one metadata or offset lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// How often the tail looks for partitions added to its topics.
pub const PARTITION_REFRESH: Duration = Duration::from_secs(5);

/// What the health probe needs to know about one tail.
#[derive(Debug, Default)]
pub struct TailState {
    /// Every partition of its topic is assigned and being read.
    pub assigned: AtomicBool,
    /// Partitions of its topic (for lag metrics).
    pub partitions: AtomicI32,
}

/// The status tail's consumer type: it reports its lag from librdkafka's statistics.
pub type TailConsumer = LagConsumer;

/// The consumer of the `checkout.finished` tail (see
/// `KafkaConfig::tail_config`), reporting its lag in `metrics`
/// (`kafka_consumer_lag_messages`).
///
/// # Errors
/// When librdkafka rejects the configuration.
pub fn consumer(kafka: &KafkaConfig, metrics: &Metrics) -> Result<TailConsumer, KafkaError> {
    metrics.consumer_lag().stream_consumer(kafka.tail_config())
}

/// How much of `checkout.requests` the broker gathers before it answers
/// the requests tail's fetch early: half of the most one fetch returns
/// (`checkout_contract::kafka::FETCH_MAX_BYTES`).
const REQUESTS_FETCH_MIN_BYTES: &str = "32768";

/// The consumer of the `checkout.requests` tail: like [`consumer`], but the
/// broker holds each fetch for up to `wait` until
/// [`REQUESTS_FETCH_MIN_BYTES`] are there.
///
/// # Errors
/// When librdkafka rejects the configuration.
pub fn requests_consumer(
    kafka: &KafkaConfig,
    wait: Duration,
    metrics: &Metrics,
) -> Result<TailConsumer, KafkaError> {
    let mut config = kafka.tail_config();
    config
        .set("fetch.wait.max.ms", wait.as_millis().max(1).to_string())
        .set("fetch.min.bytes", REQUESTS_FETCH_MIN_BYTES);
    metrics.consumer_lag().stream_consumer(config)
}

/// What happened to one message read by the tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A status update, new or already known.
    Update(Recorded),
    /// A request, remembered for idempotency and GetCheckout.
    Request,
    /// Not usable (logged): no payload, bad JSON, a request_id that is not a UUID.
    Skipped,
}

/// Puts one message of `topic`, with the trace its `traceparent` header
/// carried, into the index.
pub fn apply(
    index: &Index,
    topics: &Topics,
    topic: &str,
    position: Position,
    payload: Option<&[u8]>,
    trace: Option<TraceContext>,
) -> Applied {
    let Some(payload) = payload else {
        tracing::warn!(topic, ?position, "message without payload skipped");
        return Applied::Skipped;
    };
    if topic == topics.finished {
        let event: CheckoutFinishedEvent = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(topic, ?position, error = %e, "unreadable checkout.finished event skipped");
                return Applied::Skipped;
            }
        };
        let Ok(id) = RequestId::parse(&event.request_id) else {
            tracing::warn!(topic, ?position, request_id = %event.request_id, "event with a bad request_id skipped");
            return Applied::Skipped;
        };
        Applied::Update(index.record_update(
            id,
            Update {
                position,
                event: Arc::new(event),
                trace,
            },
        ))
    } else {
        let event: CheckoutRequestEvent = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(topic, ?position, error = %e, "unreadable checkout.requests event skipped");
                return Applied::Skipped;
            }
        };
        let Ok(id) = RequestId::parse(&event.request_id) else {
            return Applied::Skipped;
        };
        index.record_request(id, RequestSummary::from(&event).traced(trace));
        Applied::Request
    }
}

/// Everything one tail task works with.
pub struct Tail {
    pub consumer: Arc<TailConsumer>,
    /// The topic this tail reads: `topics.finished` or `topics.requests`.
    pub topic: String,
    pub topics: Topics,
    pub lookback: Duration,
    pub index: Arc<Index>,
    pub metrics: Arc<Metrics>,
    pub state: Arc<TailState>,
}

impl Tail {
    /// Assigns every partition (retrying until the broker answers), then
    /// reads until `stop` says stop.
    pub async fn run(self, mut stop: Stopping) {
        let mut known = 0;
        for attempt in 0u64.. {
            match self.assign().await {
                Ok(count) => {
                    known = count;
                    break;
                }
                Err(e) => {
                    // Every 30 s is enough to tell an operator (topics missing, broker away).
                    if attempt % 60 == 0 {
                        tracing::warn!(error = %e, topic = %self.topic, "status tail cannot start yet; retrying every 500 ms");
                    }
                    tokio::select! {
                        () = stop.stopped() => return,
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        }
        self.state.assigned.store(true, Ordering::Release);
        tracing::info!(topic = %self.topic, "status tail running");
        let mut refresh = tokio::time::interval(PARTITION_REFRESH);
        refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        refresh.reset();
        loop {
            tokio::select! {
                // `stopped` holds no watch guard, so the refresh may await below.
                () = stop.stopped() => break,
                _ = refresh.tick() => match self.assign_added(known).await {
                    Ok(count) => known = count,
                    // The broker is away: the health probe says so; try again next tick.
                    Err(e) => tracing::debug!(error = %e, "cannot look for added partitions"),
                },
                message = self.consumer.recv() => match message {
                    Ok(m) => {
                        let position = Position { partition: m.partition(), offset: m.offset() };
                        if m.topic() == self.topics.finished {
                            self.metrics.tail_read(position.partition, position.offset + 1);
                        }
                        // The checkout's trace continues here: what the
                        // streams hear about this update is logged under it.
                        // Untraced records log under the trace the worker
                        // derives from the request_id, as everywhere else.
                        let trace = header_trace(&m);
                        let span = tracing::debug_span!(
                            "status_update",
                            request_id = tracing::field::Empty,
                            trace_id = tracing::field::Empty,
                        );
                        // Reading the request_id parses the payload: only for a span that is logged.
                        if !span.is_disabled() {
                            Inbound::read(&m).record(&span);
                        }
                        span.in_scope(|| {
                            let applied = apply(&self.index, &self.topics, m.topic(), position, m.payload(), trace);
                            if applied == Applied::Update(Recorded::Added) {
                                tracing::debug!(?position, "status update passed to the streams");
                            }
                        });
                    }
                    Err(e) => tracing::warn!(error = %e, "status tail read error"),
                },
            }
        }
        tracing::info!("status tail stopped");
    }

    /// Assigns every partition of the topic, starting `lookback` ago;
    /// returns their count.
    async fn assign(&self) -> Result<i32, KafkaError> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        let since = chrono::Utc::now()
            - chrono::Duration::from_std(self.lookback).unwrap_or(chrono::Duration::zero());
        let lookback = !self.lookback.is_zero();
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || {
            let count = partition_count(&consumer, &topic)?;
            state.partitions.store(count, Ordering::Release);
            let start = if lookback {
                Offset::Offset(since.timestamp_millis())
            } else {
                Offset::End
            };
            let mut tpl = TopicPartitionList::new();
            for p in 0..count {
                tpl.add_partition_offset(&topic, p, start)?;
            }
            if lookback {
                // The timestamps become the first offset at or after them
                // (or the end, for partitions with nothing newer).
                tpl = consumer.offsets_for_times(tpl, LOOKUP_TIMEOUT)?;
            }
            consumer.assign(&tpl)?;
            Ok(count)
        })
        .await
        .map_err(|_| KafkaError::Canceled)?
    }

    /// Adds the partitions created since `known` were counted to the
    /// assignment, from their beginning; returns the new count.
    async fn assign_added(&self, known: i32) -> Result<i32, KafkaError> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        let state = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || {
            let count = partition_count(&consumer, &topic)?;
            if count <= known {
                return Ok(known);
            }
            let mut tpl = TopicPartitionList::new();
            for p in known..count {
                tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
            }
            consumer.incremental_assign(&tpl)?;
            state.partitions.store(count, Ordering::Release);
            tracing::info!(
                %topic,
                partitions = count,
                added = tpl.count(),
                "status tail reads partitions added to its topic"
            );
            Ok(count)
        })
        .await
        .map_err(|_| KafkaError::Canceled)?
    }
}

/// How many partitions `topic` has (an error when it is missing).
fn partition_count(consumer: &TailConsumer, topic: &str) -> Result<i32, KafkaError> {
    let metadata = consumer.fetch_metadata(Some(topic), LOOKUP_TIMEOUT)?;
    let partitions = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .map_or(0, |t| t.partitions().len());
    if partitions == 0 {
        return Err(KafkaError::MetadataFetch(
            rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
        ));
    }
    Ok(i32::try_from(partitions).unwrap_or(i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On the real broker: a tail that knows fewer partitions than the
    /// topics have (as after partitions were added while it ran) adds the
    /// others to its assignment and reads them from their beginning. The
    /// test broker cannot grow a topic (Tansu 0.6.0 has no CreatePartitions),
    /// so the tail is made to know fewer instead.
    #[tokio::test]
    async fn partitions_beyond_the_known_ones_are_read_from_their_beginning() {
        let broker = testkit::broker::broker().await;
        let kafka = broker.config(&testkit::unique("gateway-tail-test"));
        let topics = testkit::broker::fresh_topics(&kafka).await;
        let producer = kafka
            .producer_config()
            .set("enable.idempotence", "false")
            .create::<rdkafka::producer::FutureProducer>()
            .unwrap();
        let id = RequestId::new_random();
        let payload = serde_json::to_vec(&crate::index::test_request(id)).unwrap();
        let key = id.to_string();
        let last = checkout_contract::topics::PARTITIONS - 1;
        producer
            .send(
                rdkafka::producer::FutureRecord::to(&topics.requests)
                    .partition(last)
                    .key(&key)
                    .payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap();

        let tail = Tail {
            consumer: Arc::new(consumer(&kafka, &Metrics::default()).unwrap()),
            topic: topics.requests.clone(),
            topics: topics.clone(),
            lookback: Duration::ZERO,
            index: Arc::new(Index::new(Duration::from_secs(60), 10, 4)),
            metrics: Arc::default(),
            state: Arc::default(),
        };
        // The tail started when its topic had one partition, read from its end.
        let mut first = TopicPartitionList::new();
        first
            .add_partition_offset(&topics.requests, 0, Offset::End)
            .unwrap();
        tail.consumer.assign(&first).unwrap();

        let count = tail.assign_added(1).await.unwrap();
        let all = checkout_contract::topics::PARTITIONS;
        assert_eq!(count, all);
        assert_eq!(tail.state.partitions.load(Ordering::Acquire), all);
        assert_eq!(
            tail.consumer.assignment().unwrap().count(),
            usize::try_from(all).unwrap()
        );
        assert_eq!(
            tail.assign_added(count).await.unwrap(),
            count,
            "nothing new"
        );

        let m = tokio::time::timeout(Duration::from_secs(15), tail.consumer.recv())
            .await
            .expect("the added partition is read")
            .unwrap();
        assert_eq!(
            (m.topic(), m.partition(), m.offset()),
            (topics.requests.as_str(), last, 0)
        );
        assert_eq!(m.payload(), Some(payload.as_slice()));
    }

    #[test]
    fn bad_messages_are_skipped_not_fatal() {
        let index = Index::new(Duration::from_secs(60), 10, 4);
        let topics = Topics::default();
        let at = Position {
            partition: 0,
            offset: 1,
        };
        assert_eq!(
            apply(&index, &topics, &topics.finished, at, None, None),
            Applied::Skipped
        );
        assert_eq!(
            apply(
                &index,
                &topics,
                &topics.finished,
                at,
                Some(b"{not json"),
                None
            ),
            Applied::Skipped
        );
        let bad_id = br#"{"request_id":"order-1","user_id":1,"amount_cents":500,"status":"success","timestamp":"2024-01-15T10:35:00Z"}"#;
        assert_eq!(
            apply(&index, &topics, &topics.finished, at, Some(bad_id), None),
            Applied::Skipped
        );
        let good = br#"{"request_id":"550e8400-e29b-41d4-a716-446655440000","user_id":1,"amount_cents":500,"status":"success","timestamp":"2024-01-15T10:35:00Z"}"#;
        assert_eq!(
            apply(&index, &topics, &topics.finished, at, Some(good), None),
            Applied::Update(Recorded::Added)
        );
        assert_eq!(
            apply(&index, &topics, &topics.finished, at, Some(good), None),
            Applied::Update(Recorded::Duplicate)
        );
        assert_eq!(index.len(), 1);
    }
}
