//! Kafka plumbing shared by every service: client settings, topic creation,
//! and producing a JSON event keyed by `request_id` with the standard headers.
//!
//! - Producers are idempotent with `acks=all`: an acknowledged event is on
//!   every in-sync replica and a retried send is never duplicated.
//! - Consumers are at-least-once: `enable.auto.offset.store=false`, so a
//!   service stores an offset only after its side effect is durable
//!   (rust-rdkafka `examples/at_least_once.rs`); auto-commit then commits
//!   what was stored.
//! - A consumer may be a static group member ([`GroupInstanceId`]), so a
//!   restarted process takes over its partitions at once.
//! - Fetches are low latency: librdkafka's default `fetch.wait.max.ms` of
//!   500 ms would add half a second to every checkout step.
//! - Fetches are small ([`FETCH_MAX_BYTES`]): on Tansu a fetch of a whole
//!   backlog outlasts the consumer group session, and the group never
//!   gets past the backlog.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde::Serialize;
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::env::EnvReader;
use crate::trace::TraceContext;

/// Header carrying the checkout's request id.
pub const HEADER_REQUEST_ID: &str = "request_id";
/// Header carrying the payload's media type.
pub const HEADER_CONTENT_TYPE: &str = "content-type";
/// The media type of every event payload.
pub const CONTENT_TYPE_JSON: &str = "application/json";
/// Header on dead-letter copies saying why the message was rejected.
pub const HEADER_DLQ_REASON: &str = "dlq-reason";
/// Header on dead-letter copies naming where the original was read
/// (`topic/partition/offset`, see [`crate::dead_letter::Source`]).
pub const HEADER_DLQ_SOURCE: &str = "dlq-source";
/// What every header a dead-letter copy adds starts with (left out again
/// when a record is replayed onto its topic).
pub const HEADER_DLQ_PREFIX: &str = "dlq-";
/// W3C trace context header.
pub const HEADER_TRACEPARENT: &str = "traceparent";

/// How long `fetch.wait.max.ms` lets the broker hold an empty fetch.
pub const FETCH_WAIT_MAX_MS: &str = "10";

/// `fetch.max.bytes` (and the consumer's `message.max.bytes`, which
/// librdkafka requires to be no larger): 64 KiB, about 200 of our events,
/// per fetch request.
///
/// Why so small: a broker that fills one fetch up to this size and serves
/// nothing else meanwhile (Tansu 0.6.0) would hold a new group's fetch of a
/// whole backlog past the group session, and the group would drop and fetch
/// it again for ever. On Apache Kafka it is merely a smaller fetch (a larger
/// batch is still returned whole, KIP-74).
///
/// Tansu never returns a record whose key plus value exceed this: our events
/// are under 2 KiB.
pub const FETCH_MAX_BYTES: &str = "65536";

/// Where the brokers are and how topics are made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaConfig {
    /// `KAFKA_BOOTSTRAP_SERVERS`, e.g. `localhost:9092`.
    pub bootstrap_servers: String,
    /// `KAFKA_REPLICATION_FACTOR` for topics `ensure_topics` creates (default 1).
    pub replication_factor: i32,
    /// `client.id` reported to the broker.
    pub client_id: String,
    /// `KAFKA_ENABLE_IDEMPOTENCE` (default true): idempotent producers. Only
    /// for brokers that cannot take them: Tansu 0.6.0 panics when librdkafka
    /// bumps a producer epoch after a timeout (`init_producer` with an existing
    /// id is `todo!()` there), which kills the broker. With it off, producers
    /// keep order with one request in flight and consumers stay idempotent.
    pub enable_idempotence: bool,
}

impl KafkaConfig {
    /// Settings for `bootstrap_servers` with every default (replication
    /// factor 1, idempotent producers). Reads nothing from the environment:
    /// [`Self::from_env`] does, and a caller that knows better sets the fields.
    pub fn new(bootstrap_servers: impl Into<String>, client_id: impl Into<String>) -> Self {
        Self {
            bootstrap_servers: bootstrap_servers.into(),
            replication_factor: 1,
            client_id: client_id.into(),
            enable_idempotence: true,
        }
    }

    /// Reads `KAFKA_BOOTSTRAP_SERVERS` (default `localhost:9092`),
    /// `KAFKA_REPLICATION_FACTOR` (default 1) and `KAFKA_ENABLE_IDEMPOTENCE`
    /// (default true).
    pub fn from_env(env: &mut EnvReader, client_id: &str) -> Self {
        let bootstrap_servers = env.string("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092");
        let replication_factor = env.parse("KAFKA_REPLICATION_FACTOR", 1);
        if replication_factor < 1 {
            env.error("KAFKA_REPLICATION_FACTOR: must be at least 1");
        }
        let enable_idempotence = env.flag("KAFKA_ENABLE_IDEMPOTENCE", true);
        Self {
            bootstrap_servers,
            replication_factor,
            client_id: client_id.to_owned(),
            enable_idempotence,
        }
    }

    fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", &self.client_id)
            .set("socket.keepalive.enable", "true")
            .set("reconnect.backoff.ms", "50")
            .set("reconnect.backoff.max.ms", "2000");
        c
    }

    /// Idempotent (unless `enable_idempotence` is off), `acks=all`, low
    /// linger. Callers may override any key (for example
    /// `message.timeout.ms`) before `create()`.
    pub fn producer_config(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "10000");
        if self.enable_idempotence {
            c.set("enable.idempotence", "true");
        } else {
            // Retries must not reorder a checkout's events.
            c.set("enable.idempotence", "false")
                .set("max.in.flight.requests.per.connection", "1");
        }
        c
    }

    /// # Errors
    /// When librdkafka rejects the configuration.
    pub fn producer(&self) -> Result<FutureProducer, KafkaError> {
        self.producer_config().create()
    }

    /// At-least-once group consumer: offsets are stored by the caller after
    /// its side effect, then committed automatically.
    pub fn consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", group_id)
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "500")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", "10000")
            .set("heartbeat.interval.ms", "1000")
            .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
            .set("fetch.min.bytes", "1")
            .set("fetch.max.bytes", FETCH_MAX_BYTES)
            .set("message.max.bytes", FETCH_MAX_BYTES);
        c
    }

    /// [`Self::consumer_config`], as the static member `instance` of the
    /// group when one is given (`group.instance.id`, see [`GroupInstanceId`]).
    pub fn member_config(
        &self,
        group_id: &str,
        instance: Option<&GroupInstanceId>,
    ) -> ClientConfig {
        let mut c = self.consumer_config(group_id);
        if let Some(instance) = instance {
            c.set("group.instance.id", instance.as_str());
        }
        c
    }

    /// A consumer that reads partitions it assigns itself (no group
    /// membership, no commits): the gateway's status tail, monitoring tools.
    pub fn tail_config(&self) -> ClientConfig {
        let mut c = self.base();
        c.set("group.id", format!("{}-tail", self.client_id))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
            .set("fetch.min.bytes", "1")
            // No session to lose, but a whole-backlog fetch would hold Tansu's
            // storage (every producer included) for as long as it takes.
            .set("fetch.max.bytes", FETCH_MAX_BYTES)
            .set("message.max.bytes", FETCH_MAX_BYTES);
        c
    }
}

/// A consumer's name for static group membership (`group.instance.id`,
/// KIP-345). A process restarted under the same name takes its SIGKILLed
/// predecessor's place in the group at once, with the same partitions,
/// instead of joining beside the dead member and waiting for that member's
/// session to expire. On Tansu 0.6.0 that wait can last for good: when the
/// dead leader's session ends during the newcomer's SyncGroup, Tansu
/// completes the generation with no assignment and never rebalances again
/// (`faults/examples/rejoin.rs`). Two processes
/// running at once must never share a name: Kafka fences the older one,
/// Tansu 0.6.0 hands both the same partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupInstanceId(String);

/// Stands for the host name in a [`GroupInstanceId`] setting.
pub const HOSTNAME_PLACEHOLDER: &str = "{hostname}";

impl GroupInstanceId {
    /// `raw` with every `{hostname}` replaced by `hostname`; then Kafka's
    /// rule: 1 to 249 ASCII letters, digits, `.`, `_` and `-`.
    ///
    /// # Errors
    /// Why the value is not a valid name.
    pub fn parse(raw: &str, hostname: Option<&str>) -> Result<Self, String> {
        let id = if raw.contains(HOSTNAME_PLACEHOLDER) {
            let hostname = hostname.filter(|h| !h.is_empty()).ok_or_else(|| {
                format!("{raw:?} names {HOSTNAME_PLACEHOLDER} but HOSTNAME is not set")
            })?;
            raw.replace(HOSTNAME_PLACEHOLDER, hostname)
        } else {
            raw.to_owned()
        };
        if id.is_empty() || id.len() > 249 || id == "." || id == ".." {
            return Err(format!("{id:?}: must be 1 to 249 characters (not . or ..)"));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(format!(
                "{id:?}: {c:?} is not allowed (ASCII letters, digits, '.', '_', '-')"
            ));
        }
        Ok(Self(id))
    }

