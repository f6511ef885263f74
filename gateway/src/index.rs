//! The bounded in-memory index every replica builds from its own tail of the
//! topics (see [`crate::tail`]): request_id -> the `checkout.finished` updates
//! seen for it (with their positions) and a summary of the request seen on
//! `checkout.requests` (for idempotency and ownership checks), each with the
//! W3C trace context its record carried, so WatchCheckout and GetCheckout
//! continue the checkout's trace.
//!
//! Memory stays bounded: entries expire `ttl` after their last change and the
//! oldest are evicted beyond `max_entries`. Watchers subscribe per request_id
//! to a small broadcast channel of `queue` slots; taking the history snapshot
//! and subscribing happen under the same lock the tail inserts under, so a
//! watcher sees every update exactly once, with no gap between the two.
//!
//! Answers never go backwards: a status less far along than one already
//! kept (a `session_created` a worker redelivery republishes after
//! `success`) is ignored, so GetCheckout, StartCheckout's idempotent
//! answers and WatchCheckout streams all stay at the terminal status.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use checkout_contract::pb;
use checkout_contract::trace::TraceContext;
use checkout_contract::{CheckoutFinishedEvent, CheckoutRequestEvent, CheckoutStatus, RequestId};
use tokio::sync::broadcast;

/// Where an update sits on `checkout.finished`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Position {
    pub partition: i32,
    pub offset: i64,
}

impl Position {
    /// Is `self` at or before `other` on the same partition? Updates of one
    /// checkout share a partition (they are keyed by request_id), so this is
    /// how "already seen" is decided.
    pub fn seen_by(self, other: Option<Position>) -> bool {
        other.is_some_and(|o| o.partition == self.partition && self.offset <= o.offset)
    }
}

impl From<Position> for pb::Cursor {
    fn from(p: Position) -> Self {
        Self {
            partition: p.partition,
            offset: p.offset,
        }
    }
}

impl From<pb::Cursor> for Position {
    fn from(c: pb::Cursor) -> Self {
        Self {
            partition: c.partition,
            offset: c.offset,
        }
    }
}

/// One status of one checkout, as read from `checkout.finished`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    pub position: Position,
    pub event: Arc<CheckoutFinishedEvent>,
    /// The `traceparent` header of its record (the worker's or the
    /// webhook's span), if it had a valid one.
    pub trace: Option<TraceContext>,
}

impl From<&Update> for pb::CheckoutUpdate {
    fn from(u: &Update) -> Self {
        Self {
            event: Some((*u.event).clone().into()),
            cursor: Some(u.position.into()),
            traceparent: u.trace.map(|t| t.header()).unwrap_or_default(),
        }
    }
}

/// What the index keeps of a request seen on `checkout.requests` (or just
/// produced by this replica): enough to answer idempotent retries and
/// GetCheckout, without the URLs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSummary {
    /// [`fingerprint`] of the payload.
    pub fingerprint: u64,
    pub user_id: i64,
    pub amount_cents: i64,
    pub currency: String,
    pub purpose: String,
    pub timestamp: chrono::DateTime<chrono::Utc>,
    /// The trace the request travels under (its `traceparent` header, or
    /// StartCheckout's own span on the replica that produced it).
    pub trace: Option<TraceContext>,
}

impl From<&CheckoutRequestEvent> for RequestSummary {
    fn from(e: &CheckoutRequestEvent) -> Self {
        Self {
            fingerprint: fingerprint(e),
            user_id: e.user_id,
            amount_cents: e.amount_cents,
            currency: e.currency.clone(),
            purpose: e.purpose.clone(),
            timestamp: e.timestamp,
            trace: None,
        }
    }
}

impl RequestSummary {
    /// The same summary, travelling under `trace`.
    #[must_use]
    pub fn traced(self, trace: Option<TraceContext>) -> Self {
        Self { trace, ..self }
    }
}

/// A hash of what the caller asked for (everything but `request_id` and
/// `timestamp`): two requests with the same fingerprint are the same checkout.
/// Only compared within one process, so `DefaultHasher` is stable enough.
pub fn fingerprint(e: &CheckoutRequestEvent) -> u64 {
    let mut h = DefaultHasher::new();
    (
        e.user_id,
        e.amount_cents,
        &e.currency,
        &e.purpose,
        &e.success_url,
        &e.cancel_url,
    )
        .hash(&mut h);
    h.finish()
}

/// What a caller gets when looking a checkout up.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub updates: Vec<Update>,
    pub request: Option<RequestSummary>,
}

