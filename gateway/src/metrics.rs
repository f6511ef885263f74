//! The gateway's Prometheus metrics (the contract's
//! [`checkout_contract::metrics`] plumbing), rendered by the admin port's
//! `/metrics` (see [`crate::admin`]): RPC latencies by method and code,
//! open streams, index size, tail lag per partition, broker reachability,
//! the status tail's consumer lag, and the process metrics.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use checkout_contract::metrics::{self as m, ConsumerLag, LATENCY_BUCKETS};
use prometheus::{HistogramVec, IntGauge, IntGaugeVec, Registry};

/// The methods of the checkout service: any other path is counted as `other`
/// (an unauthenticated caller chooses the path, the label stays bounded).
pub const METHODS: [&str; 3] = ["StartCheckout", "WatchCheckout", "GetCheckout"];

/// Where the tail is on one partition of `checkout.finished`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PartitionLag {
    /// The next offset the tail will read.
    pub next: i64,
    /// The partition's high watermark at the last probe.
    pub high: i64,
}

/// Every metric of one gateway, in its own registry.
pub struct Metrics {
    registry: Registry,
    rpc: HistogramVec,
    open_streams: IntGauge,
    index_entries: IntGauge,
    broker_up: IntGauge,
    tail_lag: IntGaugeVec,
    tail: Mutex<BTreeMap<i32, PartitionLag>>,
    consumer_lag: ConsumerLag,
}

impl Default for Metrics {
    fn default() -> Self {
        let registry = m::registry();
        let rpc = m::histogram_vec(
            &registry,
            "gateway_rpc_duration_seconds",
            "gRPC calls by method and status code.",
            &["method", "code"],
            LATENCY_BUCKETS,
        );
        for method in METHODS {
            rpc.with_label_values(&[method, "OK"]);
        }
        Self {
            rpc,
            open_streams: m::gauge(
                &registry,
                "gateway_open_streams",
                "WatchCheckout streams open now.",
            ),
            index_entries: m::gauge(
                &registry,
                "gateway_index_entries",
                "Checkouts held in the status index.",
            ),
            broker_up: m::gauge(
                &registry,
                "gateway_broker_up",
                "1 when the last broker probe succeeded.",
            ),
            tail_lag: m::gauge_vec(
                &registry,
                "gateway_tail_lag_messages",
                "Messages on checkout.finished not yet read by the status tail.",
                &["partition"],
            ),
            tail: Mutex::default(),
            consumer_lag: ConsumerLag::register(&registry),
            registry,
        }
    }
}

impl Metrics {
    /// Records one finished call of `method` (`StartCheckout`, ...) ending with `code`.
    pub fn record_rpc(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        let method = METHODS
            .into_iter()
            .find(|known| *known == method)
            .unwrap_or("other");
        self.rpc
            .with_label_values(&[method, code_name(code)])
            .observe(elapsed.as_secs_f64());
    }

    /// A WatchCheckout stream opened; the guard closes it when dropped.
    pub fn stream_opened(self: &Arc<Self>) -> StreamGuard {
        self.open_streams.inc();
        StreamGuard(Arc::clone(self))
    }

    pub fn open_streams(&self) -> i64 {
        self.open_streams.get()
    }

    /// The tail read up to `next` on `partition`.
    pub fn tail_read(&self, partition: i32, next: i64) {
        let mut tail = self.tail_lock();
        let p = tail.entry(partition).or_default();
        p.next = p.next.max(next);
        p.high = p.high.max(next);
    }

    /// The high watermark of `partition` at the last probe.
    pub fn tail_high(&self, partition: i32, high: i64) {
        self.tail_lock().entry(partition).or_default().high = high;
    }

    fn tail_lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<i32, PartitionLag>> {
        self.tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_broker_up(&self, up: bool) {
        self.broker_up.set(i64::from(up));
    }

    /// `kafka_consumer_lag_messages`, for the status tail's consumer.
    pub fn consumer_lag(&self) -> &ConsumerLag {
        &self.consumer_lag
    }

    /// The Prometheus text exposition of every metric, with the index's
    /// size now.
    pub fn render(&self, index_entries: usize) -> String {
        self.index_entries
            .set(i64::try_from(index_entries).unwrap_or(i64::MAX));
        for (partition, lag) in self.tail_lock().iter() {
            self.tail_lag
                .with_label_values(&[&partition.to_string()])
                .set((lag.high - lag.next).max(0));
        }
        m::render(&self.registry)
    }
}

/// Decrements the open-streams gauge when the stream ends, however it ends.
pub struct StreamGuard(Arc<Metrics>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open_streams.dec();
    }
}

/// The canonical upper-case name of a gRPC code.
pub fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Arc::new(Metrics::default());
        m.record_rpc("StartCheckout", tonic::Code::Ok, Duration::from_millis(20));
        m.record_rpc(
            "StartCheckout",
            tonic::Code::InvalidArgument,
            Duration::from_millis(1),
        );
        m.record_rpc("Made-Up", tonic::Code::Unauthenticated, Duration::ZERO);
        m.tail_read(2, 10);
        m.tail_high(2, 15);
        m.set_broker_up(true);
        let guard = m.stream_opened();
        let text = m.render(4);
        drop(guard);
        for line in [
            "gateway_rpc_duration_seconds_count{code=\"OK\",method=\"StartCheckout\"} 1",
            "gateway_rpc_duration_seconds_bucket{code=\"OK\",method=\"StartCheckout\",le=\"0.025\"} 1",
            "gateway_rpc_duration_seconds_bucket{code=\"OK\",method=\"StartCheckout\",le=\"0.01\"} 0",
            "gateway_rpc_duration_seconds_count{code=\"INVALID_ARGUMENT\",method=\"StartCheckout\"} 1",
            "gateway_rpc_duration_seconds_count{code=\"UNAUTHENTICATED\",method=\"other\"} 1",
            "gateway_rpc_duration_seconds_count{code=\"OK\",method=\"GetCheckout\"} 0",
            "gateway_open_streams 1",
            "gateway_index_entries 4",
            "gateway_broker_up 1",
            "gateway_tail_lag_messages{partition=\"2\"} 5",
            "# TYPE gateway_rpc_duration_seconds histogram",
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "{line} missing from\n{text}"
            );
        }
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert!(!text.contains("Made-Up"), "{text}");
        assert_eq!(m.open_streams(), 0);
    }
}
