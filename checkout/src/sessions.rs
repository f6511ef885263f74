//! The Checkout Sessions this service opened that have no terminal status
//! yet ([`OpenSessions`]), kept by a tail of `checkout.finished`
//! ([`SessionTail`]).
//!
//! - The tail reads every partition of `checkout.finished` itself (manual
//!   assignment, no consumer group, no commits, like the gateway's status
//!   tail) from the beginning, so the set is rebuilt on every start from
//!   what is on Kafka: it survives restarts and needs no store of its own.
//!   It keeps reading while the service runs, so the sessions opened by
//!   other replicas are known too, and it notices partitions added later.
//! - `session_created` opens an entry (request_id, session_id, the record's
//!   timestamp, its `traceparent` header); a `success`/`failed` naming the
//!   session closes it (one naming none does not: only Stripe ends a
//!   session). So the memory held is the sessions still open (plus the
//!   traces of the last few thousand closed requests), however long the
//!   topic.
//! - [`OpenSessions::caught_up`] turns true once the tail has read up to
//!   where each partition ended when it started: before that, an open entry
//!   may only be missing its terminal event, so [`crate::reconcile`] waits.
//!
//! The webhook continues a checkout's trace from the entry's traceparent
//! ([`OpenSessions::trace`]), and [`crate::reconcile`] asks Stripe about the
//! entries that are due ([`OpenSessions::due`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use checkout_contract::kafka::{HEADER_TRACEPARENT, KafkaConfig, header};
use checkout_contract::metrics::LagConsumer;
use checkout_contract::shutdown::Stopping;
use checkout_contract::trace::TraceContext;
use checkout_contract::{CheckoutFinishedEvent, CheckoutStatus};
use chrono::{DateTime, Utc};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};
use tokio::sync::{Notify, watch};

use crate::metrics::Metrics;

/// How long one metadata or watermark lookup may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the tail looks for partitions added to the topic.
const PARTITION_CHECK: Duration = Duration::from_secs(30);
/// A session still open is asked about again after `after`, `2 after`,
/// `4 after`, ... up to this many times `after`.
const MAX_RECHECK_FACTOR: u32 = 8;

/// A session opened for a request, with no terminal status yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenSession {
    pub request_id: String,
    pub session_id: String,
    /// The partition of `checkout.finished` its `session_created` is on,
    /// which decides the replica that reconciles it ([`crate::assignment`]).
    pub partition: i32,
    /// The timestamp of its `session_created` record.
    pub first_seen: DateTime<Utc>,
    /// The `traceparent` header of its `session_created` record: the
    /// checkout's trace, which the outcome continues.
    pub traceparent: Option<TraceContext>,
    /// When [`crate::reconcile`] asks Stripe about it next.
    pub next_check: DateTime<Utc>,
    /// How often Stripe said it is still open.
    pub checks: u32,
}

/// What one `checkout.finished` event did to the set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// A new open session.
    Opened,
    /// A `session_created` for a session already open (a redelivery).
    AlreadyOpen,
    /// A terminal event closed this many sessions (0: none was open).
    Closed(usize),
    /// A `session_created` without a session_id: nothing to track.
    Ignored,
}

/// How many closed requests keep their trace (so a late duplicate outcome
/// still continues the checkout's trace).
const CLOSED_TRACES: usize = 10_000;

#[derive(Debug, Default)]
struct State {
    /// By request_id; almost always one session each.
    open: HashMap<String, Vec<OpenSession>>,
    /// The traces of the last [`CLOSED_TRACES`] requests closed, oldest first.
    closed: HashMap<String, Option<TraceContext>>,
    closed_order: VecDeque<String>,
}

impl State {
    fn remember_closed(&mut self, request_id: &str, trace: Option<TraceContext>) {
        if self.closed.insert(request_id.to_owned(), trace).is_none() {
            self.closed_order.push_back(request_id.to_owned());
        }
        while self.closed_order.len() > CLOSED_TRACES {
            if let Some(oldest) = self.closed_order.pop_front() {
                self.closed.remove(&oldest);
            }
        }
    }

    /// Removes the sessions of `request_id` that `ends` says, and the
    /// request when none is left; returns how many went.
    fn close(&mut self, request_id: &str, ends: impl Fn(&OpenSession) -> bool) -> usize {
        let Some(sessions) = self.open.get_mut(request_id) else {
            return 0;
        };
        let trace = sessions.first().and_then(|s| s.traceparent);
        let before = sessions.len();
        sessions.retain(|s| !ends(s));
        let closed = before - sessions.len();
        if sessions.is_empty() {
            self.open.remove(request_id);
            self.remember_closed(request_id, trace);
        }
        closed
    }
}

