//! The checkout service's Prometheus metrics (the contract's
//! [`checkout_contract::metrics`] plumbing), served as `GET /metrics` on
//! the webhook listener (see [`crate::webhook`]):
//!
//! - the worker: `checkout.finished` events published by status (worker,
//!   webhook and reconciliation alike), each request's handling time,
//!   dead-lettered messages by reason ([`crate::checkout_request`]);
//! - Stripe ([`crate::stripe`]): each HTTP call's latency by endpoint and
//!   outcome, retries, calls in flight, the wait for this replica's share of
//!   the rate limit ([`crate::rate_limit`]);
//! - the webhook: deliveries by event type and outcome, signed events
//!   async-stripe could not parse;
//! - reconciliation ([`crate::reconcile`]): what it found;
//! - read at scrape time: the open sessions being tracked
//!   ([`crate::sessions`]), this replica's share of the Stripe rate limit
//!   and the partitions it owns ([`crate::assignment`]);
//! - the lag of the worker's consumer and of the open-session tail, and
//!   the process metrics.

use std::sync::Mutex;
use std::time::Duration;

use checkout_contract::CheckoutStatus;
use checkout_contract::metrics::{self as m, ConsumerLag, DEAD_LETTER_REASONS, LATENCY_BUCKETS};
use prometheus::{
    Gauge, Histogram, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Registry,
};

/// What one reconciliation of a session ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    /// Paid: `success` published.
    Success,
    /// Expired (by Stripe, or by us past its `expires_at`): `failed` published.
    Failed,
    /// Still open or waiting for a delayed payment: asked again later.
    Open,
    /// Stripe or the broker could not answer: tried again next round.
    Error,
}

impl Reconciled {
    const ALL: [Self; 4] = [Self::Success, Self::Failed, Self::Open, Self::Error];

    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Open => "open",
            Self::Error => "error",
        }
    }
}

/// The Stripe API call of one HTTP request (the `endpoint` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    CreateSession,
    RetrieveSession,
    ExpireSession,
    ListSessions,
}

impl Endpoint {
    const ALL: [Self; 4] = [
        Self::CreateSession,
        Self::RetrieveSession,
        Self::ExpireSession,
        Self::ListSessions,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Self::CreateSession => "create_session",
            Self::RetrieveSession => "retrieve_session",
            Self::ExpireSession => "expire_session",
            Self::ListSessions => "list_sessions",
        }
    }
}

/// How one HTTP call to Stripe ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripeOutcome {
    /// 2xx with the expected object.
    Ok,
    /// 4xx other than 429 (and a request that could not be built).
    ClientError,
    /// 429.
    RateLimited,
    /// 5xx, or a 2xx that is not the expected object.
    ServerError,
    /// No answer: a timeout, a refused or broken connection.
    NetworkError,
}

impl StripeOutcome {
    const ALL: [Self; 5] = [
        Self::Ok,
        Self::ClientError,
        Self::RateLimited,
        Self::ServerError,
        Self::NetworkError,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::ClientError => "client_error",
            Self::RateLimited => "rate_limited",
            Self::ServerError => "server_error",
            Self::NetworkError => "network_error",
        }
    }

    /// The outcome of an answer with HTTP `status`.
    pub fn of_status(status: u16) -> Self {
        match status {
            200..=299 => Self::Ok,
            429 => Self::RateLimited,
            500..=599 => Self::ServerError,
            _ => Self::ClientError,
        }
    }
}

/// The Stripe event types the webhook acts on (the `event_type` label;
/// anything else is `other`).
pub const WEBHOOK_EVENT_TYPES: [&str; 4] = [
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
];

/// How one webhook delivery was answered (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Verified, and its outcome published (200).
    Accepted,
    /// Verified, nothing to publish (200).
    Ignored,
    /// Unsigned, badly signed or stale (400).
    BadSignature,
    /// Signed but not parsable by async-stripe: decided from the session (200).
    Unparsed,
    /// The broker or Stripe could not take it now (503): Stripe delivers it again.
    Unavailable,
    /// Not UTF-8, or malformed (400).
    BadRequest,
}

impl Delivery {
    const ALL: [Self; 6] = [
        Self::Accepted,
        Self::Ignored,
        Self::BadSignature,
        Self::Unparsed,
        Self::Unavailable,
        Self::BadRequest,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Ignored => "ignored",
            Self::BadSignature => "bad_signature",
            Self::Unparsed => "unparsed",
            Self::Unavailable => "unavailable",
            Self::BadRequest => "bad_request",
        }
    }
}

