//! Hand-written Prometheus counters, rendered as text by `GET /metrics`.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::outcome::Outcome;

/// Counters shared by the consumer and the HTTP API.
#[derive(Debug, Default)]
pub struct Metrics {
    outcomes: [AtomicU64; Outcome::LABELS.len()],
    credited_cents: AtomicU64,
    batches: AtomicU64,
    batch_errors: AtomicU64,
    consumer_retries: AtomicU64,
    /// Why the consumer waits to retry its batch, while it does.
    consumer_waiting: Mutex<Option<String>>,
    checkout_requests_sent: AtomicU64,
    checkout_requests_unavailable: AtomicU64,
    http_responses: [AtomicU64; 5],
}

impl Metrics {
    pub fn outcome(&self, outcome: &Outcome) {
        if let Some(i) = Outcome::LABELS.iter().position(|l| *l == outcome.label()) {
            self.outcomes[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many messages had this outcome label so far.
    pub fn outcome_count(&self, label: &str) -> u64 {
        Outcome::LABELS
            .iter()
            .position(|l| *l == label)
            .map_or(0, |i| self.outcomes[i].load(Ordering::Relaxed))
    }

    pub fn credited(&self, cents: i64) {
        self.credited_cents
            .fetch_add(u64::try_from(cents).unwrap_or(0), Ordering::Relaxed);
    }

    pub fn batch(&self) {
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    pub fn batch_error(&self) {
        self.batch_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// The batch in hand could not be handled now (the database or the
    /// dead-letter topic cannot take it): the consumer waits and retries it.
    pub fn consumer_waiting(&self, reason: &str) {
        self.consumer_retries.fetch_add(1, Ordering::Relaxed);
        *self.waiting_lock() = Some(reason.to_owned());
    }

    /// The consumer moves on again.
    pub fn consumer_moving(&self) {
        *self.waiting_lock() = None;
    }

    /// Why the consumer waits to retry its batch, if it does (for `/healthz`).
    pub fn waiting(&self) -> Option<String> {
        self.waiting_lock().clone()
    }

    fn waiting_lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.consumer_waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn checkout_request_sent(&self) {
        self.checkout_requests_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn checkout_request_unavailable(&self) {
        self.checkout_requests_unavailable
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn http_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.http_responses[class].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        out.push_str("# HELP blazing_sun_checkout_finished_total checkout.finished messages handled, by outcome.\n");
        out.push_str("# TYPE blazing_sun_checkout_finished_total counter\n");
        for (label, count) in Outcome::LABELS.iter().zip(&self.outcomes) {
            let _ = writeln!(
                out,
                "blazing_sun_checkout_finished_total{{outcome=\"{label}\"}} {}",
                get(count)
            );
        }
        let mut counter = |name: &str, help: &str, value: u64| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
            );
        };
        counter(
            "blazing_sun_credited_cents_total",
            "Minor units credited, all currencies.",
            get(&self.credited_cents),
        );
        counter(
            "blazing_sun_consumer_batches_total",
            "Batches committed to the database.",
            get(&self.batches),
        );
        counter(
            "blazing_sun_consumer_batch_errors_total",
            "Batches that failed and were retried.",
            get(&self.batch_errors),
        );
        counter(
            "blazing_sun_consumer_retries_total",
            "Attempts at a batch that the database or the dead-letter topic could not take now (the batch waits and is retried, never skipped).",
            get(&self.consumer_retries),
        );
        counter(
            "blazing_sun_checkout_requests_sent_total",
            "Checkout requests acknowledged by the broker.",
            get(&self.checkout_requests_sent),
        );
        counter(
            "blazing_sun_checkout_requests_unavailable_total",
            "Checkout requests the broker did not take (503).",
            get(&self.checkout_requests_unavailable),
        );
        let waiting = u64::from(self.waiting().is_some());
        let _ = writeln!(
            out,
            "# HELP blazing_sun_consumer_waiting 1 while the consumer waits to retry its batch.\n\
             # TYPE blazing_sun_consumer_waiting gauge\n\
             blazing_sun_consumer_waiting {waiting}"
        );
        out.push_str("# HELP blazing_sun_http_responses_total HTTP responses, by status class.\n");
        out.push_str("# TYPE blazing_sun_http_responses_total counter\n");
        for (i, count) in self.http_responses.iter().enumerate() {
            let _ = writeln!(
                out,
                "blazing_sun_http_responses_total{{class=\"{}xx\"}} {}",
                i + 1,
                get(count)
            );
        }
        out
    }
}
