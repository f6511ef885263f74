//! Per-partition, in-order completion tracking for a worker that handles many
//! messages of one partition at once.
//!
//! Messages finish out of order, but Kafka keeps one offset per partition:
//! storing offset N says "everything up to N is done". So the worker may only
//! store up to the lowest message that is still in flight. [`OffsetTracker`]
//! remembers, per partition, which fetched offsets are still running and
//! answers each completion with the offset that may now be stored (if the
//! watermark moved).
//!
//! When a partition is revoked its state is forgotten; completions of
//! messages fetched under the old assignment carry a stale [`Ticket`] epoch
//! and are ignored, so a re-assigned partition never stores offsets on behalf
//! of work done for a previous owner generation.
//!
//! Used by [`crate::worker`]; pure and synchronous, so it is unit-tested here.

use std::collections::{BTreeMap, HashMap};

/// Proof that a fetched message was registered: hand it back on completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    pub partition: i32,
    pub offset: i64,
    epoch: u64,
}

#[derive(Debug)]
struct PartitionState {
    epoch: u64,
    /// Fetched offsets in order; `true` once handled.
    offsets: BTreeMap<i64, bool>,
}

/// Tracks in-flight offsets of every assigned partition of one topic.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, PartitionState>,
    next_epoch: u64,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a fetched message. Offsets of one partition arrive in
    /// increasing order from the consumer.
    pub fn start(&mut self, partition: i32, offset: i64) -> Ticket {
        let next_epoch = &mut self.next_epoch;
        let state = self.partitions.entry(partition).or_insert_with(|| {
            *next_epoch += 1;
            PartitionState {
                epoch: *next_epoch,
                offsets: BTreeMap::new(),
            }
        });
        state.offsets.insert(offset, false);
        Ticket {
            partition,
            offset,
            epoch: state.epoch,
        }
    }

    /// Marks the ticket's message handled. Returns the highest offset whose
    /// message and every earlier one of its partition are handled, when that
    /// moved (pass it to `store_offset`, which stores `offset + 1`). Returns
    /// `None` when an earlier message is still in flight, or the ticket
    /// belongs to a revoked assignment.
    pub fn complete(&mut self, ticket: Ticket) -> Option<i64> {
        let state = self.partitions.get_mut(&ticket.partition)?;
        if state.epoch != ticket.epoch {
            return None;
        }
        let done = state.offsets.get_mut(&ticket.offset)?;
        *done = true;
        let mut watermark = None;
        while let Some(entry) = state.offsets.first_entry() {
            if !*entry.get() {
                break;
            }
            watermark = Some(*entry.key());
            entry.remove();
        }
        watermark
    }

    /// Forgets a revoked partition: later completions of its tickets are ignored.
    pub fn revoke(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Messages registered and not yet handled, over all partitions.
    pub fn in_flight(&self) -> usize {
        self.partitions
            .values()
            .map(|p| p.offsets.values().filter(|done| !**done).count())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_completion_moves_the_watermark_each_time() {
        let mut t = OffsetTracker::new();
        let a = t.start(0, 10);
        let b = t.start(0, 11);
        assert_eq!(t.complete(a), Some(10));
        assert_eq!(t.complete(b), Some(11));
        assert_eq!(t.in_flight(), 0);
    }

    #[test]
    fn a_slow_message_holds_the_watermark_until_it_finishes() {
        let mut t = OffsetTracker::new();
        let slow = t.start(0, 5);
        let b = t.start(0, 6);
        let c = t.start(0, 7);
        assert_eq!(t.complete(c), None);
        assert_eq!(t.complete(b), None);
        assert_eq!(t.in_flight(), 1);
        // Everything up to 7 is done once the slow one is.
        assert_eq!(t.complete(slow), Some(7));
        let d = t.start(0, 8);
        assert_eq!(t.complete(d), Some(8));
    }

    #[test]
    fn partitions_are_independent() {
        let mut t = OffsetTracker::new();
        let p0 = t.start(0, 100);
        let p1 = t.start(1, 3);
        let p1b = t.start(1, 4);
        assert_eq!(t.complete(p1b), None);
        assert_eq!(t.complete(p1), Some(4));
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.complete(p0), Some(100));
    }

    #[test]
    fn gaps_in_offsets_do_not_stall() {
        // Compaction or transaction markers leave holes; only fetched offsets count.
        let mut t = OffsetTracker::new();
        let a = t.start(2, 1);
        let b = t.start(2, 9);
        assert_eq!(t.complete(b), None);
        assert_eq!(t.complete(a), Some(9));
    }

    #[test]
    fn completions_from_a_revoked_assignment_are_ignored() {
        let mut t = OffsetTracker::new();
        let old = t.start(0, 1);
        t.revoke(0);
        assert_eq!(t.in_flight(), 0);
        let new = t.start(0, 1); // re-assigned, redelivered from the committed offset
        assert_eq!(t.complete(old), None, "stale ticket must not store offsets");
        assert_eq!(t.in_flight(), 1);
        assert_eq!(t.complete(new), Some(1));
    }

    #[test]
    fn completing_twice_is_harmless() {
        let mut t = OffsetTracker::new();
        let a = t.start(0, 1);
        let b = t.start(0, 2);
        assert_eq!(t.complete(a), Some(1));
        assert_eq!(t.complete(a), None);
        assert_eq!(t.complete(b), Some(2));
    }
}