/// Every metric of one checkout service, in its own registry.
pub struct Metrics {
    registry: Registry,
    reconciled: IntCounterVec,
    webhook_unparsed: IntCounter,
    open_sessions: IntGauge,
    stripe_rate_limit: Gauge,
    partition_owned: IntGaugeVec,
    published: IntCounterVec,
    request_duration: Histogram,
    stripe_duration: HistogramVec,
    stripe_retries: IntCounterVec,
    stripe_in_flight: IntGauge,
    budget_wait: Histogram,
    dead_lettered: IntCounterVec,
    webhook_deliveries: IntCounterVec,
    consumer_lag: ConsumerLag,
    /// One render at a time: each sets the scrape-time gauges, then encodes.
    rendering: Mutex<()>,
}

/// Buckets of the wait for a rate-limit slot: none at all, up to a long
/// hold while the replica owns no partition.
const WAIT_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

impl Default for Metrics {
    fn default() -> Self {
        let r = m::registry();
        let this = Self {
            reconciled: m::counter_vec(
                &r,
                "checkout_reconciled_total",
                "Sessions asked about by reconciliation, by what it found.",
                &["outcome"],
            ),
            webhook_unparsed: m::counter(
                &r,
                "checkout_webhook_unparsed_total",
                "Signed webhooks whose event could not be parsed (decided from the session instead).",
            ),
            open_sessions: m::gauge(
                &r,
                "checkout_open_sessions",
                "Sessions opened without a terminal status yet.",
            ),
            stripe_rate_limit: m::float_gauge(
                &r,
                "checkout_stripe_rate_limit_per_second",
                "This replica's share of the account's Stripe rate limit (limit x owned partitions / total).",
            ),
            partition_owned: m::gauge_vec(
                &r,
                "checkout_partition_owned",
                "The partitions of checkout.requests this replica owns (1 each).",
                &["partition"],
            ),
            published: m::counter_vec(
                &r,
                "checkout_finished_published_total",
                "checkout.finished events this service published (worker, webhook, reconciliation), by status.",
                &["status"],
            ),
            request_duration: m::histogram(
                &r,
                "checkout_request_duration_seconds",
                "From consuming a checkout.requests message to its outcome published (Stripe calls and budget waits included).",
                LATENCY_BUCKETS,
            ),
            stripe_duration: m::histogram_vec(
                &r,
                "checkout_stripe_request_duration_seconds",
                "Each HTTP call to Stripe, by endpoint and outcome.",
                &["endpoint", "outcome"],
                LATENCY_BUCKETS,
            ),
            stripe_retries: m::counter_vec(
                &r,
                "checkout_stripe_retries_total",
                "Attempts at a Stripe call after its first.",
                &["endpoint"],
            ),
            stripe_in_flight: m::gauge(
                &r,
                "checkout_stripe_in_flight",
                "HTTP calls to Stripe in flight now.",
            ),
            budget_wait: m::histogram(
                &r,
                "checkout_stripe_budget_wait_seconds",
                "Time a Stripe call waited for this replica's share of the rate limit.",
                WAIT_BUCKETS,
            ),
            dead_lettered: m::counter_vec(
                &r,
                "checkout_dead_lettered_total",
                "checkout.requests messages copied to the dead-letter topic, by reason.",
                &["reason"],
            ),
            webhook_deliveries: m::counter_vec(
                &r,
                "checkout_webhook_deliveries_total",
                "Stripe webhook deliveries, by event type (ours, else other) and outcome.",
                &["event_type", "outcome"],
            ),
            consumer_lag: ConsumerLag::register(&r),
            rendering: Mutex::default(),
            registry: r,
        };
        // Every known series exists from the start, at 0.
        for outcome in Reconciled::ALL {
            this.reconciled.with_label_values(&[outcome.label()]);
        }
        for status in [
            CheckoutStatus::SessionCreated,
            CheckoutStatus::Success,
            CheckoutStatus::Failed,
        ] {
            this.published.with_label_values(&[status.as_str()]);
        }
        for endpoint in Endpoint::ALL {
            this.stripe_retries.with_label_values(&[endpoint.label()]);
            for outcome in StripeOutcome::ALL {
                this.stripe_duration
                    .with_label_values(&[endpoint.label(), outcome.label()]);
            }
        }
        for reason in DEAD_LETTER_REASONS {
            this.dead_lettered.with_label_values(&[reason]);
        }
        for event_type in WEBHOOK_EVENT_TYPES.into_iter().chain(["other"]) {
            for outcome in Delivery::ALL {
                this.webhook_deliveries
                    .with_label_values(&[event_type, outcome.label()]);
            }
        }
        this
    }
}

