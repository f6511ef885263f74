//! `checkout-stack dlq replay DLQ-TOPIC [--dry-run] [--to TOPIC]` ([`ReplayArgs`]): once
//! the cause of dead-lettering is fixed, sends a dead-letter topic's records
//! back onto the topic they came from.
//!
//! - Reads every partition of the dead-letter topic from the replay group's
//!   committed offset (else the beginning) up to the high watermark taken
//!   at start: records dead-lettered meanwhile wait for the next run.
//! - Each record goes to `--to`, else the topic of its `dlq-source` header
//!   (or the legacy `dlq-origin`), else the dead-letter topic's name without
//!   `.dlq`; with its payload, key and original headers (the `dlq-*` ones
//!   left out), one at a time, each acknowledged before the next.
//! - After each acknowledgement the group [`REPLAY_GROUP`] commits the next
//!   offset, so a second run sends nothing twice. A crash between the
//!   acknowledgement and the commit resends one record: every consumer of
//!   the checkout topics takes a duplicate as a no-op.
//! - `--dry-run` lists what would be sent and sends and commits nothing.
//!
//! The records are dead-lettered by [`checkout_contract::dead_letter`];
//! request_ids are read with [`checkout_contract::inbound`].

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use checkout_contract::dead_letter::{DeadLetter, Source, origin_topic_of, original_headers};
use checkout_contract::inbound::Inbound;
use checkout_contract::kafka::KafkaConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

/// The consumer group whose committed offsets say what was replayed.
pub const REPLAY_GROUP: &str = "checkout-dlq-replay";

/// How long one metadata, offset or commit call may take.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long the replay waits for the next record below the high watermark.
const STALL: Duration = Duration::from_secs(30);
/// How long a record may wait for room in the producer's queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// `checkout-stack dlq replay --help`: what a replay does.
pub const REPLAY_HELP: &str = "Sends the records of a dead-letter topic (checkout.requests.dlq,
checkout.finished.dlq) back onto the topic they came from, once the cause
is fixed: payload, key and original headers, one at a time, each
acknowledged. The target is --to TOPIC, else the record's dlq-source
header, else DLQ-TOPIC without .dlq. Reads up to the end the topic had at
start; the consumer group checkout-dlq-replay remembers what was sent, so
running it again sends only what was dead-lettered since.";

/// `checkout-stack dlq replay`'s arguments.
#[derive(Debug, Clone, PartialEq, Eq, clap::Args)]
pub struct ReplayArgs {
    /// The dead-letter topic to replay.
    #[arg(value_name = "DLQ-TOPIC")]
    pub dlq_topic: String,
    /// List what would be sent; send nothing, commit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Send every record to TOPIC.
    #[arg(long, value_name = "TOPIC", value_parser = clap::builder::NonEmptyStringValueParser::new())]
    pub to: Option<String>,
}

impl ReplayArgs {
    /// How to replay, with the replay group [`REPLAY_GROUP`].
    pub fn options(&self) -> ReplayOptions {
        ReplayOptions {
            dry_run: self.dry_run,
            to: self.to.clone(),
            ..ReplayOptions::default()
        }
    }
}

/// How to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOptions {
    /// List only: send nothing, commit nothing.
    pub dry_run: bool,
    /// Send every record here instead of its origin.
    pub to: Option<String>,
    /// The group that remembers what was replayed ([`REPLAY_GROUP`]).
    pub group: String,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            to: None,
            group: REPLAY_GROUP.to_owned(),
        }
    }
}

/// How a replay went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Replayed {
    /// Records read below the high watermark taken at start.
    pub records: usize,
    /// Records sent and acknowledged (0 in a dry run).
    pub sent: usize,
}