impl Snapshot {
    /// The user the checkout belongs to, if anything is known about it.
    pub fn owner(&self) -> Option<i64> {
        self.request
            .as_ref()
            .map(|r| r.user_id)
            .or_else(|| self.updates.first().map(|u| u.event.user_id))
    }

    pub fn is_empty(&self) -> bool {
        self.updates.is_empty() && self.request.is_none()
    }

    /// The checkout's trace: the request's, else the first status's that
    /// carried one. A request known to have come without a `traceparent`
    /// travels under the trace the checkout worker derives from its
    /// request_id ([`TraceContext::for_request`]).
    pub fn trace(&self, id: RequestId) -> Option<TraceContext> {
        self.request
            .as_ref()
            .and_then(|r| r.trace)
            .or_else(|| self.updates.iter().find_map(|u| u.trace))
            .or_else(|| {
                self.request
                    .is_some()
                    .then(|| TraceContext::for_request(&id))
            })
    }
}

/// What happened to an update offered to the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// New: stored and sent to watchers.
    Added,
    /// Already stored (the tail re-read it, e.g. after a reconnect).
    Duplicate,
    /// Would take the checkout's answer backwards (see [`progress`]), e.g. a
    /// `session_created` republished by a worker redelivery after `success`:
    /// neither stored nor sent, so every answer stays at the terminal status.
    Superseded,
}

/// How far along a status is. A checkout's answer only moves forward:
/// an update is kept only if it is at least as far along as every status
/// already kept. `success` is furthest: it means money moved (blazing_sun
/// credits it), so it is the truth even after a `failed`, and nothing
/// replaces it.
pub fn progress(status: CheckoutStatus) -> u8 {
    match status {
        CheckoutStatus::SessionCreated => 0,
        CheckoutStatus::Failed => 1,
        CheckoutStatus::Success => 2,
    }
}

struct Entry {
    snapshot: Snapshot,
    seq: u64,
    touched: Instant,
}

struct Inner {
    entries: HashMap<RequestId, Entry>,
    /// Entries by last change, oldest first.
    order: BTreeMap<u64, RequestId>,
    next_seq: u64,
    /// Watchers' channels; separate from `entries` so a watch of a request
    /// not seen yet does not occupy the index.
    channels: HashMap<RequestId, broadcast::Sender<Update>>,
}

/// The bounded request_id -> updates index. Cheap to share (`Arc`).
pub struct Index {
    inner: Mutex<Inner>,
    ttl: Duration,
    max_entries: usize,
    queue: usize,
}

