//! The checkout service's typed configuration, read from the environment
//! with defaults that work locally ([`Config::from_env`]), or built in code
//! by tests and the all-in-one launcher ([`Config::new`]).

use std::net::SocketAddr;
use std::time::Duration;

use checkout_contract::HostAllowlist;
use checkout_contract::cli::{self, Group, Setting};
use checkout_contract::env::{ConfigError, EnvReader};
use checkout_contract::kafka::{GroupInstanceId, KafkaConfig};
use checkout_contract::secret::Secret;
use checkout_contract::topics::{Topics, consumer_groups};

use crate::retry::RetryPolicy;

/// Every variable [`Config::from_env`] reads, for `checkout --help` and its
/// flags (`checkout_contract::cli`); a test proves it matches the reads.
pub const SETTINGS: &[Group] = &[
    cli::KAFKA,
    Group {
        heading: "Worker",
        settings: &[
            Setting {
                env: "CHECKOUT_CONSUMER_GROUP",
                default: "checkout-service",
                help: "consumer group on checkout.requests",
            },
            Setting {
                env: "CHECKOUT_GROUP_INSTANCE_ID",
                default: "",
                help: "a static group member's id, {hostname} stands for HOSTNAME, never one value for two processes (unset: a dynamic member)",
            },
            cli::HOSTNAME,
            cli::TOPIC_PARTITIONS,
            Setting {
                env: "CHECKOUT_MAX_IN_FLIGHT",
                default: "64",
                help: "requests handled at once",
            },
            Setting {
                env: "CHECKOUT_PUBLISH_TIMEOUT_MS",
                default: "5000",
                help: "how long a publish waits for the broker's acknowledgement",
            },
            Setting {
                env: "CHECKOUT_SHUTDOWN_GRACE_MS",
                default: "10000",
                help: "how long in-flight requests may finish after a stop",
            },
            cli::REDIRECT_HOSTS,
        ],
    },
    Group {
        heading: "Stripe",
        settings: &[
            Setting {
                env: "STRIPE_SECRET_KEY",
                default: "",
                help: "the Stripe API key, sk_... or rk_... (required)",
            },
            Setting {
                env: "STRIPE_API_BASE",
                default: DEFAULT_API_BASE,
                help: "Stripe's API, or the emulator's; ends in /",
            },
            Setting {
                env: "CHECKOUT_STRIPE_TIMEOUT_MS",
                default: "10000",
                help: "per HTTP attempt",
            },
            Setting {
                env: "CHECKOUT_STRIPE_RATE_LIMIT",
                default: "25",
                help: "requests per second for the whole Stripe account, shared by the replicas by partition",
            },
            Setting {
                env: "CHECKOUT_STRIPE_MAX_ATTEMPTS",
                default: "5",
                help: "attempts per call, then the request looks its session up and waits",
            },
            Setting {
                env: "CHECKOUT_STRIPE_RETRY_BASE_MS",
                default: "250",
                help: "first retry backoff, doubled per attempt",
            },
            Setting {
                env: "CHECKOUT_STRIPE_RETRY_MAX_MS",
                default: "5000",
                help: "retry backoff cap",
            },
            Setting {
                env: "CHECKOUT_RECONCILE_INTERVAL_SECS",
                default: "300",
                help: "how often sessions without an outcome are looked up at Stripe",
            },
            Setting {
                env: "CHECKOUT_RECONCILE_AFTER_SECS",
                default: "600",
                help: "how old such a session must be before it is looked up",
            },
        ],
    },
    Group {
        heading: "Webhook",
        settings: &[
            Setting {
                env: "STRIPE_WEBHOOK_SECRET",
                default: "",
                help: "whsec_... signing secret, comma-separated during rotation (required)",
            },
            Setting {
                env: "CHECKOUT_WEBHOOK_LISTEN",
                default: DEFAULT_WEBHOOK_LISTEN,
                help: "where Stripe POSTs its events",
            },
            Setting {
                env: "CHECKOUT_WEBHOOK_MAX_BODY_BYTES",
                default: "262144",
                help: "larger bodies get 413",
            },
            Setting {
                env: "CHECKOUT_WEBHOOK_HEADER_TIMEOUT_MS",
                default: "10000",
                help: "a client must send its request headers within this time",
            },
            Setting {
                env: "CHECKOUT_WEBHOOK_BODY_TIMEOUT_MS",
                default: "10000",
                help: "... and its body within this time",
            },
        ],
    },
];

