//! Topic and consumer group names, as the seed document names them
//! (`blazing_sun/src/bootstrap/events/topics.rs` in the seed).

use crate::env::EnvReader;

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

/// Partitions per checkout topic, as the seed's `kafka/entrypoint.sh`
/// creates them: the default of `CHECKOUT_TOPIC_PARTITIONS`.
pub const PARTITIONS: i32 = 3;

/// The most partitions `CHECKOUT_TOPIC_PARTITIONS` accepts.
pub const MAX_PARTITIONS: i32 = 1000;

/// The topics one deployment uses. Production uses [`Topics::from_env`]
/// (the seed's names, `CHECKOUT_TOPIC_PARTITIONS` partitions); tests give
/// each case its own names with [`Topics::with_suffix`] so they can share
/// one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    pub requests: String,
    pub finished: String,
    pub requests_dlq: String,
    pub finished_dlq: String,
    /// How many partitions `ensure_topics` gives each topic it creates.
    /// Consumer-group replicas beyond this count sit idle.
    pub partitions: i32,
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
            partitions: PARTITIONS,
        }
    }

    /// The seed's names, with `CHECKOUT_TOPIC_PARTITIONS` (default
    /// [`PARTITIONS`], 1 to [`MAX_PARTITIONS`]) partitions.
    pub fn from_env(env: &mut EnvReader) -> Self {
        let partitions = env.parse("CHECKOUT_TOPIC_PARTITIONS", PARTITIONS);
        if !(1..=MAX_PARTITIONS).contains(&partitions) {
            env.error(format!(
                "CHECKOUT_TOPIC_PARTITIONS={partitions}: must be between 1 and {MAX_PARTITIONS}"
            ));
        }
        Self {
            partitions,
            ..Self::default()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn from(vars: &[(&str, &str)]) -> (Topics, Result<(), crate::env::ConfigError>) {
        let mut env =
            EnvReader::from_map(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        let topics = Topics::from_env(&mut env);
        (topics, env.finish())
    }

    #[test]
    fn partitions_default_to_the_seeds_three_and_are_a_setting() {
        let (topics, ok) = from(&[]);
        assert!(ok.is_ok());
        assert_eq!(topics, Topics::default());
        assert_eq!(topics.partitions, 3);
        let (topics, ok) = from(&[("CHECKOUT_TOPIC_PARTITIONS", "12")]);
        assert!(ok.is_ok());
        assert_eq!(topics.partitions, 12);
        assert_eq!(topics.requests, "checkout.requests");
    }

    #[test]
    fn bad_partition_counts_are_refused_by_name() {
        for bad in ["0", "-1", "1001", "three"] {
            let (_, result) = from(&[("CHECKOUT_TOPIC_PARTITIONS", bad)]);
            let message = result.expect_err(bad).to_string();
            assert!(message.contains("CHECKOUT_TOPIC_PARTITIONS"), "{message}");
        }
    }
}
