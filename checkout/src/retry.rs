//! Retry budget and jittered exponential backoff for transient Stripe errors
//! (409, 429, 5xx, timeouts) and for Kafka publishes.
//!
//! "Full jitter" (AWS architecture blog): the n-th wait is uniformly random in
//! `[0, min(max, base * 2^n)]`, so many requests that failed together do not
//! retry together. Used by [`crate::stripe`] and [`crate::checkout_request`].
//!
//! When the server says how long to wait (`Retry-After`), the wait is at
//! least that, up to [`RETRY_AFTER_CAP`] ([`RetryPolicy::wait`]).

use std::time::Duration;

use rand::Rng;

/// The longest `Retry-After` obeyed within one call (Stripe's own SDKs cap
/// it at 60 s too); a longer one waits this long, then retries.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(60);

/// How often and how patiently to retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (at least 1).
    pub max_attempts: u32,
    /// Upper bound of the first wait.
    pub base: Duration,
    /// Upper bound of any wait.
    pub max: Duration,
}

impl RetryPolicy {
    /// The cap of the wait after failed attempt number `attempt` (1-based).
    pub fn cap(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(20);
        self.base.saturating_mul(1 << exp).min(self.max)
    }

    /// A random wait in `[0, cap(attempt)]`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let cap = self.cap(attempt);
        let cap_ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::rng().random_range(0..=cap_ms))
    }

    /// The wait after failed attempt number `attempt`: the jittered
    /// [`Self::backoff`], or the server's `retry_after` (capped at
    /// [`RETRY_AFTER_CAP`]) when that is longer.
    pub fn wait(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let backoff = self.backoff(attempt);
        retry_after.map_or(backoff, |after| backoff.max(after.min(RETRY_AFTER_CAP)))
    }

    /// Whether another attempt is allowed after `attempts` failed ones.
    pub fn allows_another(&self, attempts: u32) -> bool {
        attempts < self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        base: Duration::from_millis(100),
        max: Duration::from_secs(1),
    };

    #[test]
    fn caps_double_up_to_the_maximum() {
        let caps: Vec<u128> = (1..=6).map(|a| POLICY.cap(a).as_millis()).collect();
        assert_eq!(caps, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(POLICY.cap(u32::MAX), Duration::from_secs(1));
    }

    #[test]
    fn backoff_is_jittered_within_the_cap() {
        let waits: Vec<Duration> = (0..200).map(|_| POLICY.backoff(3)).collect();
        assert!(waits.iter().all(|w| *w <= Duration::from_millis(400)));
        let distinct: std::collections::HashSet<_> = waits.iter().collect();
        assert!(distinct.len() > 10, "waits should vary, got {distinct:?}");
    }

    #[test]
    fn retry_after_is_a_floor_with_a_cap() {
        for _ in 0..50 {
            assert_eq!(
                POLICY.wait(1, Some(Duration::from_secs(3))),
                Duration::from_secs(3)
            );
            assert!(POLICY.wait(1, None) <= Duration::from_millis(100));
            assert!(POLICY.wait(1, Some(Duration::ZERO)) <= Duration::from_millis(100));
        }
        assert_eq!(
            POLICY.wait(1, Some(Duration::from_secs(3600))),
            RETRY_AFTER_CAP
        );
    }

    #[test]
    fn the_budget_counts_the_first_attempt() {
        assert!(POLICY.allows_another(3));
        assert!(!POLICY.allows_another(4));
    }
}
