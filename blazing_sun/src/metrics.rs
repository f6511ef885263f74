//! blazing_sun's Prometheus metrics (the contract's
//! [`checkout_contract::metrics`] plumbing), rendered by `GET /metrics`:
//! `checkout.finished` messages by outcome, credits, batches and how long
//! each took to apply, retries while the database cannot take a batch,
//! dead letters by reason, checkout requests sent, HTTP responses, the
//! consumer's lag and the process metrics.

use std::sync::Mutex;
use std::time::Duration;

use checkout_contract::metrics::{self as m, ConsumerLag, DEAD_LETTER_REASONS};
use prometheus::{Histogram, IntCounter, IntCounterVec, IntGauge, Registry};

use crate::outcome::Outcome;

/// The dead-letter reason of an event the database refuses for good (the
/// others are the contract's [`DEAD_LETTER_REASONS`]).
pub const REJECTED_BY_DATABASE: &str = "rejected_by_database";

/// Buckets of one batch's database transaction, in seconds.
const CREDIT_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Every metric of one blazing_sun, shared by the consumer and the HTTP API.
pub struct Metrics {
    registry: Registry,
    outcomes: IntCounterVec,
    credited_cents: IntCounter,
    batches: IntCounter,
    batch_errors: IntCounter,
    consumer_retries: IntCounter,
    consumer_waiting: IntGauge,
    /// Why the consumer waits to retry its batch, while it does (for `/healthz`).
    waiting_reason: Mutex<Option<String>>,
    checkout_requests_sent: IntCounter,
    checkout_requests_unavailable: IntCounter,
    http_responses: IntCounterVec,
    credit_duration: Histogram,
    dead_lettered: IntCounterVec,
    consumer_lag: ConsumerLag,
}

impl Default for Metrics {
    fn default() -> Self {
        let r = m::registry();
        let this = Self {
            outcomes: m::counter_vec(
                &r,
                "blazing_sun_checkout_finished_total",
                "checkout.finished messages handled, by outcome.",
                &["outcome"],
            ),
            credited_cents: m::counter(
                &r,
                "blazing_sun_credited_cents_total",
                "Minor units credited, all currencies.",
            ),
            batches: m::counter(
                &r,
                "blazing_sun_consumer_batches_total",
                "Batches committed to the database.",
            ),
            batch_errors: m::counter(
                &r,
                "blazing_sun_consumer_batch_errors_total",
                "Batches that failed and were retried.",
            ),
            consumer_retries: m::counter(
                &r,
                "blazing_sun_consumer_retries_total",
                "Attempts at a batch that the database or the dead-letter topic could not take now (the batch waits and is retried, never skipped).",
            ),
            consumer_waiting: m::gauge(
                &r,
                "blazing_sun_consumer_waiting",
                "1 while the consumer waits to retry its batch.",
            ),
            waiting_reason: Mutex::default(),
            checkout_requests_sent: m::counter(
                &r,
                "blazing_sun_checkout_requests_sent_total",
                "Checkout requests acknowledged by the broker.",
            ),
            checkout_requests_unavailable: m::counter(
                &r,
                "blazing_sun_checkout_requests_unavailable_total",
                "Checkout requests the broker did not take (503).",
            ),
            http_responses: m::counter_vec(
                &r,
                "blazing_sun_http_responses_total",
                "HTTP responses, by status class.",
                &["class"],
            ),
            credit_duration: m::histogram(
                &r,
                "blazing_sun_credit_duration_seconds",
                "Time to apply one batch of checkout.finished to the store, commit included.",
                CREDIT_BUCKETS,
            ),
            dead_lettered: m::counter_vec(
                &r,
                "blazing_sun_dead_lettered_total",
                "checkout.finished messages copied to the dead-letter topic, by reason.",
                &["reason"],
            ),
            consumer_lag: ConsumerLag::register(&r),
            registry: r,
        };
        // Every known series exists from the start, at 0.
        for label in Outcome::LABELS {
            this.outcomes.with_label_values(&[label]);
        }
        for class in CLASSES {
            this.http_responses.with_label_values(&[class]);
        }
        for reason in DEAD_LETTER_REASONS
            .into_iter()
            .chain([REJECTED_BY_DATABASE])
        {
            this.dead_lettered.with_label_values(&[reason]);
        }
        this
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("waiting", &self.waiting())
            .finish_non_exhaustive()
    }
}

/// The `class` label of HTTP responses.
const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

impl Metrics {
    pub fn outcome(&self, outcome: &Outcome) {
        self.outcomes.with_label_values(&[outcome.label()]).inc();
    }

