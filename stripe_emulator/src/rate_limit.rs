//! Stripe's account-wide rate limit and the per-second request log tests
//! read it with ([`crate::Handle::api_requests_per_second`]).
//!
//! Stripe limits API requests per account (per secret key here) and answers
//! 429 `rate_limit` beyond the limit; every request counts, including ones
//! that fail (400, 404, 500). The emulator's rule is a **fixed one-second
//! window**: second `i` is `[start + i s, start + i+1 s)` measured from
//! [`crate::Emulator::build`], and at most `limit` requests of one key are
//! let through in each such second; later ones in the same second get 429.
//! The log counts arrivals in exactly the same windows, so "admitted requests
//! in every logged second are at most the limit" holds by construction and a
//! test can assert it of a client that is supposed to keep under the limit.
//! `STRIPE_EMULATOR_RATE_LIMIT` (requests per second per secret key) sets
//! it; unset or 0 is no limit (the injected random 429s stay a separate fault).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

/// Arrivals and rate-limited answers per whole second since start.
#[derive(Debug, Default, Clone)]
struct Seconds {
    arrived: Vec<u32>,
    limited: Vec<u32>,
}

impl Seconds {
    fn bump(counts: &mut Vec<u32>, second: usize) {
        if counts.len() <= second {
            counts.resize(second + 1, 0);
        }
        counts[second] = counts[second].saturating_add(1);
    }

    fn at(counts: &[u32], second: usize) -> u32 {
        counts.get(second).copied().unwrap_or(0)
    }

    /// Both series padded to `len` (the current second inclusive).
    fn padded(counts: &[u32], len: usize) -> Vec<u32> {
        let mut out = counts.to_vec();
        out.resize(len.max(out.len()), 0);
        out
    }
}

#[derive(Debug, Default)]
struct Log {
    total: Seconds,
    by_key: HashMap<String, Seconds>,
}

/// The limit and the log; one per emulator.
#[derive(Debug)]
pub struct RateLimiter {
    start: Instant,
    /// Requests per second per key; 0 is off.
    limit: AtomicU32,
    log: Mutex<Log>,
}

/// The verdict on one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// Over the key's limit in this second: answer 429 `rate_limit`.
    Limited,
}

impl RateLimiter {
    /// `limit` requests per second per key; `None` or 0: no limit.
    pub fn new(limit: Option<u32>) -> Self {
        Self {
            start: Instant::now(),
            limit: AtomicU32::new(limit.unwrap_or(0)),
            log: Mutex::new(Log::default()),
        }
    }

    /// The current limit (`None`: off).
    pub fn limit(&self) -> Option<u32> {
        Some(self.limit.load(Ordering::Relaxed)).filter(|&l| l > 0)
    }

    /// Changes the limit from now on (`None` or 0: off).
    pub fn set_limit(&self, limit: Option<u32>) {
        self.limit.store(limit.unwrap_or(0), Ordering::Relaxed);
    }

    fn second_now(&self) -> usize {
        usize::try_from(self.start.elapsed().as_secs()).unwrap_or(usize::MAX - 1)
    }

    /// Logs one API request and decides it. `key` is the accepted secret
    /// key, `None` for a request refused with 401 (logged in the total only,
    /// never limited).
    pub fn arrive(&self, key: Option<&str>) -> Admission {
        self.arrive_in(self.second_now(), key)
    }

    fn arrive_in(&self, second: usize, key: Option<&str>) -> Admission {
        let limit = self.limit();
        let mut log = self.log.lock().expect("rate log lock");
        Seconds::bump(&mut log.total.arrived, second);
        let Some(key) = key else {
            return Admission::Admitted;
        };
        let per_key = log.by_key.entry(key.to_owned()).or_default();
        Seconds::bump(&mut per_key.arrived, second);
        let admitted_so_far =
            Seconds::at(&per_key.arrived, second) - 1 - Seconds::at(&per_key.limited, second);
        match limit {
            Some(limit) if admitted_so_far >= limit => {
                Seconds::bump(&mut per_key.limited, second);
                Seconds::bump(&mut log.total.limited, second);
                Admission::Limited
            }
            _ => Admission::Admitted,
        }
    }

    /// API requests that arrived in each whole second since start (index 0
    /// is the first second), every key and 401s included, rate-limited ones
    /// too; the last entry is the second in progress.
    pub fn requests_per_second(&self) -> Vec<u32> {
        let len = self.second_now() + 1;
        Seconds::padded(&self.log.lock().expect("rate log lock").total.arrived, len)
    }

    /// Of [`RateLimiter::requests_per_second`], those answered 429 `rate_limit`
    /// by the account limit (not the injected random 429s), same indexing.
    pub fn limited_per_second(&self) -> Vec<u32> {
        let len = self.second_now() + 1;
        Seconds::padded(&self.log.lock().expect("rate log lock").total.limited, len)
    }

    /// Arrivals per second for each accepted secret key, same indexing.
    pub fn requests_per_second_by_key(&self) -> BTreeMap<String, Vec<u32>> {
        let len = self.second_now() + 1;
        let log = self.log.lock().expect("rate log lock");
        log.by_key
            .iter()
            .map(|(k, s)| (k.clone(), Seconds::padded(&s.arrived, len)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_key_gets_the_limit_in_each_second_and_everything_is_logged() {
        use Admission::{Admitted, Limited};
        let limiter = RateLimiter::new(Some(3));
        let a = |second| limiter.arrive_in(second, Some("sk_test_a"));
        let first: Vec<Admission> = (0..5).map(|_| a(0)).collect();
        assert_eq!(first, [Admitted, Admitted, Admitted, Limited, Limited]);
        // Another key has its own budget; a 401 is logged, never limited.
        assert_eq!(limiter.arrive_in(0, Some("sk_test_b")), Admitted);
        assert_eq!(limiter.arrive_in(0, None), Admitted);
        // The next window starts afresh; a skipped second is logged as 0.
        let third: Vec<Admission> = (0..4).map(|_| a(2)).collect();
        assert_eq!(third, [Admitted, Admitted, Admitted, Limited]);

        let log = limiter.log.lock().unwrap();
        assert_eq!(log.total.arrived, [7, 0, 4]);
        assert_eq!(log.total.limited, [2, 0, 1]);
        assert_eq!(log.by_key["sk_test_b"].arrived, [1]);
        drop(log);

        limiter.set_limit(None);
        assert_eq!(limiter.limit(), None);
        assert_eq!(a(2), Admitted);
        assert_eq!(limiter.requests_per_second()[..3], [7, 0, 5]);
        assert_eq!(limiter.limited_per_second()[..3], [2, 0, 1]);
    }
}