/// Stripe's API, as the worker calls it.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    /// `STRIPE_SECRET_KEY` (`sk_...` or `rk_...`).
    pub secret_key: Secret,
    /// `STRIPE_API_BASE`: Stripe's, or the emulator's; ends in `/`.
    pub api_base: String,
    /// `CHECKOUT_STRIPE_TIMEOUT_MS`: per HTTP attempt (the client has none by default).
    pub timeout: Duration,
    /// `CHECKOUT_STRIPE_RATE_LIMIT`: the account's requests per second,
    /// retries included, shared by the replicas by partition
    /// ([`crate::assignment`]).
    pub rate_limit: f64,
    /// `CHECKOUT_STRIPE_MAX_ATTEMPTS`, `CHECKOUT_STRIPE_RETRY_BASE_MS`,
    /// `CHECKOUT_STRIPE_RETRY_MAX_MS`: the budget for 409/429/5xx/timeouts.
    pub retry: RetryPolicy,
}

/// The webhook endpoint.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// `CHECKOUT_WEBHOOK_LISTEN` (port 0 picks a free port).
    pub listen: SocketAddr,
    /// `STRIPE_WEBHOOK_SECRET`: comma-separated during rotation; any one may sign.
    pub secrets: Vec<Secret>,
    /// `CHECKOUT_WEBHOOK_MAX_BODY_BYTES`: larger bodies get 413.
    pub max_body_bytes: usize,
    /// `CHECKOUT_WEBHOOK_HEADER_TIMEOUT_MS`: a client must send its request
    /// headers within this time (slow-loris), default 10000.
    pub header_read_timeout: Duration,
    /// `CHECKOUT_WEBHOOK_BODY_TIMEOUT_MS`: ... and its body within this time, default 10000.
    pub body_read_timeout: Duration,
}

/// Reconciliation with Stripe ([`crate::reconcile`]): no payment depends on
/// a webhook arriving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileConfig {
    /// `CHECKOUT_RECONCILE_INTERVAL_SECS`: how often the open sessions are
    /// looked at (default 300).
    pub interval: Duration,
    /// `CHECKOUT_RECONCILE_AFTER_SECS`: how old a session without an outcome
    /// must be before Stripe is asked about it (default 600): the webhook
    /// normally answers long before.
    pub after: Duration,
}

impl Default for ReconcileConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(300),
            after: Duration::from_secs(600),
        }
    }
}

/// Everything the checkout service needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub kafka: KafkaConfig,
    /// Topic names; [`Topics::default`] in production.
    pub topics: Topics,
    /// `CHECKOUT_CONSUMER_GROUP` on `checkout.requests`.
    pub consumer_group: String,
    /// `CHECKOUT_GROUP_INSTANCE_ID`: unset, the worker is a dynamic group
    /// member; set, a static one, so a restarted worker takes over its
    /// partitions at once (`{hostname}` stands for `HOSTNAME`).
    pub group_instance_id: Option<GroupInstanceId>,
    pub stripe: StripeConfig,
    pub webhook: WebhookConfig,
    /// `CHECKOUT_MAX_IN_FLIGHT`: requests handled at once.
    pub max_in_flight: usize,
    /// `CHECKOUT_SHUTDOWN_GRACE_MS`: how long in-flight requests may finish after a stop.
    pub shutdown_grace: Duration,
    /// `CHECKOUT_PUBLISH_TIMEOUT_MS`: how long a publish may wait for the broker's ack
    /// (the webhook answers 5xx after it, so Stripe retries).
    pub publish_timeout: Duration,
    /// `CHECKOUT_REDIRECT_HOSTS`: hosts success_url and cancel_url may point
    /// at; a request naming another host is answered `failed`.
    pub redirect_hosts: HostAllowlist,
    pub reconcile: ReconcileConfig,
}