/// The open sessions, shared by the tail, the webhook and the reconciler.
#[derive(Debug)]
pub struct OpenSessions {
    state: Mutex<State>,
    /// How old a session is before it is first due.
    after: Duration,
    /// Woken whenever a session opens (the webhook may wait for one).
    opened: Notify,
    caught_up: watch::Sender<bool>,
}

impl OpenSessions {
    /// An empty set; sessions are due `after` their `session_created`.
    pub fn new(after: Duration) -> Self {
        Self {
            state: Mutex::new(State::default()),
            after,
            opened: Notify::new(),
            caught_up: watch::Sender::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn delay(&self, checks: u32) -> chrono::Duration {
        let factor = 2u32.saturating_pow(checks.min(16)).min(MAX_RECHECK_FACTOR);
        chrono::Duration::from_std(self.after.saturating_mul(factor))
            .unwrap_or(chrono::Duration::MAX)
    }

    /// Applies one event of `checkout.finished`, recorded on `partition` at
    /// `recorded` with the trace of its `traceparent` header.
    pub fn apply(
        &self,
        event: &CheckoutFinishedEvent,
        partition: i32,
        recorded: DateTime<Utc>,
        traceparent: Option<TraceContext>,
    ) -> Applied {
        let mut state = self.lock();
        match event.status {
            CheckoutStatus::SessionCreated => {
                let Some(session_id) = event.session_id.clone() else {
                    return Applied::Ignored;
                };
                let sessions = state.open.entry(event.request_id.clone()).or_default();
                if sessions.iter().any(|s| s.session_id == session_id) {
                    return Applied::AlreadyOpen;
                }
                sessions.push(OpenSession {
                    request_id: event.request_id.clone(),
                    session_id,
                    partition,
                    first_seen: recorded,
                    traceparent,
                    next_check: recorded + self.delay(0),
                    checks: 0,
                });
                drop(state);
                self.opened.notify_waiters();
                Applied::Opened
            }
            // The webhook's and the reconciler's events name their session
            // and end it. A `failed` naming none (the worker's, before or
            // instead of a session) ends none: a session that exists is
            // payable until Stripe says otherwise, and only Stripe's answer
            // about it may end it (an older worker published such a `failed`
            // for a live session after an idempotency_error).
            CheckoutStatus::Success | CheckoutStatus::Failed => match &event.session_id {
                Some(id) => {
                    Applied::Closed(state.close(&event.request_id, |s| s.session_id == *id))
                }
                None => Applied::Closed(0),
            },
        }
    }

    /// The first open session of `request_id`.
    pub fn get(&self, request_id: &str) -> Option<OpenSession> {
        self.lock().open.get(request_id)?.first().cloned()
    }

    /// The trace of `request_id`'s `session_created` record, when the
    /// request is open or was closed recently: `Some(None)` when that record
    /// had none, `None` when the request is unknown.
    pub fn known_trace(&self, request_id: &str) -> Option<Option<TraceContext>> {
        let state = self.lock();
        if let Some(session) = state.open.get(request_id).and_then(|s| s.first()) {
            return Some(session.traceparent);
        }
        state.closed.get(request_id).copied()
    }

    /// [`Self::known_trace`], waiting up to `timeout` for the tail to read
    /// the request's `session_created` when it is unknown (a customer may
    /// pay, and the webhook arrive, a moment after the worker published it).
    pub async fn trace(&self, request_id: &str, timeout: Duration) -> Option<TraceContext> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let opened = self.opened.notified();
            tokio::pin!(opened);
            opened.as_mut().enable();
            if let Some(trace) = self.known_trace(request_id) {
                return trace;
            }
            if tokio::time::timeout_at(deadline, opened).await.is_err() {
                return None;
            }
        }
    }

    /// The sessions whose next check is due at `now`, oldest first.
    pub fn due(&self, now: DateTime<Utc>) -> Vec<OpenSession> {
        let mut due: Vec<OpenSession> = self
            .lock()
            .open
            .values()
            .flatten()
            .filter(|s| s.next_check <= now)
            .cloned()
            .collect();
        due.sort_by_key(|s| s.first_seen);
        due
    }

