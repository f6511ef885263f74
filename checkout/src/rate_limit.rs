//! A client-side rate limit for calls to Stripe, shared by every in-flight
//! request of the worker and by reconciliation.
//!
//! Each caller reserves the next free slot on an evenly spaced schedule and
//! sleeps until it; a small burst allowance (a fifth of a second's worth of
//! slots, 1 to 10) lets an idle limiter start a handful of calls at once.
//! Every attempt, retries included, takes a slot, so retries never push the
//! worker over Stripe's limit.
//!
//! The rate can change while the worker runs ([`RateLimiter::set_rate`]):
//! a replica runs at its share of the account's limit
//! ([`crate::assignment`]), and a rate of 0 (a replica that owns no
//! partition, or one between a revocation and its next assignment) holds
//! every caller until the rate is positive again. Used by [`crate::stripe`].

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// An evenly spaced schedule of slots with a burst allowance.
#[derive(Debug)]
pub struct RateLimiter {
    schedule: Mutex<Schedule>,
    /// The current rate, so callers held at rate 0 wake when it changes.
    rate: watch::Sender<f64>,
}

#[derive(Debug)]
struct Schedule {
    /// `None` while the rate is 0.
    interval: Option<Duration>,
    burst: Duration,
    next: Option<Instant>,
}

impl Schedule {
    fn new(per_second: f64) -> Self {
        if !(per_second.is_finite() && per_second > 0.0) {
            return Self {
                interval: None,
                burst: Duration::ZERO,
                next: None,
            };
        }
        let interval = Duration::from_secs_f64(1.0 / per_second);
        Self {
            interval: Some(interval),
            burst: interval * burst_slots(per_second).saturating_sub(1),
            next: None,
        }
    }
}

/// How many slots an idle limiter hands out at once at `per_second`.
pub fn burst_slots(per_second: f64) -> u32 {
    // Truncation is intended: a fifth of a second's worth, 1 to 10.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let slots = (per_second / 5.0).clamp(1.0, 10.0) as u32;
    slots
}

impl RateLimiter {
    /// `per_second` slots a second (0 or less: closed until [`Self::set_rate`]).
    pub fn new(per_second: f64) -> Self {
        Self {
            schedule: Mutex::new(Schedule::new(per_second)),
            rate: watch::Sender::new(per_second.max(0.0)),
        }
    }

    /// The current rate, in slots per second.
    pub fn rate(&self) -> f64 {
        *self.rate.borrow()
    }

    /// Changes the rate from the next reservation on (slots already handed
    /// out stand). The schedule starts afresh, with the new burst.
    pub fn set_rate(&self, per_second: f64) {
        let per_second = per_second.max(0.0);
        {
            let mut schedule = self.lock();
            let next = schedule.next;
            *schedule = Schedule::new(per_second);
            // Keep the spacing from slots already handed out.
            schedule.next = next;
        }
        self.rate.send_replace(per_second);
    }

    /// Waits for this caller's slot.
    pub async fn acquire(&self) {
        let mut rate = self.rate.subscribe();
        loop {
            if let Some(slot) = self.reserve(Instant::now()) {
                tokio::time::sleep_until(slot).await;
                return;
            }
            // Closed: wait for a positive rate.
            if rate.wait_for(|r| *r > 0.0).await.is_err() {
                return;
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Schedule> {
        self.schedule
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Reserves the next slot at or after `now` and returns when it is;
    /// `None` while the rate is 0.
    fn reserve(&self, now: Instant) -> Option<Instant> {
        let mut schedule = self.lock();
        let interval = schedule.interval?;
        // An idle limiter may hand out up to `burst` slots right away.
        let earliest = now.checked_sub(schedule.burst).unwrap_or(now);
        let slot = schedule.next.map_or(now, |n| n.max(earliest));
        schedule.next = Some(slot + interval);
        Some(slot.max(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offsets(limiter: &RateLimiter, now: Instant, n: usize) -> Vec<Duration> {
        (0..n)
            .map(|_| limiter.reserve(now).expect("open") - now)
            .collect()
    }

    #[test]
    fn slots_are_spaced_by_the_interval() {
        let limiter = RateLimiter::new(4.0);
        let now = Instant::now();
        assert_eq!(
            offsets(&limiter, now, 4),
            [0, 250, 500, 750].map(Duration::from_millis).to_vec(),
            "4/s means one slot every 250 ms (burst 1 below 10/s)"
        );
    }

    #[test]
    fn an_idle_limiter_allows_a_burst_then_spaces() {
        let limiter = RateLimiter::new(25.0);
        let start = Instant::now();
        limiter.reserve(start);
        // Long idle: the schedule does not remember the past.
        let later = start + Duration::from_secs(10);
        assert_eq!(
            offsets(&limiter, later, 7),
            [0, 0, 0, 0, 0, 40, 80].map(Duration::from_millis).to_vec(),
            "25/s: a burst of 5, then one slot every 40 ms"
        );
    }

    #[test]
    fn the_burst_is_a_fifth_of_a_second_between_1_and_10() {
        assert_eq!(burst_slots(1.0), 1);
        assert_eq!(burst_slots(8.4), 1);
        assert_eq!(burst_slots(25.0), 5);
        assert_eq!(burst_slots(1000.0), 10);
    }

    #[test]
    fn a_new_rate_applies_to_the_next_slots() {
        let limiter = RateLimiter::new(4.0);
        let now = Instant::now();
        assert_eq!(limiter.reserve(now), Some(now));
        limiter.set_rate(2.0);
        assert_eq!(limiter.rate(), 2.0);
        assert_eq!(
            offsets(&limiter, now, 2),
            [250, 750].map(Duration::from_millis).to_vec(),
            "the slot already handed out keeps its place; then 500 ms apart"
        );
    }

    #[tokio::test]
    async fn a_closed_limiter_holds_callers_until_it_opens() {
        let limiter = std::sync::Arc::new(RateLimiter::new(0.0));
        assert_eq!(limiter.reserve(Instant::now()), None);
        let waiting = tokio::spawn({
            let limiter = std::sync::Arc::clone(&limiter);
            async move { limiter.acquire().await }
        });
        // Still waiting while the rate is 0 (checked by condition, not time:
        // the task cannot finish before the rate changes).
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "no slot while the rate is 0");
        limiter.set_rate(10.0);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("released once the rate is positive")
            .unwrap();
    }

    #[tokio::test]
    async fn acquire_waits_for_the_slot() {
        let limiter = RateLimiter::new(50.0);
        let start = Instant::now();
        for _ in 0..16 {
            limiter.acquire().await;
        }
        assert!(
            start.elapsed() >= Duration::from_millis(100),
            "16 calls at 50/s with a burst of 10 take at least 100 ms"
        );
    }
}