pub const DEFAULT_API_BASE: &str = "https://api.stripe.com/";
pub const DEFAULT_WEBHOOK_LISTEN: &str = "127.0.0.1:8081";
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
pub const DEFAULT_RATE_LIMIT: f64 = 25.0;
pub const DEFAULT_MAX_BODY_BYTES: usize = 256 * 1024;
/// Header and body read timeouts of the webhook listener.
pub const DEFAULT_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 5,
    base: Duration::from_millis(250),
    max: Duration::from_secs(5),
};

impl Config {
    /// Production defaults, for the given broker, Stripe base URL, key and
    /// webhook secret; the webhook listens on `127.0.0.1:0`. Adjust the
    /// public fields as needed.
    pub fn new(
        bootstrap_servers: impl Into<String>,
        stripe_api_base: impl Into<String>,
        stripe_secret_key: Secret,
        webhook_secret: Secret,
    ) -> Self {
        Self {
            kafka: KafkaConfig::new(bootstrap_servers, "checkout"),
            topics: Topics::default(),
            consumer_group: consumer_groups::CHECKOUT_SERVICE.to_owned(),
            group_instance_id: None,
            stripe: StripeConfig {
                secret_key: stripe_secret_key,
                api_base: stripe_api_base.into(),
                timeout: Duration::from_secs(10),
                rate_limit: DEFAULT_RATE_LIMIT,
                retry: DEFAULT_RETRY,
            },
            webhook: WebhookConfig {
                listen: SocketAddr::from(([127, 0, 0, 1], 0)),
                secrets: vec![webhook_secret],
                max_body_bytes: DEFAULT_MAX_BODY_BYTES,
                header_read_timeout: DEFAULT_CLIENT_TIMEOUT,
                body_read_timeout: DEFAULT_CLIENT_TIMEOUT,
            },
            max_in_flight: DEFAULT_MAX_IN_FLIGHT,
            shutdown_grace: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(5),
            redirect_hosts: HostAllowlist::local_default(),
            reconcile: ReconcileConfig::default(),
        }
    }

    /// Reads the process environment.
    ///
    /// # Errors
    /// Every bad or missing variable, at once.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::from_env())
    }

    /// Reads from `env` (a map in tests).
    ///
    /// # Errors
    /// Every bad or missing variable, at once.
    pub fn from_reader(mut env: EnvReader) -> Result<Self, ConfigError> {
        let kafka = KafkaConfig::from_env(&mut env, "checkout");
        let consumer_group =
            env.string("CHECKOUT_CONSUMER_GROUP", consumer_groups::CHECKOUT_SERVICE);
        let group_instance_id = GroupInstanceId::from_env(&mut env, "CHECKOUT_GROUP_INSTANCE_ID");

        let stripe = StripeConfig::from_env(&mut env);
        let webhook = WebhookConfig::from_env(&mut env);
        let max_in_flight: usize = env.parse("CHECKOUT_MAX_IN_FLIGHT", DEFAULT_MAX_IN_FLIGHT);
        if max_in_flight == 0 {
            env.error("CHECKOUT_MAX_IN_FLIGHT: must be at least 1");
        }
        let shutdown_grace = env.millis("CHECKOUT_SHUTDOWN_GRACE_MS", Duration::from_secs(10));
        let publish_timeout = env.millis("CHECKOUT_PUBLISH_TIMEOUT_MS", Duration::from_secs(5));
        if publish_timeout.is_zero() {
            env.error("CHECKOUT_PUBLISH_TIMEOUT_MS: must be positive");
        }

        let redirect_hosts = HostAllowlist::from_env(&mut env);
        let reconcile = ReconcileConfig::from_env(&mut env);
        let topics = Topics::from_env(&mut env);
        env.finish()?;
        Ok(Self {
            kafka,
            topics,
            consumer_group,
            group_instance_id,
            stripe,
            webhook,
            max_in_flight,
            shutdown_grace,
            publish_timeout,
            redirect_hosts,
            reconcile,
        })
    }
}