/// Why a replay stopped. Records acknowledged before stay committed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("topic {0} does not exist")]
    NoSuchTopic(String),
    #[error("{at}: no dlq-source header and {dlq} is not named *.dlq; pass --to TOPIC")]
    NoOrigin { dlq: String, at: Source },
    /// `record` is `dlq/partition/offset -> topic`.
    #[error("{record}: not acknowledged: {source}")]
    Send { record: String, source: KafkaError },
    #[error(
        "{record}: sent, but the replay group cannot commit it (it will be sent again next time): {source}"
    )]
    Commit { record: String, source: KafkaError },
    #[error(
        "no record of {dlq} arrived for {STALL:?} although {left} partition(s) are not read to their end"
    )]
    Stalled { dlq: String, left: usize },
    #[error(transparent)]
    Kafka(#[from] KafkaError),
    #[error("cannot print: {0}")]
    Io(#[from] std::io::Error),
}

/// Replays `dlq_topic` as the module docs say, printing one line per record
/// and a summary to `out`.
///
/// # Errors
/// See [`ReplayError`]; the line of every record handled before is printed.
pub async fn replay(
    config: &KafkaConfig,
    dlq_topic: &str,
    options: &ReplayOptions,
    mut out: impl Write,
) -> Result<Replayed, ReplayError> {
    let mut c = config.tail_config();
    c.set("group.id", &options.group)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false");
    let consumer: Arc<StreamConsumer> = Arc::new(c.create()?);
    let mut ends = assign(&consumer, dlq_topic).await?;
    let producer = if options.dry_run {
        None
    } else {
        Some(config.producer()?)
    };

    let mut done = Replayed::default();
    while !ends.is_empty() {
        let message = match tokio::time::timeout(STALL, consumer.recv()).await {
            Err(_) => {
                return Err(ReplayError::Stalled {
                    dlq: dlq_topic.to_owned(),
                    left: ends.len(),
                });
            }
            Ok(received) => received?.detach(),
        };
        // Only records below the end taken at start; a partition is done
        // with its last one.
        let Some(i) = ends.iter().position(|(p, _)| *p == message.partition()) else {
            continue;
        };
        let end = ends[i].1;
        if message.offset() + 1 >= end {
            ends.swap_remove(i);
        }
        if message.offset() >= end {
            continue;
        }
        let line = replay_one(&consumer, producer.as_ref(), dlq_topic, options, &message).await?;
        writeln!(out, "{line}")?;
        out.flush()?;
        done.records += 1;
        if producer.is_some() {
            done.sent += 1;
        }
    }
    if options.dry_run {
        writeln!(
            out,
            "dry run: {} record(s) of {dlq_topic} would be replayed; nothing sent, nothing committed",
            done.records
        )?;
    } else {
        writeln!(out, "replayed {} record(s) of {dlq_topic}", done.sent)?;
    }
    Ok(done)
}

/// Assigns every partition of `topic` that has records the group has not
/// replayed, from the group's committed offset (else the beginning).
/// Returns `(partition, high watermark at start)` of each.
async fn assign(
    consumer: &Arc<StreamConsumer>,
    topic: &str,
) -> Result<Vec<(i32, i64)>, ReplayError> {
    let consumer = Arc::clone(consumer);
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || {
        let metadata = consumer.fetch_metadata(Some(&topic), TIMEOUT)?;
        let partitions: Vec<i32> = metadata
            .topics()
            .iter()
            .find(|t| t.name() == topic && t.error().is_none())
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        if partitions.is_empty() {
            return Err(ReplayError::NoSuchTopic(topic));
        }
        let mut all = TopicPartitionList::new();
        for p in &partitions {
            all.add_partition(&topic, *p);
        }
        let committed = consumer.committed_offsets(all, TIMEOUT)?;
        let mut assignment = TopicPartitionList::new();
        let mut ends = Vec::new();
        for p in partitions {
            let (low, high) = consumer.fetch_watermarks(&topic, p, TIMEOUT)?;
            let start = match committed.find_partition(&topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o.max(low),
                _ => low,
            };
            if start < high {
                assignment.add_partition_offset(&topic, p, Offset::Offset(start))?;
                ends.push((p, high));
            }
        }
        consumer.assign(&assignment)?;
        Ok(ends)
    })
    .await
    .map_err(|_| KafkaError::Canceled)?
}