impl Metrics {
    pub fn reconciled(&self, outcome: Reconciled) {
        self.reconciled.with_label_values(&[outcome.label()]).inc();
    }

    pub fn reconciled_count(&self, outcome: Reconciled) -> u64 {
        self.reconciled.with_label_values(&[outcome.label()]).get()
    }

    /// A correctly signed webhook whose event async-stripe could not parse.
    pub fn webhook_unparsed(&self) {
        self.webhook_unparsed.inc();
    }

    pub fn webhook_unparsed_count(&self) -> u64 {
        self.webhook_unparsed.get()
    }

    /// A `checkout.finished` event with `status` was acknowledged by the broker.
    pub fn published(&self, status: CheckoutStatus) {
        self.published.with_label_values(&[status.as_str()]).inc();
    }

    /// A `checkout.requests` message was handled, its outcome durable,
    /// `elapsed` after it was consumed.
    pub fn request_handled(&self, elapsed: Duration) {
        self.request_duration.observe(elapsed.as_secs_f64());
    }

    /// A call waited `elapsed` for a slot of the rate limit.
    pub fn budget_waited(&self, elapsed: Duration) {
        self.budget_wait.observe(elapsed.as_secs_f64());
    }

    /// An HTTP call to Stripe starts; it is in flight until the guard drops.
    pub fn stripe_call_started(&self) -> InFlight {
        self.stripe_in_flight.inc();
        InFlight(self.stripe_in_flight.clone())
    }

    /// An HTTP call to `endpoint` ended with `outcome` after `elapsed`.
    pub fn stripe_call(&self, endpoint: Endpoint, outcome: StripeOutcome, elapsed: Duration) {
        self.stripe_duration
            .with_label_values(&[endpoint.label(), outcome.label()])
            .observe(elapsed.as_secs_f64());
    }

    /// Another attempt at a call to `endpoint` after a failed one.
    pub fn stripe_retry(&self, endpoint: Endpoint) {
        self.stripe_retries
            .with_label_values(&[endpoint.label()])
            .inc();
    }

    /// A message was copied to the dead-letter topic; `reason` is one of
    /// the contract's [`DEAD_LETTER_REASONS`].
    pub fn dead_lettered(&self, reason: &str) {
        self.dead_lettered.with_label_values(&[reason]).inc();
    }

    /// A webhook delivery of `event_type` (`None`: not known) was answered
    /// as `outcome`.
    pub fn webhook_delivery(&self, event_type: Option<&str>, outcome: Delivery) {
        let event_type = event_type
            .and_then(|t| WEBHOOK_EVENT_TYPES.into_iter().find(|known| *known == t))
            .unwrap_or("other");
        self.webhook_deliveries
            .with_label_values(&[event_type, outcome.label()])
            .inc();
    }

    /// `kafka_consumer_lag_messages`, for the worker's consumer and the
    /// open-session tail.
    pub fn consumer_lag(&self) -> &ConsumerLag {
        &self.consumer_lag
    }