impl StripeConfig {
    /// Reads the `STRIPE_*` and `CHECKOUT_STRIPE_*` variables; problems go to `env`.
    fn from_env(env: &mut EnvReader) -> Self {
        let secret_key = env.secret("STRIPE_SECRET_KEY", None);
        if !secret_key.is_empty()
            && !["sk_", "rk_"]
                .iter()
                .any(|p| secret_key.expose().starts_with(p))
        {
            env.error("STRIPE_SECRET_KEY: must start with sk_ or rk_");
        }
        let api_base = env.string("STRIPE_API_BASE", DEFAULT_API_BASE);
        if !api_base.ends_with('/')
            || !(api_base.starts_with("http://") || api_base.starts_with("https://"))
        {
            env.error(format!(
                "STRIPE_API_BASE={api_base:?}: must be an http(s) URL ending in /"
            ));
        }
        let timeout = env.millis("CHECKOUT_STRIPE_TIMEOUT_MS", Duration::from_secs(10));
        let rate_limit: f64 = env.parse("CHECKOUT_STRIPE_RATE_LIMIT", DEFAULT_RATE_LIMIT);
        if !(rate_limit.is_finite() && rate_limit > 0.0) {
            env.error(format!("CHECKOUT_STRIPE_RATE_LIMIT={rate_limit}: must be a positive number of requests per second"));
        }
        let max_attempts: u32 =
            env.parse("CHECKOUT_STRIPE_MAX_ATTEMPTS", DEFAULT_RETRY.max_attempts);
        if max_attempts == 0 {
            env.error("CHECKOUT_STRIPE_MAX_ATTEMPTS: must be at least 1");
        }
        let retry = RetryPolicy {
            max_attempts,
            base: env.millis("CHECKOUT_STRIPE_RETRY_BASE_MS", DEFAULT_RETRY.base),
            max: env.millis("CHECKOUT_STRIPE_RETRY_MAX_MS", DEFAULT_RETRY.max),
        };
        Self {
            secret_key,
            api_base,
            timeout,
            rate_limit,
            retry,
        }
    }
}

