//! Prometheus metrics shared by every service, with the `prometheus` crate:
//! one [`Registry`] per service instance (tests and the all-in-one launcher
//! run several services in one process, so nothing is global), the process
//! metrics in it, its text exposition for `GET /metrics`, and the lag of
//! every Kafka consumer a service runs, from librdkafka's statistics.
//!
//! - [`registry`]: a registry holding the process collector
//!   (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
//!   `process_open_fds`, ... on Linux).
//! - [`counter`], [`gauge`], [`histogram_vec`] and friends: a metric made
//!   and registered in one call (names are constants: a clash is a bug).
//! - [`render`] and [`exposition`]: a registry's text format, and the
//!   `GET /metrics` response carrying it.
//! - Consumer lag, `kafka_consumer_lag_messages{group,topic,partition}`
//!   ([`ConsumerLag`]): set from librdkafka's statistics by a consumer's
//!   context ([`LagContext`], or a [`LagRecorder`] inside a service's own context).
//! - The bounded `reason` label of a dead-lettered message ([`dead_letter_reason`]).
//!
//! The services' `metrics.rs` (gateway, checkout, blazing_sun) define their
//! own families with these.

use std::collections::HashSet;
use std::sync::Mutex;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use prometheus::core::Collector;
use prometheus::{
    Gauge, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::statistics::Statistics;

/// How often librdkafka reports a consumer's statistics (and so its lag).
pub const STATISTICS_INTERVAL_MS: &str = "5000";

/// The media type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Latency buckets, in seconds, for calls that take milliseconds to
/// minutes (RPCs, Stripe calls, a request's whole handling).
pub const LATENCY_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
];

/// A registry for one service instance, with the process collector in it.
pub fn registry() -> Registry {
    let registry = Registry::new();
    #[cfg(target_os = "linux")]
    if let Err(e) = registry.register(Box::new(
        prometheus::process_collector::ProcessCollector::for_self(),
    )) {
        panic!("process collector registration (a bug): {e}");
    }
    registry
}

/// Registers `collector` in `registry` and returns it.
///
/// # Panics
/// When a metric of the same name is registered already, or the name is
/// not a valid metric name: a programming error, not input.
pub fn register<C: Collector + Clone + 'static>(registry: &Registry, collector: C) -> C {
    if let Err(e) = registry.register(Box::new(collector.clone())) {
        panic!("metric registration (a bug): {e}");
    }
    collector
}

fn valid<T>(made: prometheus::Result<T>) -> T {
    made.unwrap_or_else(|e| panic!("metric definition (a bug): {e}"))
}

/// A counter, registered.
pub fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    register(registry, valid(IntCounter::new(name, help)))
}

/// A counter with `labels`, registered.
pub fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    register(
        registry,
        valid(IntCounterVec::new(Opts::new(name, help), labels)),
    )
}

/// An integer gauge, registered.
pub fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    register(registry, valid(IntGauge::new(name, help)))
}

/// A gauge of a fractional value, registered.
pub fn float_gauge(registry: &Registry, name: &str, help: &str) -> Gauge {
    register(registry, valid(Gauge::new(name, help)))
}

/// An integer gauge with `labels`, registered.
pub fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    register(
        registry,
        valid(IntGaugeVec::new(Opts::new(name, help), labels)),
    )
}

/// A histogram with `buckets` (upper bounds), registered.
pub fn histogram(registry: &Registry, name: &str, help: &str, buckets: &[f64]) -> Histogram {
    register(
        registry,
        valid(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        )),
    )
}

/// A histogram with `labels` and `buckets`, registered.
pub fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    register(
        registry,
        valid(HistogramVec::new(
            HistogramOpts::new(name, help).buckets(buckets.to_vec()),
            labels,
        )),
    )
}

/// The text exposition of everything in `registry`.
pub fn render(registry: &Registry) -> String {
    TextEncoder::new()
        .encode_to_string(&registry.gather())
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot encode the metrics");
            String::new()
        })
}

/// The `GET /metrics` response carrying `text` (a [`render`]ed registry).
pub fn exposition(text: String) -> Response {
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

/// The `reason` label of a message dead-lettered for what it is: `empty`,
/// `invalid_json` (not JSON at all) or `invalid_event` (JSON, but not the
/// event the topic carries, or one that fails validation).
pub fn dead_letter_reason(payload: Option<&[u8]>) -> &'static str {
    match payload {
        None | Some([]) => "empty",
        Some(bytes) if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_err() => {
            "invalid_json"
        }
        Some(_) => "invalid_event",
    }
}

/// The reasons [`dead_letter_reason`] gives, to pre-initialise a counter.
pub const DEAD_LETTER_REASONS: [&str; 3] = ["empty", "invalid_json", "invalid_event"];