    /// The Prometheus text exposition, with the number of open sessions,
    /// this replica's share of the Stripe rate limit and the partitions it
    /// owns now.
    pub fn render(&self, open_sessions: usize, stripe_rate_limit: f64, owned: &[i32]) -> String {
        let _one_at_a_time = self
            .rendering
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.open_sessions
            .set(i64::try_from(open_sessions).unwrap_or(i64::MAX));
        self.stripe_rate_limit.set(stripe_rate_limit);
        // Only the partitions owned now: a revoked one leaves the list.
        self.partition_owned.reset();
        for partition in owned {
            self.partition_owned
                .with_label_values(&[&partition.to_string()])
                .set(1);
        }
        m::render(&self.registry)
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Decrements `checkout_stripe_in_flight` when the call ends, however it ends.
pub struct InFlight(IntGauge);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_renders_with_its_values() {
        let m = Metrics::default();
        m.reconciled(Reconciled::Success);
        m.reconciled(Reconciled::Success);
        m.reconciled(Reconciled::Open);
        m.webhook_unparsed();
        m.published(CheckoutStatus::SessionCreated);
        m.request_handled(Duration::from_millis(30));
        m.budget_waited(Duration::from_millis(2));
        let in_flight = m.stripe_call_started();
        m.stripe_call(
            Endpoint::CreateSession,
            StripeOutcome::of_status(200),
            Duration::from_millis(40),
        );
        m.stripe_call(
            Endpoint::ListSessions,
            StripeOutcome::of_status(429),
            Duration::from_millis(1),
        );
        m.stripe_retry(Endpoint::ListSessions);
        m.dead_lettered("invalid_json");
        m.webhook_delivery(Some("checkout.session.completed"), Delivery::Accepted);
        m.webhook_delivery(Some("customer.created"), Delivery::Ignored);
        m.webhook_delivery(None, Delivery::BadSignature);
        let text = m.render(3, 12.5, &[0, 2]);
        drop(in_flight);
        for line in [
            "checkout_reconciled_total{outcome=\"success\"} 2",
            "checkout_reconciled_total{outcome=\"failed\"} 0",
            "checkout_reconciled_total{outcome=\"open\"} 1",
            "checkout_webhook_unparsed_total 1",
            "checkout_open_sessions 3",
            "checkout_stripe_rate_limit_per_second 12.5",
            "checkout_partition_owned{partition=\"0\"} 1\ncheckout_partition_owned{partition=\"2\"} 1",
            "checkout_finished_published_total{status=\"session_created\"} 1",
            "checkout_finished_published_total{status=\"success\"} 0",
            "checkout_finished_published_total{status=\"failed\"} 0",
            "checkout_request_duration_seconds_count 1",
            "checkout_request_duration_seconds_bucket{le=\"0.025\"} 0",
            "checkout_request_duration_seconds_bucket{le=\"0.05\"} 1",
            "checkout_stripe_budget_wait_seconds_count 1",
            "checkout_stripe_in_flight 1",
            "checkout_stripe_request_duration_seconds_count{endpoint=\"create_session\",outcome=\"ok\"} 1",
            "checkout_stripe_request_duration_seconds_count{endpoint=\"list_sessions\",outcome=\"rate_limited\"} 1",
            "checkout_stripe_request_duration_seconds_count{endpoint=\"expire_session\",outcome=\"network_error\"} 0",
            "checkout_stripe_retries_total{endpoint=\"list_sessions\"} 1",
            "checkout_stripe_retries_total{endpoint=\"create_session\"} 0",
            "checkout_dead_lettered_total{reason=\"invalid_json\"} 1",
            "checkout_dead_lettered_total{reason=\"empty\"} 0",
            "checkout_webhook_deliveries_total{event_type=\"checkout.session.completed\",outcome=\"accepted\"} 1",
            "checkout_webhook_deliveries_total{event_type=\"other\",outcome=\"ignored\"} 1",
            "checkout_webhook_deliveries_total{event_type=\"other\",outcome=\"bad_signature\"} 1",
            "checkout_webhook_deliveries_total{event_type=\"checkout.session.expired\",outcome=\"unavailable\"} 0",
        ] {
            assert!(
                text.contains(&format!("{line}\n")),
                "{line} missing from\n{text}"
            );
        }
        assert!(!text.contains("customer.created"), "{text}");
        assert!(text.contains("\nprocess_resident_memory_bytes "), "{text}");
        assert_eq!(m.reconciled_count(Reconciled::Success), 2);
        assert_eq!(m.webhook_unparsed_count(), 1);
        assert!(
            m.render(0, 0.0, &[])
                .contains("checkout_stripe_in_flight 0\n")
        );
    }

    #[test]
    fn a_revoked_partition_leaves_the_owned_list() {
        let m = Metrics::default();
        m.render(0, 10.0, &[0, 1]);
        let text = m.render(0, 5.0, &[1]);
        assert!(
            !text.contains("checkout_partition_owned{partition=\"0\"}"),
            "{text}"
        );
        assert!(
            text.contains("checkout_partition_owned{partition=\"1\"} 1\n"),
            "{text}"
        );
    }

    #[test]
    fn stripe_outcomes_by_status() {
        assert_eq!(StripeOutcome::of_status(201), StripeOutcome::Ok);
        assert_eq!(StripeOutcome::of_status(400), StripeOutcome::ClientError);
        assert_eq!(StripeOutcome::of_status(404), StripeOutcome::ClientError);
        assert_eq!(StripeOutcome::of_status(429), StripeOutcome::RateLimited);
        assert_eq!(StripeOutcome::of_status(503), StripeOutcome::ServerError);
    }
}