impl Index {
    pub fn new(ttl: Duration, max_entries: usize, queue: usize) -> Self {
        Self {
            inner: Mutex::new(Inner {
                entries: HashMap::new(),
                order: BTreeMap::new(),
                next_seq: 0,
                channels: HashMap::new(),
            }),
            ttl,
            max_entries: max_entries.max(1),
            queue: queue.max(1),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves consistent data (every
        // mutation is a single map operation), so poisoning is ignored.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Stores a `checkout.finished` update and sends it to the checkout's watchers.
    pub fn record_update(&self, id: RequestId, update: Update) -> Recorded {
        let mut inner = self.lock();
        let entry = inner.touch(id);
        if entry
            .snapshot
            .updates
            .iter()
            .any(|u| update.position.seen_by(Some(u.position)))
        {
            return Recorded::Duplicate;
        }
        // Updates are kept in order of progress, so the last is the furthest.
        if let Some(latest) = entry.snapshot.updates.last()
            && progress(update.event.status) < progress(latest.event.status)
        {
            tracing::debug!(
                request_id = %id,
                status = %update.event.status,
                known = %latest.event.status,
                partition = update.position.partition,
                offset = update.position.offset,
                "status older than the known one ignored"
            );
            return Recorded::Superseded;
        }
        entry.snapshot.updates.push(update.clone());
        if let Some(tx) = inner.channels.get(&id) {
            // No receivers left is fine: the sweep removes the channel.
            let _ = tx.send(update);
        }
        self.evict(&mut inner, Instant::now());
        Recorded::Added
    }

    /// Stores what a `checkout.requests` event asked for (the first one wins:
    /// a second request under the same id is a retry or a conflict, and the
    /// caller compares fingerprints; it only fills in a missing trace).
    pub fn record_request(&self, id: RequestId, request: RequestSummary) {
        let mut inner = self.lock();
        let entry = inner.touch(id);
        match &mut entry.snapshot.request {
            Some(known) => {
                if known.trace.is_none() && known.fingerprint == request.fingerprint {
                    known.trace = request.trace;
                }
            }
            None => entry.snapshot.request = Some(request),
        }
        self.evict(&mut inner, Instant::now());
    }

    /// Everything known about `id`, or `None`.
    pub fn get(&self, id: RequestId) -> Option<Snapshot> {
        self.lock().entries.get(&id).map(|e| e.snapshot.clone())
    }

    /// What is known now plus a receiver of every later update, with nothing
    /// lost or repeated between the two.
    pub fn subscribe(&self, id: RequestId) -> (Snapshot, broadcast::Receiver<Update>) {
        let mut inner = self.lock();
        let snapshot = inner
            .entries
            .get(&id)
            .map(|e| e.snapshot.clone())
            .unwrap_or_default();
        let queue = self.queue;
        let rx = inner
            .channels
            .entry(id)
            .or_insert_with(|| broadcast::channel(queue).0)
            .subscribe();
        (snapshot, rx)
    }

    /// Checkouts in the index.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Drops expired entries and channels nobody listens on any more.
    pub fn sweep(&self) {
        let mut inner = self.lock();
        self.evict(&mut inner, Instant::now());
        inner.channels.retain(|_, tx| tx.receiver_count() > 0);
    }

    fn evict(&self, inner: &mut Inner, now: Instant) {
        while let Some((&seq, &id)) = inner.order.first_key_value() {
            let expired = inner
                .entries
                .get(&id)
                .is_none_or(|e| now.duration_since(e.touched) >= self.ttl);
            if !expired && inner.entries.len() <= self.max_entries {
                break;
            }
            inner.order.remove(&seq);
            inner.entries.remove(&id);
        }
    }
}

impl Inner {
    /// The entry for `id`, created if missing, marked as changed now.
    fn touch(&mut self, id: RequestId) -> &mut Entry {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.insert(seq, id);
        let entry = self.entries.entry(id).or_insert_with(|| Entry {
            snapshot: Snapshot::default(),
            seq,
            touched: Instant::now(),
        });
        if entry.seq != seq {
            self.order.remove(&entry.seq);
        }
        entry.seq = seq;
        entry.touched = Instant::now();
        entry
    }
}

/// A request of user 7 for 500 cents, for the unit tests of the index, the
/// tail and WatchCheckout.
#[cfg(test)]
pub(crate) fn test_request(id: RequestId) -> CheckoutRequestEvent {
    CheckoutRequestEvent {
        request_id: id.to_string(),
        user_id: 7,
        amount_cents: 500,
        currency: "eur".into(),
        purpose: "balance_topup".into(),
        timestamp: checkout_contract::events::now(),
        success_url: "https://example.com/s".into(),
        cancel_url: "https://example.com/c".into(),
    }
}

/// An update of a checkout for user 7 at `offset` on partition 1, for the
/// unit tests of the index and of WatchCheckout.
#[cfg(test)]
pub(crate) fn test_update(id: RequestId, offset: i64, status: CheckoutStatus) -> Update {
    let request = test_request(id);
    Update {
        position: Position {
            partition: 1,
            offset,
        },
        event: Arc::new(CheckoutFinishedEvent::for_request(&request, status)),
        trace: None,
    }
}

#[cfg(test)]
mod tests {
    use super::test_update as update;
    use super::*;

    #[test]
    fn duplicates_are_ignored_and_subscribers_get_only_new_updates() {
        let index = Index::new(Duration::from_secs(60), 10, 4);
        let id = RequestId::new_random();
        assert_eq!(
            index.record_update(id, update(id, 5, CheckoutStatus::SessionCreated)),
            Recorded::Added
        );
        assert_eq!(
            index.record_update(id, update(id, 5, CheckoutStatus::SessionCreated)),
            Recorded::Duplicate
        );
        let (snapshot, mut rx) = index.subscribe(id);
        assert_eq!(snapshot.updates.len(), 1);
        assert_eq!(snapshot.owner(), Some(7));
        index.record_update(id, update(id, 9, CheckoutStatus::Success));
        assert_eq!(rx.try_recv().unwrap().position.offset, 9);
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn answers_never_go_backwards_after_a_terminal_status() {
        let index = Index::new(Duration::from_secs(60), 10, 16);
        let id = RequestId::new_random();
        let (_, mut rx) = index.subscribe(id);
        let latest = |index: &Index| index.get(id).unwrap().updates.last().unwrap().event.status;
        index.record_update(id, update(id, 1, CheckoutStatus::SessionCreated));
        // A redelivered session_created before the outcome is still news.
        assert_eq!(
            index.record_update(id, update(id, 2, CheckoutStatus::SessionCreated)),
            Recorded::Added
        );
        assert_eq!(
            index.record_update(id, update(id, 3, CheckoutStatus::Failed)),
            Recorded::Added
        );
        assert_eq!(
            index.record_update(id, update(id, 4, CheckoutStatus::SessionCreated)),
            Recorded::Superseded
        );
        assert_eq!(latest(&index), CheckoutStatus::Failed);
        // A payment is the truth even after a failed, and nothing goes back from it.
        assert_eq!(
            index.record_update(id, update(id, 5, CheckoutStatus::Success)),
            Recorded::Added
        );
        for (offset, status) in [
            (6, CheckoutStatus::SessionCreated),
            (7, CheckoutStatus::Failed),
        ] {
            assert_eq!(
                index.record_update(id, update(id, offset, status)),
                Recorded::Superseded
            );
        }
        assert_eq!(latest(&index), CheckoutStatus::Success);
        assert_eq!(
            index.record_update(id, update(id, 8, CheckoutStatus::Success)),
            Recorded::Added,
            "a second success (webhook and reconciliation) is kept"
        );
        let sent: Vec<i64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|u| u.position.offset)
            .collect();
        assert_eq!(
            sent,
            [1, 2, 3, 5, 8],
            "watchers never hear a superseded status"
        );
    }

    #[test]
    fn the_checkouts_trace_is_the_requests_else_the_first_traced_updates() {
        let index = Index::new(Duration::from_secs(60), 10, 4);
        let id = RequestId::new_random();
        let (worker, webhook) = (TraceContext::new_root(), TraceContext::new_root());
        let traced = |offset, status, trace| Update {
            trace: Some(trace),
            ..update(id, offset, status)
        };
        index.record_update(id, update(id, 1, CheckoutStatus::SessionCreated));
        index.record_update(id, traced(2, CheckoutStatus::Success, webhook));
        assert_eq!(index.get(id).unwrap().trace(id), Some(webhook));
        let request = |trace| {
            RequestSummary {
                fingerprint: 1,
                user_id: 7,
                amount_cents: 500,
                currency: "eur".into(),
                purpose: "balance_topup".into(),
                timestamp: checkout_contract::events::now(),
                trace: None,
            }
            .traced(trace)
        };
        // A request without a traceparent: an update's trace, else the worker's derived one...
        index.record_request(id, request(None));
        let snapshot = index.get(id).unwrap();
        assert_eq!(snapshot.trace(id), Some(webhook), "an update's trace first");
        let bare = RequestId::new_random();
        index.record_request(bare, request(None));
        let derived = TraceContext::for_request(&bare);
        assert_eq!(index.get(bare).unwrap().trace(bare), Some(derived));
        // ...and a trace learnt later (the tail after StartCheckout) fills it in.
        index.record_request(id, request(Some(worker)));
        assert_eq!(index.get(id).unwrap().trace(id), Some(worker));
        index.record_request(id, request(Some(webhook)));
        assert_eq!(index.get(id).unwrap().trace(id), Some(worker), "first wins");
        let pb = pb::CheckoutUpdate::from(&index.get(id).unwrap().updates[1]);
        assert_eq!(pb.traceparent, webhook.header());
        assert_eq!(
            index.get(RequestId::new_random()).map(|s| s.trace(id)),
            None
        );
    }

    #[test]
    fn size_is_bounded_oldest_first() {
        let index = Index::new(Duration::from_secs(60), 3, 4);
        let ids: Vec<RequestId> = (0..5).map(|_| RequestId::new_random()).collect();
        for (i, id) in ids.iter().enumerate() {
            index.record_update(
                *id,
                update(
                    *id,
                    i64::try_from(i).unwrap(),
                    CheckoutStatus::SessionCreated,
                ),
            );
        }
        assert_eq!(index.len(), 3);
        assert!(index.get(ids[0]).is_none() && index.get(ids[1]).is_none());
        assert!(index.get(ids[4]).is_some());
        // Touching an old entry makes it young again.
        index.record_update(ids[2], update(ids[2], 100, CheckoutStatus::Success));
        index.record_update(ids[0], update(ids[0], 101, CheckoutStatus::Success));
        assert!(index.get(ids[2]).is_some() && index.get(ids[3]).is_none());
    }

    #[test]
    fn entries_expire_after_the_ttl_and_idle_channels_are_dropped() {
        let index = Index::new(Duration::ZERO, 10, 4);
        let id = RequestId::new_random();
        index.record_update(id, update(id, 1, CheckoutStatus::SessionCreated));
        index.sweep();
        assert!(index.is_empty());
        let (_, rx) = index.subscribe(id);
        drop(rx);
        index.sweep();
        assert!(index.lock().channels.is_empty());
    }
}
