//! Hand-written Prometheus metrics, rendered by the admin port's `/metrics`
//! (see [`crate::admin`]): RPC counts and latencies by method and code, open
//! streams, index size, tail lag per partition, broker reachability.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Latency histogram bucket bounds, in seconds.
const BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
];

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

/// Where the tail is on one partition of `checkout.finished`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PartitionLag {
    /// The next offset the tail will read.
    pub next: i64,
    /// The partition's high watermark at the last probe.
    pub high: i64,
}

/// All counters of one gateway.
#[derive(Default)]
pub struct Metrics {
    rpcs: Mutex<BTreeMap<(String, &'static str), Histogram>>,
    open_streams: AtomicI64,
    tail: Mutex<BTreeMap<i32, PartitionLag>>,
    broker_up: AtomicI64,
}

impl Metrics {
    /// Records one finished call of `method` (`StartCheckout`, ...) ending with `code`.
    pub fn record_rpc(&self, method: &str, code: tonic::Code, elapsed: Duration) {
        let mut rpcs = self
            .rpcs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let h = rpcs
            .entry((method.to_owned(), code_name(code)))
            .or_default();
        if h.counts.is_empty() {
            h.counts = vec![0; BUCKETS.len()];
        }
        let secs = elapsed.as_secs_f64();
        for (bound, count) in BUCKETS.iter().zip(h.counts.iter_mut()) {
            if secs <= *bound {
                *count += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    /// A WatchCheckout stream opened; the guard closes it when dropped.
    pub fn stream_opened(self: &Arc<Self>) -> StreamGuard {
        self.open_streams.fetch_add(1, Ordering::Relaxed);
        StreamGuard(Arc::clone(self))
    }

    pub fn open_streams(&self) -> i64 {
        self.open_streams.load(Ordering::Relaxed)
    }

    /// The tail read up to `next` on `partition`.
    pub fn tail_read(&self, partition: i32, next: i64) {
        let mut tail = self
            .tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let p = tail.entry(partition).or_default();
        p.next = p.next.max(next);
        p.high = p.high.max(next);
    }

    /// The high watermark of `partition` at the last probe.
    pub fn tail_high(&self, partition: i32, high: i64) {
        let mut tail = self
            .tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        tail.entry(partition).or_default().high = high;
    }

    pub fn set_broker_up(&self, up: bool) {
        self.broker_up.store(i64::from(up), Ordering::Relaxed);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self, index_entries: usize) -> String {
        let mut out = String::new();
        out.push_str("# HELP gateway_rpc_duration_seconds gRPC calls by method and status code.\n");
        out.push_str("# TYPE gateway_rpc_duration_seconds histogram\n");
        let rpcs = self
            .rpcs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for ((method, code), h) in rpcs.iter() {
            let labels = format!("method=\"{method}\",code=\"{code}\"");
            for (bound, count) in BUCKETS.iter().zip(&h.counts) {
                let _ = writeln!(
                    out,
                    "gateway_rpc_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {count}"
                );
            }
            let _ = writeln!(
                out,
                "gateway_rpc_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}",
                h.count
            );
            let _ = writeln!(
                out,
                "gateway_rpc_duration_seconds_sum{{{labels}}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "gateway_rpc_duration_seconds_count{{{labels}}} {}",
                h.count
            );
        }
        drop(rpcs);
        out.push_str("# HELP gateway_open_streams WatchCheckout streams open now.\n# TYPE gateway_open_streams gauge\n");
        let _ = writeln!(out, "gateway_open_streams {}", self.open_streams());
        out.push_str("# HELP gateway_index_entries Checkouts held in the status index.\n# TYPE gateway_index_entries gauge\n");
        let _ = writeln!(out, "gateway_index_entries {index_entries}");
        out.push_str("# HELP gateway_broker_up 1 when the last broker probe succeeded.\n# TYPE gateway_broker_up gauge\n");
        let _ = writeln!(
            out,
            "gateway_broker_up {}",
            self.broker_up.load(Ordering::Relaxed)
        );
        out.push_str("# HELP gateway_tail_lag_messages Messages on checkout.finished not yet read by the status tail.\n");
        out.push_str("# TYPE gateway_tail_lag_messages gauge\n");
        let tail = self
            .tail
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (partition, lag) in tail.iter() {
            let _ = writeln!(
                out,
                "gateway_tail_lag_messages{{partition=\"{partition}\"}} {}",
                (lag.high - lag.next).max(0)
            );
        }
        out
    }
}

/// Decrements the open-streams gauge when the stream ends, however it ends.
pub struct StreamGuard(Arc<Metrics>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.open_streams.fetch_sub(1, Ordering::Relaxed);
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
        m.tail_read(2, 10);
        m.tail_high(2, 15);
        let guard = m.stream_opened();
        let text = m.render(4);
        drop(guard);
        assert!(
            text.contains(
                "gateway_rpc_duration_seconds_count{method=\"StartCheckout\",code=\"OK\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("gateway_rpc_duration_seconds_bucket{method=\"StartCheckout\",code=\"OK\",le=\"0.025\"} 1"), "{text}");
        assert!(text.contains("gateway_rpc_duration_seconds_bucket{method=\"StartCheckout\",code=\"OK\",le=\"0.01\"} 0"), "{text}");
        assert!(text.contains("gateway_open_streams 1"), "{text}");
        assert!(text.contains("gateway_index_entries 4"), "{text}");
        assert!(
            text.contains("gateway_tail_lag_messages{partition=\"2\"} 5"),
            "{text}"
        );
        assert_eq!(m.open_streams(), 0);
    }
}