impl WebhookConfig {
    /// Reads `STRIPE_WEBHOOK_SECRET` and the `CHECKOUT_WEBHOOK_*` variables;
    /// problems go to `env`.
    fn from_env(env: &mut EnvReader) -> Self {
        let webhook_secrets: Vec<Secret> = env
            .optional("STRIPE_WEBHOOK_SECRET")
            .map(|raw| {
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(Secret::new)
                    .collect()
            })
            .unwrap_or_default();
        if webhook_secrets.is_empty() {
            env.error("STRIPE_WEBHOOK_SECRET: must be set (comma-separated during rotation)");
        }
        let listen = env.parse(
            "CHECKOUT_WEBHOOK_LISTEN",
            DEFAULT_WEBHOOK_LISTEN.parse().expect("valid default"),
        );
        let max_body_bytes = env.parse("CHECKOUT_WEBHOOK_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES);
        let header_read_timeout =
            env.millis("CHECKOUT_WEBHOOK_HEADER_TIMEOUT_MS", DEFAULT_CLIENT_TIMEOUT);
        let body_read_timeout =
            env.millis("CHECKOUT_WEBHOOK_BODY_TIMEOUT_MS", DEFAULT_CLIENT_TIMEOUT);
        if header_read_timeout.is_zero() || body_read_timeout.is_zero() {
            env.error("CHECKOUT_WEBHOOK_HEADER_TIMEOUT_MS / CHECKOUT_WEBHOOK_BODY_TIMEOUT_MS: must be positive");
        }
        Self {
            listen,
            secrets: webhook_secrets,
            max_body_bytes,
            header_read_timeout,
            body_read_timeout,
        }
    }
}

impl ReconcileConfig {
    /// Reads the `CHECKOUT_RECONCILE_*` variables; problems go to `env`.
    fn from_env(env: &mut EnvReader) -> Self {
        let defaults = Self::default();
        Self {
            interval: secs(env, "CHECKOUT_RECONCILE_INTERVAL_SECS", defaults.interval),
            after: secs(env, "CHECKOUT_RECONCILE_AFTER_SECS", defaults.after),
        }
    }
}

/// A positive whole number of seconds from `name`, else `default`.
fn secs(env: &mut EnvReader, name: &'static str, default: Duration) -> Duration {
    let secs: u64 = env.parse(name, default.as_secs());
    if secs == 0 {
        env.error(format!("{name}: must be a positive number of seconds"));
    }
    Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_table_is_what_the_config_reads() {
        let secrets = [
            ("STRIPE_SECRET_KEY", "sk_test_123"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_1"),
        ];
        let hostname = [("CHECKOUT_GROUP_INSTANCE_ID", "checkout-{hostname}")];
        let problems = cli::table_problems(SETTINGS, &[&secrets, &hostname], Config::from_reader);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn defaults_apply_with_only_the_secrets_set() {
        let config = Config::from_reader(EnvReader::from_pairs(&[
            ("STRIPE_SECRET_KEY", "sk_test_123"),
            ("STRIPE_WEBHOOK_SECRET", "whsec_new, whsec_old"),
        ]))
        .unwrap();
        assert_eq!(config.stripe.api_base, DEFAULT_API_BASE);
        assert_eq!(config.webhook.listen.to_string(), DEFAULT_WEBHOOK_LISTEN);
        assert_eq!(config.max_in_flight, 64);
        assert!((config.stripe.rate_limit - 25.0).abs() < f64::EPSILON);
        assert_eq!(config.consumer_group, "checkout-service");
        assert_eq!(config.group_instance_id, None);
        assert_eq!(config.topics, Topics::default());
        assert_eq!(config.reconcile.interval, Duration::from_secs(300));
        assert_eq!(config.reconcile.after, Duration::from_secs(600));
        let secrets: Vec<&str> = config.webhook.secrets.iter().map(Secret::expose).collect();
        assert_eq!(secrets, ["whsec_new", "whsec_old"]);
        assert!(
            !format!("{config:?}").contains("sk_test_123"),
            "secrets stay out of Debug"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = Config::from_reader(EnvReader::from_pairs(&[
            ("STRIPE_SECRET_KEY", "pk_test_wrong_kind"),
            ("STRIPE_API_BASE", "http://localhost:12111"),
            ("CHECKOUT_MAX_IN_FLIGHT", "0"),
            ("CHECKOUT_STRIPE_RATE_LIMIT", "fast"),
            ("CHECKOUT_WEBHOOK_LISTEN", "nowhere"),
            ("CHECKOUT_GROUP_INSTANCE_ID", "worker 1"),
            ("CHECKOUT_RECONCILE_INTERVAL_SECS", "0"),
            ("CHECKOUT_RECONCILE_AFTER_SECS", "soon"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        for name in [
            "STRIPE_SECRET_KEY",
            "STRIPE_API_BASE",
            "CHECKOUT_MAX_IN_FLIGHT",
            "CHECKOUT_STRIPE_RATE_LIMIT",
            "CHECKOUT_WEBHOOK_LISTEN",
            "STRIPE_WEBHOOK_SECRET",
            "CHECKOUT_GROUP_INSTANCE_ID",
            "CHECKOUT_RECONCILE_INTERVAL_SECS",
            "CHECKOUT_RECONCILE_AFTER_SECS",
        ] {
            assert!(text.contains(name), "{name} missing from:\n{text}");
        }
    }
}