    /// Reads `var`: unset means dynamic membership (`None`). `{hostname}` in
    /// the value stands for `HOSTNAME`, which Docker and Kubernetes set in
    /// every container to the container's or pod's name: replicas of one
    /// service get distinct names that survive a restart in place.
    pub fn from_env(env: &mut EnvReader, var: &'static str) -> Option<Self> {
        let raw = env.optional(var)?;
        let hostname = if raw.contains(HOSTNAME_PLACEHOLDER) {
            env.optional("HOSTNAME")
        } else {
            None
        };
        Self::parse(raw.trim(), hostname.as_deref())
            .map_err(|e| env.error(format!("{var}={e}")))
            .ok()
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for GroupInstanceId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Creates each topic with `partitions` partitions if it is missing; a no-op
/// for topics that exist. Returns once every topic is visible in metadata.
///
/// # Errors
/// When the broker cannot be reached or refuses to create a topic.
pub async fn ensure_topics(
    config: &KafkaConfig,
    topics: &[&str],
    partitions: i32,
) -> Result<(), KafkaError> {
    // Ask first and create only what is missing: brokers without the admin
    // CreateTopics API (librdkafka's mock cluster) then work when the topics
    // were made another way.
    let mut missing = Vec::new();
    for topic in topics {
        if partition_count(config, topic).await? == 0 {
            missing.push(*topic);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = config.base().create()?;
    let new: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                partitions,
                TopicReplication::Fixed(config.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, partitions, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(KafkaError::AdminOp(code))
                    .inspect_err(|_| tracing::error!(%topic, ?code, "cannot create topic"));
            }
        }
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for topic in missing {
        loop {
            match partition_count(config, topic).await {
                Ok(n) if n > 0 => break,
                result if tokio::time::Instant::now() >= deadline => {
                    return Err(result.err().unwrap_or(KafkaError::AdminOp(
                        RDKafkaErrorCode::UnknownTopicOrPartition,
                    )));
                }
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }
    Ok(())
}

/// How many partitions `topic` has (0 if the broker does not know it).
///
/// # Errors
/// When the broker cannot be reached within 5 s.
pub async fn partition_count(config: &KafkaConfig, topic: &str) -> Result<i32, KafkaError> {
    let consumer: BaseConsumer = config.tail_config().create()?;
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer.fetch_metadata(Some(&topic), Duration::from_secs(5))?;
        Ok(metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map_or(0, |t| {
                i32::try_from(t.partitions().len()).unwrap_or(i32::MAX)
            }))
    })
    .await
    .map_err(|_| KafkaError::Canceled)?
}

/// Where an acknowledged event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    pub partition: i32,
    pub offset: i64,
}

/// Why an event was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("cannot serialise event: {0}")]
    Serialize(#[from] serde_json::Error),
    #[error("broker did not acknowledge the event: {0}")]
    Kafka(#[from] KafkaError),
}

/// The standard headers of an event about `request_id`.
pub fn event_headers(request_id: &str) -> OwnedHeaders {
    OwnedHeaders::new()
        .insert(Header {
            key: HEADER_REQUEST_ID,
            value: Some(request_id),
        })
        .insert(Header {
            key: HEADER_CONTENT_TYPE,
            value: Some(CONTENT_TYPE_JSON),
        })
}

/// Produces `event` as JSON to `topic`, keyed by `request_id` (so every event
/// of one checkout stays in order on one partition), with the standard
/// headers plus `extra` ones, and waits for the broker's acknowledgement.
///
/// # Errors
/// When the event cannot be serialised or the broker does not acknowledge it
/// within the producer's `message.timeout.ms`.
pub async fn send_json<T: Serialize>(
    producer: &FutureProducer,
    topic: &str,
    request_id: &str,
    event: &T,
    extra: &[(&str, &str)],
) -> Result<Delivered, ProduceError> {
    let payload = serde_json::to_vec(event)?;
    let mut headers = event_headers(request_id);
    for (key, value) in extra {
        headers = headers.insert(Header {
            key,
            value: Some(*value),
        });
    }
    let record = FutureRecord::to(topic)
        .key(request_id)
        .payload(&payload)
        .headers(headers);
    let delivery = producer
        .send(record, Duration::ZERO)
        .await
        .map_err(|(e, _)| e)?;
    Ok(Delivered {
        partition: delivery.partition,
        offset: delivery.offset,
    })
}

/// [`send_json`] in a `produce` span of the checkout's `trace`, the record
/// carrying that span's context as its [`HEADER_TRACEPARENT`] (the next hop's
/// parent; see [`TraceContext::within`]).
///
/// # Errors
/// As [`send_json`].
pub async fn send_traced<T: Serialize>(
    producer: &FutureProducer,
    topic: &str,
    request_id: &str,
    event: &T,
    trace: &TraceContext,
    extra: &[(&str, &str)],
) -> Result<Delivered, ProduceError> {
    let span = tracing::info_span!(
        "produce",
        topic,
        request_id,
        partition = Empty,
        offset = Empty
    );
    let traceparent = trace.within(&span).header();
    let mut headers = vec![(HEADER_TRACEPARENT, traceparent.as_str())];
    headers.extend_from_slice(extra);
    let delivered = send_json(producer, topic, request_id, event, &headers)
        .instrument(span.clone())
        .await?;
    span.record("partition", delivered.partition);
    span.record("offset", delivered.offset);
    Ok(delivered)
}

/// The first value of header `name`, if it is UTF-8.
pub fn header<'a, M: Message>(message: &'a M, name: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producers_are_idempotent_with_acks_all_unless_turned_off() {
        let mut config = KafkaConfig::new("127.0.0.1:9092", "t");
        config.enable_idempotence = true;
        let c = config.producer_config();
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));

        config.enable_idempotence = false;
        let c = config.producer_config();
        assert_eq!(c.get("enable.idempotence"), Some("false"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("max.in.flight.requests.per.connection"), Some("1"));
    }

    #[test]
    fn consumers_store_offsets_only_when_told_and_fetch_fast() {
        let c = KafkaConfig::new("127.0.0.1:9092", "t").consumer_config("g");
        assert_eq!(c.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(c.get("group.id"), Some("g"));
        assert_eq!(c.get("fetch.wait.max.ms"), Some(FETCH_WAIT_MAX_MS));
    }

    #[test]
    fn consumers_and_tails_fetch_small_and_librdkafka_accepts_it() {
        let kafka = KafkaConfig::new("127.0.0.1:9092", "t");
        for c in [kafka.consumer_config("g"), kafka.tail_config()] {
            assert_eq!(c.get("fetch.max.bytes"), Some(FETCH_MAX_BYTES));
            // librdkafka refuses fetch.max.bytes < message.max.bytes.
            let _: BaseConsumer = c.create().expect("librdkafka accepts the fetch sizes");
        }
    }

    #[test]
    fn a_group_instance_id_makes_the_consumer_a_static_member() {
        let kafka = KafkaConfig::new("127.0.0.1:9092", "t");
        assert_eq!(
            kafka.member_config("g", None).get("group.instance.id"),
            None
        );
        let id = GroupInstanceId::parse("worker-1", None).unwrap();
        let c = kafka.member_config("g", Some(&id));
        assert_eq!(c.get("group.instance.id"), Some("worker-1"));
        assert_eq!(c.get("group.id"), Some("g"));
    }

    #[test]
    fn group_instance_ids_follow_kafkas_rule_and_may_name_the_host() {
        let env = |pairs: &[(&str, &str)]| {
            EnvReader::from_map(
                pairs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
            )
        };
        let mut e = env(&[]);
        assert_eq!(GroupInstanceId::from_env(&mut e, "X_ID"), None);
        assert!(e.finish().is_ok());

        let mut e = env(&[("X_ID", "checkout-{hostname}"), ("HOSTNAME", "a1b2c3")]);
        let id = GroupInstanceId::from_env(&mut e, "X_ID").unwrap();
        assert_eq!(id.as_str(), "checkout-a1b2c3");
        assert!(e.finish().is_ok());

        for (raw, hostname) in [
            ("checkout-{hostname}", None),
            ("two words", None),
            ("..", None),
            ("{hostname}", Some("bad/host")),
        ] {
            let mut pairs = vec![("X_ID", raw)];
            pairs.extend(hostname.map(|h| ("HOSTNAME", h)));
            let mut e = env(&pairs);
            assert_eq!(GroupInstanceId::from_env(&mut e, "X_ID"), None, "{raw}");
            let err = e.finish().unwrap_err().to_string();
            assert!(err.contains("X_ID="), "{raw}: {err}");
        }
        assert!(GroupInstanceId::parse(&"a".repeat(250), None).is_err());
        assert!(GroupInstanceId::parse(&"a".repeat(249), None).is_ok());
    }

    #[test]
    fn idempotence_setting_is_read_from_the_environment() {
        let mut env =
            EnvReader::from_map([("KAFKA_ENABLE_IDEMPOTENCE".to_owned(), "false".to_owned())]);
        assert!(!KafkaConfig::from_env(&mut env, "t").enable_idempotence);
        let mut env = EnvReader::from_map([]);
        assert!(KafkaConfig::from_env(&mut env, "t").enable_idempotence);
        // `new` has the defaults, whatever the process environment says.
        assert!(KafkaConfig::new("localhost:9092", "t").enable_idempotence);
    }
}