/// `kafka_consumer_lag_messages{group,topic,partition}`: how many messages
/// each partition a consumer reads holds beyond the consumer's position,
/// as librdkafka's statistics say every [`STATISTICS_INTERVAL_MS`].
#[derive(Clone)]
pub struct ConsumerLag {
    gauge: IntGaugeVec,
}

impl ConsumerLag {
    /// The gauge, registered in `registry`.
    pub fn register(registry: &Registry) -> Self {
        Self {
            gauge: gauge_vec(
                registry,
                "kafka_consumer_lag_messages",
                "Messages on each partition beyond the consumer's position (librdkafka statistics: committed, else stored, else read offset, to the end).",
                &["group", "topic", "partition"],
            ),
        }
    }

    /// A recorder for the consumer `config` makes: turns librdkafka's
    /// statistics on in `config`, and labels with its `group.id`.
    pub fn recorder(&self, config: &mut ClientConfig) -> LagRecorder {
        config.set("statistics.interval.ms", STATISTICS_INTERVAL_MS);
        LagRecorder {
            gauge: self.gauge.clone(),
            group: config.get("group.id").unwrap_or_default().to_owned(),
            seen: Mutex::default(),
        }
    }

    /// A stream consumer of `config` whose lag this gauge reports.
    ///
    /// # Errors
    /// When librdkafka rejects the configuration.
    pub fn stream_consumer(&self, mut config: ClientConfig) -> Result<LagConsumer, KafkaError> {
        let context = LagContext(self.recorder(&mut config));
        config.create_with_context(context)
    }
}

/// Sets one consumer's series of [`ConsumerLag`] from its statistics.
pub struct LagRecorder {
    gauge: IntGaugeVec,
    group: String,
    /// The (topic, partition) series set by the last statistics.
    seen: Mutex<HashSet<(String, i32)>>,
}

impl LagRecorder {
    /// Sets the lag of every partition assigned to the consumer, and
    /// removes the series of partitions it no longer reads. A partition
    /// whose lag librdkafka does not know yet is left out.
    pub fn record(&self, statistics: &Statistics) {
        let mut now = HashSet::new();
        for (topic, t) in &statistics.topics {
            for p in t.partitions.values() {
                if p.partition < 0 || !p.desired {
                    continue;
                }
                let Some(lag) = partition_lag(p) else {
                    continue;
                };
                let partition = p.partition.to_string();
                self.gauge
                    .with_label_values(&[self.group.as_str(), topic, &partition])
                    .set(lag);
                now.insert((topic.clone(), p.partition));
            }
        }
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (topic, partition) in seen.difference(&now) {
            let partition = partition.to_string();
            let _ = self
                .gauge
                .remove_label_values(&[self.group.as_str(), topic, &partition]);
        }
        *seen = now;
    }
}

/// A partition's lag: librdkafka's `consumer_lag` (from the committed
/// offset, what Kafka's own tools show), else `consumer_lag_stored` (from
/// the stored offset, before the first commit), else, for a reader that
/// neither stores nor commits (a tail), from the offset it read up to or
/// fetches from. `None` while unknown (librdkafka's -1).
fn partition_lag(p: &rdkafka::statistics::Partition) -> Option<i64> {
    if p.consumer_lag >= 0 {
        return Some(p.consumer_lag);
    }
    if p.consumer_lag_stored >= 0 {
        return Some(p.consumer_lag_stored);
    }
    let end = if p.ls_offset >= 0 {
        p.ls_offset
    } else {
        p.hi_offset
    };
    let position = [p.app_offset, p.next_offset]
        .into_iter()
        .find(|o| *o >= 0)?;
    (end >= 0).then(|| (end - position).max(0))
}

/// A consumer context that only reports lag (for consumers without a
/// context of their own).
pub struct LagContext(LagRecorder);

impl ClientContext for LagContext {
    fn stats(&self, statistics: Statistics) {
        self.0.record(&statistics);
    }
}

impl ConsumerContext for LagContext {}

/// A stream consumer that reports its lag.
pub type LagConsumer = StreamConsumer<LagContext>;

#[cfg(test)]
mod tests {
    use super::*;