    /// How many messages had this outcome label so far.
    pub fn outcome_count(&self, label: &str) -> u64 {
        if Outcome::LABELS.contains(&label) {
            self.outcomes.with_label_values(&[label]).get()
        } else {
            0
        }
    }

    pub fn credited(&self, cents: i64) {
        self.credited_cents
            .inc_by(u64::try_from(cents).unwrap_or(0));
    }

    pub fn batch(&self) {
        self.batches.inc();
    }

    pub fn batch_error(&self) {
        self.batch_errors.inc();
    }

    /// One batch was applied to the store (committed) in `elapsed`.
    pub fn credit_duration(&self, elapsed: Duration) {
        self.credit_duration.observe(elapsed.as_secs_f64());
    }

    /// A message was copied to the dead-letter topic: `reason` is one of the
    /// contract's [`DEAD_LETTER_REASONS`] or [`REJECTED_BY_DATABASE`].
    pub fn dead_lettered(&self, reason: &str) {
        self.dead_lettered.with_label_values(&[reason]).inc();
    }

    /// The batch in hand could not be handled now (the database or the
    /// dead-letter topic cannot take it): the consumer waits and retries it.
    pub fn consumer_waiting(&self, reason: &str) {
        self.consumer_retries.inc();
        self.consumer_waiting.set(1);
        *self.waiting_lock() = Some(reason.to_owned());
    }

    /// The consumer moves on again.
    pub fn consumer_moving(&self) {
        self.consumer_waiting.set(0);
        *self.waiting_lock() = None;
    }

    /// Why the consumer waits to retry its batch, if it does (for `/healthz`).
    pub fn waiting(&self) -> Option<String> {
        self.waiting_lock().clone()
    }

    fn waiting_lock(&self) -> std::sync::MutexGuard<'_, Option<String>> {
        self.waiting_reason
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn checkout_request_sent(&self) {
        self.checkout_requests_sent.inc();
    }

    pub fn checkout_request_unavailable(&self) {
        self.checkout_requests_unavailable.inc();
    }

    pub fn http_response(&self, status: u16) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.http_responses
            .with_label_values(&[CLASSES[class]])
            .inc();
    }

    /// `kafka_consumer_lag_messages`, for the `checkout.finished` consumer.
    pub fn consumer_lag(&self) -> &ConsumerLag {
        &self.consumer_lag
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        m::render(&self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_renders_with_its_values() {
        let m = Metrics::default();
        m.outcome(&Outcome::Credited { balance_cents: 500 });
        m.outcome(&Outcome::Duplicate);
        m.credited(500);
        m.batch();
        m.batch_error();
        m.credit_duration(Duration::from_millis(3));
        m.dead_lettered("invalid_json");
        m.dead_lettered(REJECTED_BY_DATABASE);
        m.consumer_waiting("database is locked");
        m.checkout_request_sent();
        m.http_response(200);
        m.http_response(503);
        let text = m.render();
        for line in [
            "blazing_sun_checkout_finished_total{outcome=\"credited\"} 1",
            "blazing_sun_checkout_finished_total{outcome=\"duplicate\"} 1",
            "blazing_sun_checkout_finished_total{outcome=\"flagged\"} 0",
            "blazing_sun_credited_cents_total 500",
            "blazing_sun_consumer_batches_total 1",
            "blazing_sun_consumer_batch_errors_total 1",
            "blazing_sun_consumer_retries_total 1",
            "blazing_sun_consumer_waiting 1",
            "blazing_sun_checkout_requests_sent_total 1",
            "blazing_sun_checkout_requests_unavailable_total 0",
            "blazing_sun_http_responses_total{class=\"2xx\"} 1",
            "blazing_sun_http_responses_total{class=\"5xx\"} 1",
            "blazing_sun_http_responses_total{class=\"4xx\"} 0",
            "blazing_sun_credit_duration_seconds_count 1",
            "blazing_sun_credit_duration_seconds_bucket{le=\"0.0025\"} 0",
            "blazing_sun_credit_duration_seconds_bucket{le=\"0.005\"} 1",
            "blazing_sun_dead_lettered_total{reason=\"invalid_json\"} 1",
            "blazing_sun_dead_lettered_total{reason=\"rejected_by_database\"} 1",
            "blazing_sun_dead_lettered_total{reason=\"empty\"} 0",
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "{line} missing from\n{text}"
            );
        }
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert_eq!(m.outcome_count("credited"), 1);
        assert_eq!(m.outcome_count("no such outcome"), 0);
        assert_eq!(m.waiting().as_deref(), Some("database is locked"));
        m.consumer_moving();
        assert_eq!(m.waiting(), None);
        assert!(m.render().contains("blazing_sun_consumer_waiting 0\n"));
    }
}
