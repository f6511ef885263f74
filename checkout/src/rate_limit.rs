//! A client-side rate limit for calls to Stripe (25 requests/s in test mode,
//! 100 in live mode), shared by every in-flight request of the worker.
//!
//! Each caller reserves the next free slot on an evenly spaced schedule and
//! sleeps until it; a small burst allowance lets an idle worker start a
//! handful of calls at once. Every attempt, retries included, takes a slot,
//! so retries never push the worker over Stripe's limit. Used by
//! [`crate::stripe`].

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// An evenly spaced schedule of `per_second` slots with a burst allowance.
#[derive(Debug)]
pub struct RateLimiter {
    interval: Duration,
    burst: Duration,
    next: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// `per_second` must be positive; `burst` slots may be used at once after
    /// an idle period (at least 1).
    pub fn new(per_second: f64, burst: u32) -> Self {
        let interval = Duration::from_secs_f64(1.0 / per_second.max(f64::MIN_POSITIVE));
        Self {
            interval,
            burst: interval * burst.saturating_sub(1),
            next: Mutex::new(None),
        }
    }

    /// Waits for this caller's slot.
    pub async fn acquire(&self) {
        let slot = self.reserve(Instant::now());
        tokio::time::sleep_until(slot).await;
    }

    /// Reserves the next slot at or after `now` and returns when it is.
    fn reserve(&self, now: Instant) -> Instant {
        let mut next = self
            .next
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // An idle limiter may hand out up to `burst` slots right away.
        let earliest = now.checked_sub(self.burst).unwrap_or(now);
        let slot = next.map_or(now, |n| n.max(earliest));
        *next = Some(slot + self.interval);
        slot.max(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_spaced_by_the_interval() {
        let limiter = RateLimiter::new(10.0, 1);
        let now = Instant::now();
        let slots: Vec<Duration> = (0..4).map(|_| limiter.reserve(now) - now).collect();
        assert_eq!(
            slots,
            [0, 100, 200, 300].map(Duration::from_millis).to_vec(),
            "10/s means one slot every 100 ms"
        );
    }

    #[test]
    fn an_idle_limiter_allows_a_burst_then_spaces() {
        let limiter = RateLimiter::new(10.0, 3);
        let start = Instant::now();
        limiter.reserve(start);
        // Long idle: the schedule does not remember the past.
        let later = start + Duration::from_secs(10);
        let slots: Vec<Duration> = (0..5).map(|_| limiter.reserve(later) - later).collect();
        assert_eq!(
            slots,
            [0, 0, 0, 100, 200].map(Duration::from_millis).to_vec()
        );
    }

    #[tokio::test]
    async fn acquire_waits_for_the_slot() {
        let limiter = RateLimiter::new(50.0, 1);
        let start = Instant::now();
        for _ in 0..6 {
            limiter.acquire().await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(100),
            "6 calls at 50/s take at least 100 ms"
        );
    }
}
