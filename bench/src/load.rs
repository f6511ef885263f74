//! The closed-loop load generator: `concurrency` tasks each call the target
//! back to back until the cell's time is up; every call's latency is kept,
//! so percentiles are exact, not bucketed.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Serialize;

/// What one cell measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Sample {
    pub ok: u64,
    pub errors: u64,
    /// Successful calls per second.
    pub per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    /// The first error seen, if any.
    pub first_error: Option<String>,
}

impl Sample {
    /// Percentiles of `latencies_us` (unsorted) over `elapsed`.
    pub fn from_latencies(
        mut latencies_us: Vec<u64>,
        errors: u64,
        elapsed: Duration,
        first_error: Option<String>,
    ) -> Self {
        latencies_us.sort_unstable();
        let pick = |q: f64| -> f64 {
            if latencies_us.is_empty() {
                return 0.0;
            }
            let i =
                ((latencies_us.len() as f64 * q).ceil() as usize).clamp(1, latencies_us.len()) - 1;
            latencies_us[i] as f64 / 1000.0
        };
        let ok = latencies_us.len() as u64;
        Self {
            ok,
            errors,
            per_sec: ok as f64 / elapsed.as_secs_f64().max(1e-9),
            p50_ms: pick(0.50),
            p99_ms: pick(0.99),
            p999_ms: pick(0.999),
            first_error,
        }
    }
}

/// Runs `call` from `concurrency` tasks for `duration`; each call's whole
/// time is its latency.
pub async fn closed_loop<F, Fut>(concurrency: usize, duration: Duration, call: F) -> Sample
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let call = Arc::new(call);
    closed_loop_timed(concurrency, duration, move || {
        let call = Arc::clone(&call);
        async move {
            let t = Instant::now();
            call().await.map(|()| t.elapsed())
        }
    })
    .await
}

/// Like [`closed_loop`], but each call reports the latency of its measured
/// part itself (set-up steps of a call are not counted).
pub async fn closed_loop_timed<F, Fut>(concurrency: usize, duration: Duration, call: F) -> Sample
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Duration, String>> + Send + 'static,
{
    record_timed(concurrency, duration, call).await.sample()
}

/// Every latency of a run, before percentiles: runs of one target made at
/// different moments can be merged (interleaved A B B A measurements).
#[derive(Debug, Default)]
pub struct Recorded {
    pub latencies_us: Vec<u64>,
    pub errors: u64,
    pub elapsed: Duration,
    pub first_error: Option<String>,
}

impl Recorded {
    /// Adds `other`'s calls and time to these.
    pub fn merge(&mut self, other: Recorded) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }

    pub fn sample(self) -> Sample {
        Sample::from_latencies(
            self.latencies_us,
            self.errors,
            self.elapsed,
            self.first_error,
        )
    }
}

/// [`closed_loop`] without the percentiles.
pub async fn record<F, Fut>(concurrency: usize, duration: Duration, call: F) -> Recorded
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let call = Arc::new(call);
    record_timed(concurrency, duration, move || {
        let call = Arc::clone(&call);
        async move {
            let t = Instant::now();
            call().await.map(|()| t.elapsed())
        }
    })
    .await
}

/// [`closed_loop_timed`] without the percentiles.
pub async fn record_timed<F, Fut>(concurrency: usize, duration: Duration, call: F) -> Recorded
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Duration, String>> + Send + 'static,
{
    let call = Arc::new(call);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let call = Arc::clone(&call);
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(1024);
            let mut errors = 0u64;
            let mut first_error = None;
            while Instant::now() < deadline {
                match call().await {
                    Ok(took) => latencies.push(took.as_micros() as u64),
                    Err(e) => {
                        errors += 1;
                        first_error.get_or_insert(e);
                    }
                }
            }
            (latencies, errors, first_error)
        });
    }
    let mut all = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        if let Ok((l, e, f)) = joined {
            all.extend(l);
            errors += e;
            if first_error.is_none() {
                first_error = f;
            }
        }
    }
    // The last calls may finish after the deadline: count the real elapsed time.
    Recorded {
        latencies_us: all,
        errors,
        elapsed: started.elapsed(),
        first_error,
    }
}
