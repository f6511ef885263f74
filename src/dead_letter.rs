//! Dead-lettering, once for every consumer: a message that is itself wrong
//! (not JSON, missing fields, refused by a rule no retry changes) is copied,
//! payload, key and headers byte for byte, to its dead-letter topic with one
//! set of headers saying why and from where, so its partition can move on.
//!
//! - [`dead_letter`]: the copy, used by the checkout worker
//!   (`checkout.requests.dlq`) and blazing_sun (`checkout.finished.dlq`).
//! - [`DeadLetter`]: what a dead-letter record says about itself, read back
//!   by `checkout-stack dlq replay` (`stack/src/dlq.rs`), which sends the
//!   record to its origin topic with [`original_headers`].
//!
//! Headers added: [`HEADER_DLQ_REASON`] (cut to [`MAX_REASON_BYTES`]) and
//! [`HEADER_DLQ_SOURCE`] (`topic/partition/offset`, see [`Source`]). Older
//! records of the checkout worker carry [`LEGACY_HEADER_DLQ_ORIGIN`] instead;
//! [`DeadLetter::read`] reads it too, so they can still be replayed.

use std::fmt;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::kafka::{HEADER_DLQ_PREFIX, HEADER_DLQ_REASON, HEADER_DLQ_SOURCE, header};

/// What the checkout worker named [`HEADER_DLQ_SOURCE`] before the two
/// dead-letter paths became one; read, never written.
pub const LEGACY_HEADER_DLQ_ORIGIN: &str = "dlq-origin";

/// Longest reason kept in [`HEADER_DLQ_REASON`], in bytes (cut on a
/// character boundary): a database error can be long, a header should not be.
pub const MAX_REASON_BYTES: usize = 512;

/// How long a copy may wait for room in the producer's queue.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(5);

/// Copies `message` to `dlq_topic`: its payload, key and headers (any
/// `dlq-*` ones it already had left out), plus [`HEADER_DLQ_REASON`] =
/// `reason` and [`HEADER_DLQ_SOURCE`] = where `message` was read. Waits for
/// the broker's acknowledgement.
///
/// # Errors
/// When the broker does not acknowledge the copy (within the producer's
/// `message.timeout.ms`); the caller keeps the original's offset and retries.
pub async fn dead_letter<M: Message>(
    producer: &FutureProducer,
    dlq_topic: &str,
    message: &M,
    reason: &str,
) -> Result<(), KafkaError> {
    let source = Source::of(message).to_string();
    let headers = original_headers(message)
        .insert(Header {
            key: HEADER_DLQ_REASON,
            value: Some(truncate(reason, MAX_REASON_BYTES)),
        })
        .insert(Header {
            key: HEADER_DLQ_SOURCE,
            value: Some(source.as_str()),
        });
    let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(dlq_topic).headers(headers);
    if let Some(payload) = message.payload() {
        record = record.payload(payload);
    }
    if let Some(key) = message.key() {
        record = record.key(key);
    }
    producer
        .send(record, QUEUE_TIMEOUT)
        .await
        .map(|_| ())
        .map_err(|(e, _)| e)
}

/// `message`'s headers without the `dlq-*` ones: what the original carried
/// (for a dead-letter record), or what a copy starts from.
pub fn original_headers<M: Message>(message: &M) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(original) = message.headers() {
        for h in original.iter() {
            if !h.key.starts_with(HEADER_DLQ_PREFIX) {
                headers = headers.insert(Header {
                    key: h.key,
                    value: h.value,
                });
            }
        }
    }
    headers
}

/// Where a message was read: the value of [`HEADER_DLQ_SOURCE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl Source {
    /// Where `message` was read.
    pub fn of<M: Message>(message: &M) -> Self {
        Self {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        }
    }

    /// Parses `topic/partition/offset` (topic names never contain `/`).
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.trim().rsplitn(3, '/');
        let offset = parts.next()?.parse().ok()?;
        let partition = parts.next()?.parse().ok()?;
        let topic = parts.next().filter(|t| !t.is_empty())?;
        Some(Self {
            topic: topic.to_owned(),
            partition,
            offset,
        })
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

/// What a record of a dead-letter topic says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeadLetter {
    /// Where the original was read ([`HEADER_DLQ_SOURCE`], else the legacy
    /// [`LEGACY_HEADER_DLQ_ORIGIN`]); `None` when neither is readable.
    pub source: Option<Source>,
    /// Why it was dead-lettered.
    pub reason: Option<String>,
}