/// Sends one record to its origin (unless a dry run), commits past it, and
/// returns its line.
async fn replay_one(
    consumer: &Arc<StreamConsumer>,
    producer: Option<&FutureProducer>,
    dlq_topic: &str,
    options: &ReplayOptions,
    message: &OwnedMessage,
) -> Result<String, ReplayError> {
    let at = Source::of(message);
    let dead = DeadLetter::read(message);
    let topic = options
        .to
        .clone()
        .or_else(|| dead.source.as_ref().map(|s| s.topic.clone()))
        .or_else(|| origin_topic_of(dlq_topic))
        .ok_or_else(|| ReplayError::NoOrigin {
            dlq: dlq_topic.to_owned(),
            at: at.clone(),
        })?;
    let inbound = Inbound::read(message);
    let described = format!(
        "{at} -> {topic}  source={} request_id={} reason={:?}",
        dead.source
            .map_or_else(|| "-".to_owned(), |s| s.to_string()),
        inbound.request_id().unwrap_or("-"),
        dead.reason.as_deref().unwrap_or("-"),
    );
    let Some(producer) = producer else {
        return Ok(format!("would replay {described}"));
    };

    let mut record: FutureRecord<'_, [u8], [u8]> =
        FutureRecord::to(&topic).headers(original_headers(message));
    if let Some(payload) = message.payload() {
        record = record.payload(payload);
    }
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    if let Err((source, _)) = producer.send(record, QUEUE_TIMEOUT).await {
        return Err(ReplayError::Send {
            record: format!("{at} -> {topic}"),
            source,
        });
    }

    let mut next = TopicPartitionList::new();
    next.add_partition_offset(&at.topic, at.partition, Offset::Offset(at.offset + 1))?;
    let committer = Arc::clone(consumer);
    let committed = tokio::task::spawn_blocking(move || committer.commit(&next, CommitMode::Sync))
        .await
        .map_err(|_| KafkaError::Canceled)?;
    if let Err(source) = committed {
        return Err(ReplayError::Commit {
            record: format!("{at} -> {topic}"),
            source,
        });
    }
    Ok(format!("replayed {described}"))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ReplayArgs,
    }

    fn parse(list: &[&str]) -> Result<ReplayArgs, String> {
        Cli::try_parse_from(std::iter::once("replay").chain(list.iter().copied()))
            .map(|c| c.args)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn replay_takes_a_topic_and_its_two_flags() {
        let plain = parse(&["checkout.finished.dlq"]).unwrap();
        assert_eq!(plain.dlq_topic, "checkout.finished.dlq");
        assert_eq!(plain.options(), ReplayOptions::default());
        let both = parse(&["--dry-run", "d.dlq", "--to", "t"]).unwrap();
        assert_eq!(both.dlq_topic, "d.dlq");
        assert_eq!(
            both.options(),
            ReplayOptions {
                dry_run: true,
                to: Some("t".into()),
                group: REPLAY_GROUP.into(),
            }
        );
    }

    #[test]
    fn bad_arguments_are_explained() {
        for (list, expected) in [
            (&[][..], "<DLQ-TOPIC>"),
            (&["a", "b"][..], "unexpected argument 'b'"),
            (&["a", "--to"][..], "--to <TOPIC>"),
            (&["a", "--to", ""][..], "--to <TOPIC>"),
            (&["a", "--to", "--dry-run"][..], "--to <TOPIC>"),
            (&["a", "--force"][..], "unexpected argument '--force'"),
        ] {
            let err = parse(list).unwrap_err();
            assert!(err.contains(expected), "{list:?}: {err}");
        }
    }
}