    /// librdkafka's statistics JSON of a consumer, trimmed to what matters.
    fn statistics(partitions: &str) -> Statistics {
        let json = format!(
            r#"{{"name":"c#consumer-1","client_id":"c","type":"consumer","ts":1,"time":1,"age":1,
            "replyq":0,"msg_cnt":0,"msg_size":0,"msg_max":0,"msg_size_max":0,"simple_cnt":0,
            "metadata_cache_cnt":1,"brokers":{{}},
            "topics":{{"checkout.requests":{{"topic":"checkout.requests","age":1,"metadata_age":1,
            "batchsize":{{"min":0,"max":0,"avg":0,"sum":0,"stddev":0,"p50":0,"p75":0,"p90":0,"p95":0,"p99":0,"p99_99":0,"outofrange":0,"hdrsize":0,"cnt":0}},
            "batchcnt":{{"min":0,"max":0,"avg":0,"sum":0,"stddev":0,"p50":0,"p75":0,"p90":0,"p95":0,"p99":0,"p99_99":0,"outofrange":0,"hdrsize":0,"cnt":0}},
            "partitions":{{{partitions}}}}}}},
            "tx":0,"tx_bytes":0,"rx":0,"rx_bytes":0,"txmsgs":0,"txmsg_bytes":0,"rxmsgs":0,"rxmsg_bytes":0}}"#
        );
        serde_json::from_str(&json).expect("statistics JSON")
    }

    fn partition(p: i32, desired: bool, offsets: [i64; 6]) -> String {
        let [app, next, committed, hi, lag, lag_stored] = offsets;
        format!(
            r#""{p}":{{"partition":{p},"broker":1,"leader":1,"desired":{desired},"unknown":false,
            "msgq_cnt":0,"msgq_bytes":0,"xmit_msgq_cnt":0,"xmit_msgq_bytes":0,"fetchq_cnt":0,
            "fetchq_size":0,"fetch_state":"active","query_offset":-1001,"next_offset":{next},
            "app_offset":{app},"stored_offset":-1001,"committed_offset":{committed},"eof_offset":-1001,
            "lo_offset":0,"hi_offset":{hi},"ls_offset":{hi},"consumer_lag":{lag},
            "consumer_lag_stored":{lag_stored},"txmsgs":0,"txbytes":0,"rxmsgs":0,"rxbytes":0,
            "msgs":0,"rx_ver_drops":0,"msgs_inflight":0,"next_ack_seq":0,"next_err_seq":0,
            "acked_msgid":0}}"#
        )
    }

    #[test]
    fn lag_is_set_per_partition_and_unknown_or_unassigned_ones_are_left_out() {
        let registry = registry();
        let lag = ConsumerLag::register(&registry);
        let mut config = ClientConfig::new();
        config.set("group.id", "g1");
        let recorder = lag.recorder(&mut config);
        assert_eq!(
            config.get("statistics.interval.ms"),
            Some(STATISTICS_INTERVAL_MS)
        );
        let parts = [
            // committed lag known
            partition(0, true, [10, 10, 7, 12, 5, -1]),
            // a tail: nothing stored or committed, read up to 8 of 20
            partition(1, true, [8, 9, -1001, 20, -1, -1]),
            // nothing known yet
            partition(2, true, [-1001, -1001, -1001, -1, -1, -1]),
            // not assigned any more
            partition(3, false, [1, 1, 1, 9, 8, 8]),
            // librdkafka's internal partition
            partition(-1, true, [1, 1, 1, 9, 8, 8]),
        ];
        recorder.record(&statistics(&parts.join(",")));
        let text = render(&registry);
        assert!(
            text.contains("kafka_consumer_lag_messages{group=\"g1\",partition=\"0\",topic=\"checkout.requests\"} 5\n"),
            "{text}"
        );
        assert!(
            text.contains("kafka_consumer_lag_messages{group=\"g1\",partition=\"1\",topic=\"checkout.requests\"} 12\n"),
            "{text}"
        );
        for p in ["2", "3", "-1"] {
            assert!(
                !text.contains(&format!("partition=\"{p}\"")),
                "partition {p}: {text}"
            );
        }

        // Partition 0 revoked: its series goes.
        recorder.record(&statistics(&partition(
            1,
            true,
            [20, 20, -1001, 20, -1, -1],
        )));
        let text = render(&registry);
        assert!(!text.contains("partition=\"0\""), "{text}");
        assert!(
            text.contains("kafka_consumer_lag_messages{group=\"g1\",partition=\"1\",topic=\"checkout.requests\"} 0\n"),
            "{text}"
        );
    }

    #[test]
    fn a_registry_holds_the_process_metrics() {
        let text = render(&registry());
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_virtual_memory_bytes",
            "process_start_time_seconds",
        ] {
            assert!(text.contains(&format!("\n{name} ")), "{name}: {text}");
        }
    }

    #[test]
    fn two_registries_do_not_share_metrics() {
        let (a, b) = (registry(), registry());
        counter(&a, "x_total", "x").inc();
        counter(&b, "x_total", "x");
        assert!(render(&a).contains("x_total 1\n"));
        assert!(render(&b).contains("x_total 0\n"));
    }

    #[test]
    fn dead_letter_reasons_are_a_bounded_set() {
        assert_eq!(dead_letter_reason(None), "empty");
        assert_eq!(dead_letter_reason(Some(b"")), "empty");
        assert_eq!(dead_letter_reason(Some(b"not json {")), "invalid_json");
        assert_eq!(dead_letter_reason(Some(br#"{"a":1}"#)), "invalid_event");
        for r in [
            dead_letter_reason(None),
            dead_letter_reason(Some(b"{")),
            dead_letter_reason(Some(b"1")),
        ] {
            assert!(DEAD_LETTER_REASONS.contains(&r));
        }
    }
}
