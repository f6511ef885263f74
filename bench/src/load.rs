//! The load generators. Closed loop ([`closed_loop`], [`record`]):
//! `concurrency` tasks each call the target back to back until the cell's
//! time is up. Open loop ([`record_open`]): calls start on a fixed schedule
//! whatever the earlier ones are doing, and each latency counts from the
//! call's scheduled time, so queueing delay is measured, not hidden
//! (coordinated omission). Every call's latency is kept, so percentiles are
//! exact, not bucketed.

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
    /// Open loop only: calls the schedule asked for.
    pub scheduled: u64,
    /// Open loop only: scheduled calls not sent because [`MAX_OUTSTANDING`]
    /// calls were still unanswered.
    pub dropped: u64,
    /// Open loop only: calls sent more than [`LATE_AFTER`] after their
    /// scheduled time (the generator itself fell behind; their latency
    /// still counts from the schedule).
    pub late: u64,
}

impl Recorded {
    /// Adds `other`'s calls and time to these.
    pub fn merge(&mut self, other: Recorded) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        self.elapsed += other.elapsed;
        self.scheduled += other.scheduled;
        self.dropped += other.dropped;
        self.late += other.late;
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
        ..Recorded::default()
    }
}

/// Most calls of an open loop left unanswered at once; a scheduled call
/// finding this many outstanding is dropped and counted, so a stalled
/// target cannot make the generator grow without bound.
pub const MAX_OUTSTANDING: usize = 4096;

/// A call that starts later than this after its scheduled time is counted
/// as late (the timer wakes about every millisecond, so calls due in the
/// same millisecond start together and are not late).
pub const LATE_AFTER: Duration = Duration::from_millis(5);

/// How long an open loop waits, after its schedule ends, for the calls
/// still unanswered; the ones left are counted as errors.
const OPEN_DRAIN: Duration = Duration::from_secs(30);

/// The open loop: `rate` calls per second on a fixed schedule for
/// `duration` (call `k` is due at `k / rate` s), each sent at its time
/// whatever earlier calls are doing, at most [`MAX_OUTSTANDING`] at once.
/// A call's latency runs from its scheduled time to its answer.
pub async fn record_open<F, Fut>(rate: f64, duration: Duration, call: F) -> Recorded
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let interval = Duration::from_secs_f64(1.0 / rate.max(1e-9));
    let calls = (rate * duration.as_secs_f64()).floor().max(1.0) as u64;
    let outstanding = Arc::new(tokio::sync::Semaphore::new(MAX_OUTSTANDING));
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel();
    let started = Instant::now();
    let (mut dropped, mut late) = (0u64, 0u64);
    for k in 0..calls {
        let due = started + interval.mul_f64(k as f64);
        // Behind schedule: no sleep, the call goes at once (and its latency
        // still counts from `due`).
        tokio::time::sleep_until(due.into()).await;
        if due.elapsed() > LATE_AFTER {
            late += 1;
        }
        let Ok(permit) = Arc::clone(&outstanding).try_acquire_owned() else {
            dropped += 1;
            continue;
        };
        let (call, done_tx) = (call(), done_tx.clone());
        tokio::spawn(async move {
            let result = call.await;
            let took = due.elapsed();
            drop(permit);
            let _ = done_tx.send(result.map(|()| took));
        });
    }
    drop(done_tx);
    let mut recorded = Recorded {
        scheduled: calls,
        dropped,
        late,
        ..Recorded::default()
    };
    let drain_until = tokio::time::Instant::now() + OPEN_DRAIN;
    let mut answered = 0u64;
    while let Ok(Some(result)) = tokio::time::timeout_at(drain_until, done_rx.recv()).await {
        answered += 1;
        match result {
            Ok(took) => recorded.latencies_us.push(took.as_micros() as u64),
            Err(e) => {
                recorded.errors += 1;
                recorded.first_error.get_or_insert(e);
            }
        }
    }
    let unanswered = calls - dropped - answered;
    if unanswered > 0 {
        recorded.errors += unanswered;
        recorded.first_error.get_or_insert(format!(
            "{unanswered} calls unanswered {OPEN_DRAIN:?} after the schedule ended"
        ));
    }
    recorded.elapsed = started.elapsed();
    recorded
}

/// One load level: a closed loop of `concurrency` callers, or an open loop
/// at a fixed rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    Closed(usize),
    Open(f64),
}

impl Load {
    /// `c=16` or `500/s`, for tables.
    pub fn label(self) -> String {
        match self {
            Load::Closed(c) => format!("c={c}"),
            Load::Open(rate) => format!("{rate:.0}/s"),
        }
    }

    /// [`record`] or [`record_open`] for `duration`.
    pub async fn record<F, Fut>(self, duration: Duration, call: F) -> Recorded
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        match self {
            Load::Closed(concurrency) => record(concurrency, duration, call).await,
            Load::Open(rate) => record_open(rate, duration, call).await,
        }
    }
}

/// One `--rate` entry: calls per second, or a share of the capacity the
/// closed loop measured just before in the same run (`50%`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Rate {
    PerSec(f64),
    OfCapacity(f64),
}

impl Rate {
    /// `500` or `50%` (a positive number either way).
    ///
    /// # Errors
    /// Anything else.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let raw = raw.trim();
        let (number, share) = match raw.strip_suffix('%') {
            Some(n) => (n, true),
            None => (raw, false),
        };
        match number.parse::<f64>() {
            Ok(x) if x.is_finite() && x > 0.0 && share => Ok(Rate::OfCapacity(x / 100.0)),
            Ok(x) if x.is_finite() && x > 0.0 => Ok(Rate::PerSec(x)),
            _ => Err(format!(
                "{raw:?}: a rate is calls per second (500) or a share of the closed loop's capacity (50%)"
            )),
        }
    }
}
