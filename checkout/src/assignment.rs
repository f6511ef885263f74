//! The partitions of `checkout.requests` this replica owns, and what follows
//! from them: its share of the account's Stripe rate limit, and which open
//! sessions it reconciles.
//!
//! `CHECKOUT_STRIPE_RATE_LIMIT` is the account's limit, not a process's.
//! Every replica runs at `limit × owned / total` partitions, recomputed on
//! every rebalance ([`crate::worker::WorkerContext`] calls
//! [`Assignment::assign`] and [`Assignment::revoke`]). The shares of the
//! group's members add up to the limit with no server of our own, a
//! replica that owns nothing sends nothing, and a survivor takes over a dead
//! replica's share with its partitions. Each replica's burst is a fifth of
//! its share, at least 1 ([`crate::rate_limit::burst_slots`]), so a
//! one-second window may see the limit, plus a fifth of it, plus one call
//! per replica.
//!
//! Reconciliation follows the same split: a session whose `session_created`
//! is on partition `p` of `checkout.finished` is asked about by the owner of
//! partition `p mod total` of `checkout.requests` (the same partition when
//! both topics have the same count, as `ensure_topics` creates them), so
//! every open session has exactly one replica asking Stripe about it.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use crate::rate_limit::RateLimiter;

/// This replica's partitions of `checkout.requests`.
#[derive(Debug)]
pub struct Assignment {
    state: Mutex<State>,
    account_limit: f64,
    limiter: Arc<RateLimiter>,
}

#[derive(Debug, Default)]
struct State {
    owned: BTreeSet<i32>,
    total: i32,
}

impl Assignment {
    /// Nothing owned yet, so `limiter` is closed until the first assignment.
    pub fn new(account_limit: f64, limiter: Arc<RateLimiter>) -> Self {
        limiter.set_rate(0.0);
        Self {
            state: Mutex::new(State::default()),
            account_limit,
            limiter,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `partitions` were assigned, of a topic with `total` partitions.
    pub fn assign(&self, partitions: impl IntoIterator<Item = i32>, total: i32) {
        let mut state = self.lock();
        state.owned.extend(partitions);
        state.total = total;
        self.apply(&state);
    }

    /// `partitions` were revoked.
    pub fn revoke(&self, partitions: impl IntoIterator<Item = i32>) {
        let mut state = self.lock();
        for p in partitions {
            state.owned.remove(&p);
        }
        self.apply(&state);
    }

    fn apply(&self, state: &State) {
        let share = share(self.account_limit, state.owned.len(), state.total);
        self.limiter.set_rate(share);
        tracing::info!(
            owned = ?state.owned,
            total = state.total,
            stripe_rate_limit = share,
            account_rate_limit = self.account_limit,
            "Stripe budget: this replica's share of the account's rate limit"
        );
    }

    /// Whether this replica reconciles the sessions recorded on partition
    /// `finished_partition` of `checkout.finished`.
    pub fn reconciles(&self, finished_partition: i32) -> bool {
        let state = self.lock();
        state.total > 0
            && state
                .owned
                .contains(&finished_partition.rem_euclid(state.total))
    }

    /// The partitions owned now.
    pub fn owned(&self) -> Vec<i32> {
        self.lock().owned.iter().copied().collect()
    }
}

/// `limit × owned / total`; 0 when the total is unknown.
fn share(limit: f64, owned: usize, total: i32) -> f64 {
    if total <= 0 {
        return 0.0;
    }
    // Partition counts are far below 2^52: exact in f64.
    #[allow(clippy::cast_precision_loss)]
    let owned = owned.min(usize::try_from(total).unwrap_or(usize::MAX)) as f64;
    limit * owned / f64::from(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(limit: f64) -> (Assignment, Arc<RateLimiter>) {
        let limiter = Arc::new(RateLimiter::new(limit));
        (Assignment::new(limit, Arc::clone(&limiter)), limiter)
    }

    #[test]
    fn nothing_owned_means_no_calls() {
        let (_, limiter) = assignment(25.0);
        assert_eq!(limiter.rate(), 0.0);
    }

    #[test]
    fn each_replica_takes_its_partitions_share() {
        let (a, limiter) = assignment(30.0);
        a.assign([0, 2], 3);
        assert!((limiter.rate() - 20.0).abs() < 1e-9);
        a.revoke([0, 2]);
        assert_eq!(limiter.rate(), 0.0);
        a.assign([1], 3);
        assert!((limiter.rate() - 10.0).abs() < 1e-9);
    }

    #[test]
    fn the_shares_of_a_group_add_up_to_the_limit() {
        // 7 partitions over 3 replicas: 3 + 2 + 2.
        let replicas: Vec<_> = (0..3).map(|_| assignment(25.0)).collect();
        for (p, (a, _)) in (0..7).zip(replicas.iter().cycle()) {
            a.assign([p], 7);
        }
        let sum: f64 = replicas.iter().map(|(_, l)| l.rate()).sum();
        assert!((sum - 25.0).abs() < 1e-9, "{sum}");
        // One dies: the survivors take its partitions, and its share.
        let dead = replicas[2].0.owned();
        replicas[0].0.assign(dead, 7);
        let sum: f64 = replicas[..2].iter().map(|(_, l)| l.rate()).sum();
        assert!((sum - 25.0).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn every_finished_partition_has_one_reconciling_owner() {
        let (a, _) = assignment(25.0);
        let (b, _) = assignment(25.0);
        a.assign([0, 2], 3);
        b.assign([1], 3);
        // checkout.finished grown to 5 partitions: 3 and 4 map onto 0 and 1.
        for p in 0..5 {
            assert!(a.reconciles(p) ^ b.reconciles(p), "partition {p}");
        }
        assert!(a.reconciles(3) && b.reconciles(4));
    }
}
