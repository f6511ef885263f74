//! Counters tests assert on (`GET /_emulator/stats`): API calls, injected
//! faults, sessions created, webhook attempts and outcomes.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

macro_rules! stats {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Live counters, updated lock-free.
        #[derive(Debug, Default)]
        pub struct Stats { $(pub(crate) $name: AtomicU64,)* }

        /// A point-in-time copy of [`Stats`]: the JSON of `GET /_emulator/stats`.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct StatsSnapshot { $($(#[$doc])* pub $name: u64,)* }

        impl Stats {
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.load(Ordering::Relaxed),)* }
            }
        }
    };
}

stats! {
    /// Every request to `/v1/...`, including rejected ones.
    api_calls,
    /// `POST /v1/checkout/sessions` requests.
    create_calls,
    /// Answered 401 (no or wrong API key).
    unauthorized,
    /// Answered with an injected 429.
    injected_429,
    /// Answered 429 `rate_limit` by the account rate limit (`STRIPE_EMULATOR_RATE_LIMIT`).
    rate_limited,
    /// Answered with an injected 500 (first time; replays are counted in `idempotent_replays`).
    injected_500,
    /// Answered from the idempotency store.
    idempotent_replays,
    /// Sessions actually created.
    sessions_created,
    /// Events generated (each is delivered once, or twice with the duplicate fault).
    events_created,
    /// HTTP delivery attempts made.
    webhook_attempts,
    /// Deliveries answered 2xx.
    webhooks_delivered,
    /// Attempts that failed (non-2xx, connection error, timeout, no endpoint).
    webhook_failed_attempts,
    /// Deliveries abandoned after the last attempt.
    webhooks_given_up,
    /// Extra deliveries caused by the duplicate fault.
    webhook_duplicates,
    /// Events held back by the out-of-order fault.
    webhook_reordered,
    /// Events never delivered because of the lost-webhook fault.
    webhooks_lost,
}

impl Stats {
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