impl DeadLetter {
    /// Reads the `dlq-*` headers of a dead-letter record.
    pub fn read<M: Message>(message: &M) -> Self {
        let source = header(message, HEADER_DLQ_SOURCE)
            .and_then(Source::parse)
            .or_else(|| header(message, LEGACY_HEADER_DLQ_ORIGIN).and_then(Source::parse));
        Self {
            source,
            reason: header(message, HEADER_DLQ_REASON).map(str::to_owned),
        }
    }
}

/// The topic a dead-letter topic's records came from by name:
/// `checkout.finished.dlq` -> `checkout.finished`, and with a suffix after
/// it (tests' per-case names) `checkout.finished.dlq.x1` -> `checkout.finished.x1`.
pub fn origin_topic_of(dlq_topic: &str) -> Option<String> {
    if let Some(origin) = dlq_topic.strip_suffix(".dlq") {
        return (!origin.is_empty()).then(|| origin.to_owned());
    }
    let (before, after) = dlq_topic.split_once(".dlq.")?;
    (!before.is_empty()).then(|| format!("{before}.{after}"))
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use rdkafka::Timestamp;
    use rdkafka::message::OwnedMessage;

    use super::*;

    fn record(headers: &[(&str, &str)]) -> OwnedMessage {
        let mut h = OwnedHeaders::new();
        for (key, value) in headers {
            h = h.insert(Header {
                key,
                value: Some(*value),
            });
        }
        OwnedMessage::new(
            Some(b"{}".to_vec()),
            None,
            "checkout.finished.dlq".into(),
            Timestamp::NotAvailable,
            2,
            41,
            Some(h),
        )
    }

    #[test]
    fn sources_round_trip_and_bad_ones_are_refused() {
        let source = Source {
            topic: "checkout.finished".into(),
            partition: 2,
            offset: 41,
        };
        assert_eq!(source.to_string(), "checkout.finished/2/41");
        assert_eq!(Source::parse("checkout.finished/2/41"), Some(source));
        for bad in ["", "t/1", "/1/2", "t/x/2", "t/1/y", "t/1/2/"] {
            assert_eq!(Source::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_source_header_is_read_and_the_legacy_origin_too() {
        let new = record(&[
            (HEADER_DLQ_REASON, "bad"),
            (HEADER_DLQ_SOURCE, "checkout.finished/0/7"),
        ]);
        let read = DeadLetter::read(&new);
        assert_eq!(read.reason.as_deref(), Some("bad"));
        assert_eq!(read.source.unwrap().offset, 7);

        let legacy = record(&[(LEGACY_HEADER_DLQ_ORIGIN, "checkout.requests/1/3")]);
        let read = DeadLetter::read(&legacy);
        assert_eq!(read.source.unwrap().topic, "checkout.requests");
        assert_eq!(read.reason, None);

        assert_eq!(DeadLetter::read(&record(&[])), DeadLetter::default());
    }

    #[test]
    fn original_headers_leave_out_every_dlq_header() {
        let m = record(&[
            ("request_id", "r-1"),
            (HEADER_DLQ_REASON, "bad"),
            ("traceparent", "00-x"),
            (HEADER_DLQ_SOURCE, "t/0/1"),
            (LEGACY_HEADER_DLQ_ORIGIN, "t/0/1"),
        ]);
        let kept: Vec<(String, Option<Vec<u8>>)> = original_headers(&m)
            .iter()
            .map(|h| (h.key.to_owned(), h.value.map(<[u8]>::to_vec)))
            .collect();
        assert_eq!(
            kept,
            vec![
                ("request_id".to_owned(), Some(b"r-1".to_vec())),
                ("traceparent".to_owned(), Some(b"00-x".to_vec())),
            ]
        );
    }

    #[test]
    fn the_origin_topic_is_the_dlq_name_without_dlq() {
        assert_eq!(
            origin_topic_of("checkout.finished.dlq").as_deref(),
            Some("checkout.finished")
        );
        assert_eq!(
            origin_topic_of("checkout.requests.dlq.a1b2").as_deref(),
            Some("checkout.requests.a1b2")
        );
        assert_eq!(origin_topic_of("checkout.finished"), None);
        assert_eq!(origin_topic_of(".dlq"), None);
    }

    #[test]
    fn long_reasons_are_cut_on_a_char_boundary() {
        let reason = "é".repeat(400);
        let cut = truncate(&reason, MAX_REASON_BYTES);
        assert!(cut.len() <= MAX_REASON_BYTES && cut.len() > MAX_REASON_BYTES - 2);
        assert!(reason.starts_with(cut));
        assert_eq!(truncate("short", MAX_REASON_BYTES), "short");
    }
}
