//! Topic and consumer group names, as the seed document names them
//! (`blazing_sun/src/bootstrap/events/topics.rs` in the seed).

/// Topic names.
pub mod topic {
    /// Checkout request topic: blazing_sun / gateway -> checkout worker.
    pub const CHECKOUT_REQUESTS: &str = "checkout.requests";

    /// Checkout finished topic: checkout worker / webhook -> blazing_sun and the gateway.
    pub const CHECKOUT_FINISHED: &str = "checkout.finished";

    /// Where the checkout worker copies requests it cannot parse.
    pub const CHECKOUT_REQUESTS_DLQ: &str = "checkout.requests.dlq";

    /// Where blazing_sun copies finished events it cannot parse.
    pub const CHECKOUT_FINISHED_DLQ: &str = "checkout.finished.dlq";
}

/// Consumer group names.
pub mod consumer_groups {
    /// Main application consumer group (blazing_sun's `checkout.finished` consumer).
    pub const MAIN_APP: &str = "blazing-sun-main";

    /// The checkout worker's group on `checkout.requests` (set in docker-compose in the seed).
    pub const CHECKOUT_SERVICE: &str = "checkout-service";
}

/// Partitions per checkout topic, as the seed's `kafka/entrypoint.sh` creates them.
pub const PARTITIONS: i32 = 3;

/// The topic names one deployment uses. Production uses [`Topics::default`]
/// (the seed's names); tests give each case its own names with
/// [`Topics::with_suffix`] so they can share one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub requests: String,
    pub finished: String,
    pub requests_dlq: String,
    pub finished_dlq: String,
}

impl Default for Topics {
    fn default() -> Self {
        Self::with_suffix("")
    }
}

impl Topics {
    /// The seed's names with `suffix` appended to each (`""` gives the seed's names).
    pub fn with_suffix(suffix: &str) -> Self {
        Self {
            requests: format!("{}{suffix}", topic::CHECKOUT_REQUESTS),
            finished: format!("{}{suffix}", topic::CHECKOUT_FINISHED),
            requests_dlq: format!("{}{suffix}", topic::CHECKOUT_REQUESTS_DLQ),
            finished_dlq: format!("{}{suffix}", topic::CHECKOUT_FINISHED_DLQ),
        }
    }

    /// All four topics, for `ensure_topics`.
    pub fn all(&self) -> [&str; 4] {
        [
            &self.requests,
            &self.finished,
            &self.requests_dlq,
            &self.finished_dlq,
        ]
    }
}
