//! The books after a run, and the invariants every suite asserts on them:
//! one terminal outcome per request and none contradicting, success exactly
//! for the paid sessions, one ledger row per paid session with its amount,
//! the sum of balances equal to the sum paid, at most one Stripe session per
//! request, nothing dead-lettered. Read from the topics (to their ends), the
//! Stripe emulator and the ledger in PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use checkout_contract::kafka::KafkaConfig;
use checkout_contract::topics::Topics;
use checkout_contract::{CheckoutFinishedEvent, CheckoutRequestEvent, CheckoutStatus};
use rdkafka::message::{Message as _, OwnedMessage};
use sqlx::PgPool;
use stripe_emulator::session::PaymentStatus;
use stripe_emulator::{SessionsReport, StatsSnapshot};

use crate::observe;

/// How long reading a topic to its end may take.
const READ_WITHIN: Duration = Duration::from_secs(60);

/// Everything the invariants are checked on.
pub struct Books {
    /// Every record on `checkout.requests`, in partition then offset order.
    pub requests: Vec<OwnedMessage>,
    /// Every record on `checkout.finished`, in partition then offset order.
    pub finished: Vec<OwnedMessage>,
    /// The request_ids on `checkout.requests`.
    pub requested: BTreeSet<String>,
    /// The terminal statuses published per request_id, in partition order.
    pub terminal: BTreeMap<String, Vec<CheckoutStatus>>,
    pub sessions: SessionsReport,
    /// Paid sessions: request_id -> amount.
    pub paid: BTreeMap<String, i64>,
    /// Ledger rows per request_id: (rows, summed amount).
    pub ledger: BTreeMap<String, (i64, i64)>,
    pub balances: i64,
    /// Records on each dead-letter topic.
    pub dead_lettered: Vec<(String, i64)>,
    pub stats: StatsSnapshot,
}

impl Books {
    /// Reads the books once the system has settled ([`observe::wait_settled`]).
    ///
    /// # Panics
    /// When a topic cannot be read or holds a record that is not an event.
    pub async fn read(
        kafka: &KafkaConfig,
        topics: &Topics,
        db: &PgPool,
        stripe: &stripe_emulator::Handle,
    ) -> Self {
        let requests = testkit::broker::read_all(kafka, &topics.requests, READ_WITHIN).await;
        let finished = testkit::broker::read_all(kafka, &topics.finished, READ_WITHIN).await;
        let requested = requests
            .iter()
            .map(|m| {
                serde_json::from_slice::<CheckoutRequestEvent>(m.payload().unwrap_or_default())
                    .expect("request event")
                    .request_id
            })
            .collect();
        let mut terminal: BTreeMap<String, Vec<CheckoutStatus>> = BTreeMap::new();
        for event in finished.iter().map(finished_event) {
            if event.status.is_terminal() {
                terminal
                    .entry(event.request_id)
                    .or_default()
                    .push(event.status);
            }
        }
        let sessions = stripe.sessions();
        let paid = sessions
            .sessions
            .iter()
            .filter(|s| s.payment_status == PaymentStatus::Paid)
            .map(|s| {
                (
                    s.client_reference_id.clone().expect("client_reference_id"),
                    s.amount_total,
                )
            })
            .collect();
        let mut dead_lettered = Vec::new();
        for topic in [&topics.requests_dlq, &topics.finished_dlq] {
            let count = testkit::broker::message_count(kafka, topic).await;
            dead_lettered.push((topic.clone(), count));
        }
        Self {
            requests,
            finished,
            requested,
            terminal,
            sessions,
            paid,
            ledger: observe::ledger_rows(db).await,
            balances: observe::balance_sum(db).await,
            dead_lettered,
            stats: stripe.stats(),
        }
    }

    /// Requests whose first terminal status is success.
    pub fn success(&self) -> usize {
        self.terminal
            .values()
            .filter(|s| s[0] == CheckoutStatus::Success)
            .count()
    }

    pub fn paid_sum(&self) -> i64 {
        self.paid.values().sum()
    }

    /// The most sessions Stripe created for one request.
    pub fn max_sessions_per_request(&self) -> u64 {
        self.sessions
            .created_per_client_reference_id
            .values()
            .max()
            .copied()
            .unwrap_or(0)
    }

    fn contradicting(&self) -> Vec<String> {
        self.terminal
            .iter()
            .filter(|(_, s)| s.iter().any(|x| *x != s[0]))
            .map(|(id, s)| format!("{id}: {s:?}"))
            .collect()
    }

    fn without_terminal(&self) -> Vec<&String> {
        self.requested
            .iter()
            .filter(|id| !self.terminal.contains_key(*id))
            .collect()
    }