    /// Stripe says the session is still open at `now`: ask again later,
    /// but right after it expires at `expires_at` (seconds since the epoch).
    pub fn still_open(
        &self,
        request_id: &str,
        session_id: &str,
        now: DateTime<Utc>,
        expires_at: Option<i64>,
    ) {
        let mut state = self.lock();
        let Some(session) = state
            .open
            .get_mut(request_id)
            .and_then(|ss| ss.iter_mut().find(|s| s.session_id == session_id))
        else {
            return;
        };
        session.checks = session.checks.saturating_add(1);
        let mut next = now + self.delay(session.checks);
        if let Some(expiry) = expires_at.and_then(|t| DateTime::from_timestamp(t, 0))
            && expiry > now
        {
            next = next.min(expiry + chrono::Duration::seconds(1));
        }
        session.next_check = next;
    }

    /// Forgets a session whose outcome was just published (the tail closes
    /// it too when it reads that event).
    pub fn close(&self, request_id: &str, session_id: &str) {
        self.lock()
            .close(request_id, |s| s.session_id == session_id);
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.lock().open.values().map(Vec::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the tail has read what was on the topic when it started.
    pub fn is_caught_up(&self) -> bool {
        *self.caught_up.borrow()
    }

    /// Resolves once [`Self::is_caught_up`].
    pub async fn caught_up(&self) {
        let mut rx = self.caught_up.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    fn set_caught_up(&self) {
        self.caught_up.send_replace(true);
    }
}

/// The tail's consumer: a manual-assignment reader that reports each
/// partition's end (`enable.partition.eof`), so it knows when it caught up,
/// and its lag in `metrics` (`kafka_consumer_lag_messages`).
///
/// # Errors
/// When librdkafka rejects the configuration.
pub fn consumer(kafka: &KafkaConfig, metrics: &Metrics) -> Result<LagConsumer, KafkaError> {
    let mut config = kafka.tail_config();
    config.set("enable.partition.eof", "true");
    metrics.consumer_lag().stream_consumer(config)
}

/// The task that keeps [`OpenSessions`] up to date.
pub struct SessionTail {
    pub consumer: Arc<LagConsumer>,
    /// `checkout.finished`.
    pub topic: String,
    pub sessions: Arc<OpenSessions>,
}

/// Where each partition ended when the tail started, until it got there.
#[derive(Debug, Default)]
struct CatchUp {
    /// Partition -> the offset it must read up to (exclusive).
    pending: HashMap<i32, i64>,
}

impl CatchUp {
    /// Partition `p` was read up to `next` (exclusive); true when every
    /// partition is done.
    fn read(&mut self, p: i32, next: i64) -> bool {
        if self.pending.get(&p).is_some_and(|end| next >= *end) {
            self.pending.remove(&p);
        }
        self.pending.is_empty()
    }

    fn eof(&mut self, p: i32) -> bool {
        self.pending.remove(&p);
        self.pending.is_empty()
    }
}

impl SessionTail {
    /// Assigns every partition (retrying until the broker answers), then
    /// reads until `stop` says stop.
    pub async fn run(self, mut stop: Stopping) {
        let mut catch_up = CatchUp::default();
        let mut attempt = 0u64;
        let mut partitions = loop {
            let assigned = tokio::select! {
                () = stop.stopped() => return,
                assigned = self.assign(0) => assigned,
            };
            match assigned {
                Ok((count, ends)) => {
                    catch_up.pending = ends;
                    break count;
                }
                Err(e) => {
                    if attempt.is_multiple_of(60) {
                        tracing::warn!(error = %e, topic = %self.topic, "open-session tail cannot start yet; retrying every 500 ms");
                    }
                    attempt += 1;
                    tokio::select! {
                        () = stop.stopped() => return,
                        () = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
            }
        };
        if catch_up.pending.is_empty() {
            self.sessions.set_caught_up();
        }
        tracing::info!(topic = %self.topic, partitions, "open-session tail running");
        let mut check = tokio::time::interval(PARTITION_CHECK);
        check.tick().await;
        loop {
            let message = tokio::select! {
                () = stop.stopped() => break,
                _ = check.tick() => None,
                message = self.consumer.recv() => Some(message),
            };
            match message {
                None => {
                    let checked = tokio::select! {
                        () = stop.stopped() => break,
                        checked = self.assign(partitions) => checked,
                    };
                    match checked {
                        Ok((count, _)) if count > partitions => {
                            tracing::info!(topic = %self.topic, from = partitions, to = count, "partitions added: reading the new ones from the beginning");
                            partitions = count;
                        }
                        Ok(_) => {}
                        Err(e) => tracing::debug!(error = %e, "partition check failed"),
                    }
                }
                Some(Ok(m)) => {
                    self.read(&m);
                    if !self.sessions.is_caught_up() && catch_up.read(m.partition(), m.offset() + 1)
                    {
                        self.caught_up();
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    if !self.sessions.is_caught_up() && catch_up.eof(p) {
                        self.caught_up();
                    }
                }
                Some(Err(e)) => tracing::warn!(error = %e, "open-session tail read error"),
            }
        }
        tracing::info!("open-session tail stopped");
    }

    fn caught_up(&self) {
        self.sessions.set_caught_up();
        tracing::info!(
            open = self.sessions.len(),
            "open sessions rebuilt from checkout.finished"
        );
    }

    fn read(&self, m: &rdkafka::message::BorrowedMessage<'_>) {
        let Some(payload) = m.payload() else {
            return;
        };
        let event: CheckoutFinishedEvent = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(partition = m.partition(), offset = m.offset(), error = %e, "unreadable checkout.finished event skipped");
                return;
            }
        };
        let recorded = m
            .timestamp()
            .to_millis()
            .and_then(DateTime::from_timestamp_millis)
            .unwrap_or(event.timestamp);
        let trace = header(m, HEADER_TRACEPARENT).and_then(TraceContext::parse);
        let applied = self.sessions.apply(&event, m.partition(), recorded, trace);
        tracing::trace!(request_id = %event.request_id, status = %event.status, ?applied, "open sessions updated");
    }

    /// Assigns every partition of the topic when it has more than `known`:
    /// the ones already read continue where they are, the others start at
    /// the beginning. Returns the partition count and, on the first call,
    /// where each partition ends now.
    async fn assign(&self, known: i32) -> Result<(i32, HashMap<i32, i64>), KafkaError> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = consumer.fetch_metadata(Some(&topic), LOOKUP_TIMEOUT)?;
            let count = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic && t.error().is_none())
                .map_or(0, |t| t.partitions().len());
            let count = i32::try_from(count).unwrap_or(i32::MAX);
            if count == 0 {
                return Err(KafkaError::MetadataFetch(
                    rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition,
                ));
            }
            if count <= known {
                return Ok((count, HashMap::new()));
            }
            let mut ends = HashMap::new();
            if known == 0 {
                for p in 0..count {
                    let (low, high) = consumer.fetch_watermarks(&topic, p, LOOKUP_TIMEOUT)?;
                    if high > low {
                        ends.insert(p, high);
                    }
                }
            }
            let positions = if known == 0 {
                TopicPartitionList::new()
            } else {
                consumer.position()?
            };
            let mut tpl = TopicPartitionList::new();
            for p in 0..count {
                let at = positions
                    .find_partition(&topic, p)
                    .map(|e| e.offset())
                    .filter(|o| matches!(o, Offset::Offset(_)))
                    .unwrap_or(Offset::Beginning);
                tpl.add_partition_offset(&topic, p, at)?;
            }
            consumer.assign(&tpl)?;
            Ok((count, ends))
        })
        .await
        .map_err(|_| KafkaError::Canceled)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(
        request_id: &str,
        status: CheckoutStatus,
        session: Option<&str>,
    ) -> CheckoutFinishedEvent {
        serde_json::from_value(serde_json::json!({
            "request_id": request_id, "user_id": 1, "amount_cents": 500,
            "status": status.as_str(), "session_id": session,
            "timestamp": "2024-01-15T10:30:00Z"
        }))
        .unwrap()
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_session_is_open_from_session_created_until_its_terminal_event() {
        let s = OpenSessions::new(Duration::from_secs(30));
        let trace = TraceContext::new_root();
        let created = event("r1", CheckoutStatus::SessionCreated, Some("cs_1"));
        assert_eq!(s.apply(&created, 0, at(0), Some(trace)), Applied::Opened);
        assert_eq!(s.apply(&created, 0, at(5), None), Applied::AlreadyOpen);
        let open = s.get("r1").unwrap();
        assert_eq!((open.session_id.as_str(), open.first_seen), ("cs_1", at(0)));
        assert_eq!(
            open.traceparent,
            Some(trace),
            "the first record's trace is kept"
        );
        assert_eq!(s.len(), 1);

        let success = event("r1", CheckoutStatus::Success, Some("cs_1"));
        assert_eq!(s.apply(&success, 0, at(40), None), Applied::Closed(1));
        assert!(s.is_empty(), "terminal requests are forgotten");
        assert_eq!(s.apply(&success, 0, at(41), None), Applied::Closed(0));
    }

    #[test]
    fn only_an_outcome_naming_a_session_ends_it() {
        let s = OpenSessions::new(Duration::from_secs(30));
        let created = |id| event("r1", CheckoutStatus::SessionCreated, Some(id));
        s.apply(&created("cs_1"), 0, at(0), None);
        s.apply(&created("cs_2"), 0, at(1), None);
        let failed = |id| event("r1", CheckoutStatus::Failed, id);
        assert_eq!(
            s.apply(&failed(Some("cs_2")), 0, at(2), None),
            Applied::Closed(1)
        );
        assert_eq!(s.get("r1").unwrap().session_id, "cs_1");
        // The worker's `failed` names no session: the open one stays open
        // until Stripe's answer about it ends it.
        assert_eq!(s.apply(&failed(None), 0, at(3), None), Applied::Closed(0));
        assert_eq!(s.len(), 1);
        assert_eq!(
            s.apply(&failed(Some("cs_1")), 0, at(4), None),
            Applied::Closed(1)
        );
        assert!(s.is_empty());
        assert_eq!(
            s.apply(
                &event("r2", CheckoutStatus::SessionCreated, None),
                0,
                at(0),
                None
            ),
            Applied::Ignored
        );
    }

    #[test]
    fn sessions_are_due_after_the_threshold_then_less_and_less_often_and_right_after_expiry() {
        let s = OpenSessions::new(Duration::from_secs(30));
        s.apply(
            &event("r1", CheckoutStatus::SessionCreated, Some("cs_1")),
            0,
            at(0),
            None,
        );
        s.apply(
            &event("r2", CheckoutStatus::SessionCreated, Some("cs_2")),
            0,
            at(10),
            None,
        );
        assert!(s.due(at(29)).is_empty());
        let due: Vec<String> = s.due(at(45)).into_iter().map(|d| d.request_id).collect();
        assert_eq!(due, ["r1", "r2"], "oldest first");

        s.still_open("r1", "cs_1", at(45), Some(1_700_000_000 + 10_000));
        assert_eq!(s.get("r1").unwrap().next_check, at(45 + 60));
        for n in 2..6 {
            s.still_open("r1", "cs_1", at(45), None);
            let expected = 30 * i64::from(2u32.pow(n).min(MAX_RECHECK_FACTOR));
            assert_eq!(
                s.get("r1").unwrap().next_check,
                at(45 + expected),
                "check {n}"
            );
        }
        // Expiring soon: looked at again a second after it expired.
        s.still_open("r2", "cs_2", at(45), Some(1_700_000_000 + 50));
        assert_eq!(s.get("r2").unwrap().next_check, at(51));

        s.close("r2", "cs_2");
        assert!(s.get("r2").is_none());
        assert_eq!(s.len(), 1);
    }

    #[tokio::test]
    async fn the_trace_is_found_as_soon_as_the_session_is_read_and_kept_a_while_after() {
        let s = Arc::new(OpenSessions::new(Duration::from_secs(30)));
        assert_eq!(s.trace("r1", Duration::from_millis(20)).await, None);
        let trace = TraceContext::new_root();
        let writer = Arc::clone(&s);
        let reader = Arc::clone(&s);
        let waiting =
            tokio::spawn(async move { reader.trace("r1", Duration::from_secs(30)).await });
        tokio::task::yield_now().await;
        writer.apply(
            &event("r1", CheckoutStatus::SessionCreated, Some("cs_1")),
            0,
            at(0),
            Some(trace),
        );
        let found = tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("woken at once")
            .unwrap();
        assert_eq!(found, Some(trace));

        s.apply(
            &event("r1", CheckoutStatus::Success, Some("cs_1")),
            0,
            at(1),
            None,
        );
        assert!(s.get("r1").is_none());
        assert_eq!(
            s.known_trace("r1"),
            Some(Some(trace)),
            "a late duplicate continues the trace"
        );
        for i in 0..CLOSED_TRACES {
            let id = format!("other-{i}");
            s.apply(
                &event(&id, CheckoutStatus::SessionCreated, Some("cs")),
                0,
                at(2),
                None,
            );
            s.apply(
                &event(&id, CheckoutStatus::Failed, Some("cs")),
                0,
                at(3),
                None,
            );
        }
        assert_eq!(
            s.known_trace("r1"),
            None,
            "bounded: the oldest closed trace is forgotten"
        );
        assert!(s.is_empty());
    }

    #[test]
    fn catching_up_ends_when_every_partition_reached_its_start_end() {
        let mut c = CatchUp {
            pending: HashMap::from([(0, 5), (2, 1)]),
        };
        assert!(!c.read(0, 3));
        assert!(!c.read(0, 5));
        assert!(c.eof(2));
    }
}