    fn credited_twice(&self) -> Vec<(&String, &(i64, i64))> {
        self.ledger.iter().filter(|(_, (n, _))| *n != 1).collect()
    }

    fn credit_mismatch(&self) -> Vec<(&String, &i64)> {
        self.paid
            .iter()
            .filter(|(id, amount)| self.ledger.get(*id).map(|(_, a)| a) != Some(amount))
            .collect()
    }

    fn credited_unpaid(&self) -> Vec<&String> {
        self.ledger
            .keys()
            .filter(|id| !self.paid.contains_key(*id))
            .collect()
    }

    fn success_unpaid(&self) -> Vec<&String> {
        self.terminal
            .iter()
            .filter(|(id, s)| (s[0] == CheckoutStatus::Success) != self.paid.contains_key(*id))
            .map(|(id, _)| id)
            .collect()
    }

    fn double_sessions(&self) -> Vec<(&String, &u64)> {
        self.sessions
            .created_per_client_reference_id
            .iter()
            .filter(|(_, n)| **n > 1)
            .collect()
    }

    /// Prints the figures the invariants are about, as `{suite} figures: ...` lines.
    pub fn print(&self, suite: &str, checkouts: usize) {
        let (terminal, success) = (self.terminal.len(), self.success());
        let repeated = self.terminal.values().map(|s| s.len() - 1).sum::<usize>();
        println!(
            "{suite} figures: checkouts={checkouts} requested={} terminal={terminal} success={success} failed={} \
             repeated_identical_terminal={repeated} contradicting={} without_terminal={}",
            self.requested.len(),
            terminal - success,
            self.contradicting().len(),
            self.without_terminal().len(),
        );
        println!(
            "{suite} figures: paid_sessions={} ledger_rows={} credited_twice={} credit_mismatch={} credited_unpaid={} \
             balance_sum={} paid_sum={}",
            self.paid.len(),
            self.ledger.len(),
            self.credited_twice().len(),
            self.credit_mismatch().len(),
            self.credited_unpaid().len(),
            self.balances,
            self.paid_sum(),
        );
        println!(
            "{suite} figures: stripe sessions={} api_calls={} create_calls={} injected_500={} idempotent_replays={} \
             max_sessions_per_request={} webhooks_lost={} dead_lettered={:?}",
            self.sessions.sessions.len(),
            self.stats.api_calls,
            self.stats.create_calls,
            self.stats.injected_500,
            self.stats.idempotent_replays,
            self.max_sessions_per_request(),
            self.stats.webhooks_lost,
            self.dead_lettered,
        );
    }

    /// The invariants: exactly `checkouts` requests, every accepted one
    /// among them, and the books consistent (see the module doc).
    ///
    /// # Panics
    /// On the first invariant that does not hold, naming the requests.
    pub fn assert_consistent(&self, checkouts: usize, accepted: &BTreeSet<String>) {
        assert!(
            accepted.is_subset(&self.requested),
            "every accepted checkout is on checkout.requests"
        );
        assert_eq!(
            self.requested.len(),
            checkouts,
            "no request the clients did not make"
        );
        let without_terminal = self.without_terminal();
        assert!(
            without_terminal.is_empty(),
            "requests without a terminal outcome: {without_terminal:?}"
        );
        let contradicting = self.contradicting();
        assert!(
            contradicting.is_empty(),
            "contradicting terminal outcomes: {contradicting:?}"
        );
        let success_unpaid = self.success_unpaid();
        assert!(
            success_unpaid.is_empty(),
            "success without a paid session, or a paid session without success: {success_unpaid:?}"
        );
        let credited_twice = self.credited_twice();
        assert!(
            credited_twice.is_empty(),
            "credited more than once: {credited_twice:?}"
        );
        let credit_mismatch = self.credit_mismatch();
        assert!(
            credit_mismatch.is_empty(),
            "paid but not credited (or a wrong amount): {credit_mismatch:?}"
        );
        let credited_unpaid = self.credited_unpaid();
        assert!(
            credited_unpaid.is_empty(),
            "credited without a paid session: {credited_unpaid:?}"
        );
        assert_eq!(
            self.balances,
            self.paid_sum(),
            "the sum of balances equals the sum of paid amounts"
        );
        let double_sessions = self.double_sessions();
        assert!(
            double_sessions.is_empty(),
            "Stripe sessions created twice: {double_sessions:?}"
        );
        assert!(
            self.dead_lettered.iter().all(|(_, n)| *n == 0),
            "nothing dead-lettered: {:?}",
            self.dead_lettered
        );
    }
}

/// The event a `checkout.finished` record carries.
///
/// # Panics
/// When it is not one.
pub fn finished_event(message: &OwnedMessage) -> CheckoutFinishedEvent {
    serde_json::from_slice(message.payload().unwrap_or_default()).expect("finished event")
}
