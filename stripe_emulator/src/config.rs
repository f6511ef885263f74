//! Typed configuration: where to listen, where to deliver webhooks, how to
//! retry them, and which faults to inject. Read from the environment by
//! [`Config::from_env`]; tests start from [`Config::default`] (port 0).
//! The runtime-changeable parts ([`Faults`], the webhook endpoint) live in
//! [`crate::state`] once the emulator runs.

use std::net::SocketAddr;
use std::time::Duration;

use checkout_contract::cli::{Group, Setting};
use checkout_contract::env::{ConfigError, EnvReader};
use checkout_contract::secret::Secret;
use serde::{Deserialize, Serialize};

/// Default listen address of the binary (Stripe's own `stripe-mock` port).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:12111";

/// The webhook signing secret used when `STRIPE_WEBHOOK_SECRET` is unset.
pub const DEFAULT_WEBHOOK_SECRET: &str = "whsec_emulator_local_secret";

/// Every variable [`Config::from_env`] reads, for `stripe-emulator --help`
/// and its flags (`checkout_contract::cli`); a test proves it matches the reads.
pub const SETTINGS: &[Group] = &[
    Group {
        heading: "Emulator",
        settings: &[
            Setting {
                env: "STRIPE_EMULATOR_LISTEN",
                default: DEFAULT_LISTEN,
                help: "the API, hosted pages and control endpoints",
            },
            Setting {
                env: "STRIPE_EMULATOR_PUBLIC_URL",
                default: "",
                help: "base of the hosted-page URLs handed to customers (unset: its own address)",
            },
            Setting {
                env: "STRIPE_EMULATOR_WEBHOOK_URL",
                default: "",
                help: "where events are POSTed (unset: kept and retried until an endpoint is set at runtime)",
            },
            Setting {
                env: "STRIPE_WEBHOOK_SECRET",
                default: DEFAULT_WEBHOOK_SECRET,
                help: "the webhook signing secret",
            },
            Setting {
                env: "STRIPE_EMULATOR_API_KEY",
                default: "",
                help: "the only key accepted (unset: any sk_test_/rk_test_ key)",
            },
            Setting {
                env: "STRIPE_EMULATOR_SESSION_LIFETIME_SECS",
                default: "86400",
                help: "sessions created without expires_at expire this long after creation",
            },
            Setting {
                env: "STRIPE_EMULATOR_RATE_LIMIT",
                default: "0",
                help: "API requests per second per secret key, 429 beyond it (0: no limit)",
            },
        ],
    },
    Group {
        heading: "Webhook delivery",
        settings: &[
            Setting {
                env: "STRIPE_EMULATOR_WEBHOOK_MAX_ATTEMPTS",
                default: "20",
                help: "attempts per delivery, then give up",
            },
            Setting {
                env: "STRIPE_EMULATOR_WEBHOOK_RETRY_BASE_MS",
                default: "100",
                help: "first backoff, doubled per attempt",
            },
            Setting {
                env: "STRIPE_EMULATOR_WEBHOOK_RETRY_MAX_MS",
                default: "2000",
                help: "backoff cap",
            },
            Setting {
                env: "STRIPE_EMULATOR_WEBHOOK_TIMEOUT_MS",
                default: "10000",
                help: "per-attempt HTTP timeout",
            },
            Setting {
                env: "STRIPE_EMULATOR_WEBHOOK_HOLD_MS",
                default: "1000",
                help: "how long the out-of-order fault holds an event back",
            },
        ],
    },
    Group {
        heading: "Faults",
        settings: &[
            Setting {
                env: "STRIPE_EMULATOR_LATENCY_MS",
                default: "0",
                help: "added to every /v1 call",
            },
            Setting {
                env: "STRIPE_EMULATOR_LATENCY_AFTER_MS",
                default: "0",
                help: "added to every /v1 call after it executed",
            },
            Setting {
                env: "STRIPE_EMULATOR_RATE_429",
                default: "0",
                help: "share of /v1 calls answered 429 (0 to 1)",
            },
            Setting {
                env: "STRIPE_EMULATOR_RATE_500",
                default: "0",
                help: "share of /v1 calls answered 500 (0 to 1)",
            },
            Setting {
                env: "STRIPE_EMULATOR_WEBHOOK_DUPLICATE_RATE",
                default: "0",
                help: "share of events delivered twice",
            },
            Setting {
                env: "STRIPE_EMULATOR_WEBHOOK_OUT_OF_ORDER_RATE",
                default: "0",
                help: "share of events sent after the next one of their session",
            },
            Setting {
                env: "STRIPE_EMULATOR_WEBHOOK_BAD_SIGNATURE_RATE",
                default: "0",
                help: "share of attempts signed with a wrong secret",
            },
            Setting {
                env: "STRIPE_EMULATOR_WEBHOOK_STALE_TIMESTAMP_RATE",
                default: "0",
                help: "share of attempts with a 10-minute-old timestamp",
            },
            Setting {
                env: "STRIPE_EMULATOR_WEBHOOK_LOST_RATE",
                default: "0",
                help: "share of sessions none of whose events arrives",
            },
        ],
    },
];

/// Everything the emulator needs to start.
#[derive(Debug, Clone)]
pub struct Config {
    /// `STRIPE_EMULATOR_LISTEN` (default `127.0.0.1:12111`; [`Config::default`] uses port 0).
    pub listen: SocketAddr,
    /// `STRIPE_EMULATOR_PUBLIC_URL`: the base of hosted-page URLs handed to
    /// customers (default: `http://{bound address}`).
    pub public_url: Option<String>,
    /// `STRIPE_EMULATOR_WEBHOOK_URL`: where events are POSTed. Unset: events
    /// are kept and retried until an endpoint is set at runtime or attempts run out.
    pub webhook_url: Option<String>,
    /// `STRIPE_WEBHOOK_SECRET` (default [`DEFAULT_WEBHOOK_SECRET`]).
    pub webhook_secret: Secret,
    /// `STRIPE_EMULATOR_API_KEY`: when set, only this exact key is accepted;
    /// otherwise any `sk_test_...` / `rk_test_...` key is.
    pub api_key: Option<Secret>,
    /// `STRIPE_EMULATOR_SESSION_LIFETIME_SECS` (default 86400, Stripe's 24 h):
    /// sessions created without `expires_at` expire this long after creation.
    pub session_lifetime: Duration,
    /// `STRIPE_EMULATOR_RATE_LIMIT`: API requests per second per secret key,
    /// answered 429 `rate_limit` beyond it, in fixed one-second windows (see
    /// [`crate::rate_limit`]). Unset or 0: no limit.
    pub rate_limit: Option<u32>,
    pub delivery: DeliveryPolicy,
    pub faults: Faults,
}

/// How webhook deliveries are retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryPolicy {
    /// `STRIPE_EMULATOR_WEBHOOK_MAX_ATTEMPTS` (default 20): attempts per delivery, then give up.
    pub max_attempts: u32,
    /// `STRIPE_EMULATOR_WEBHOOK_RETRY_BASE_MS` (default 100): first backoff, doubled per attempt.
    pub retry_base: Duration,
    /// `STRIPE_EMULATOR_WEBHOOK_RETRY_MAX_MS` (default 2000): backoff cap.
    pub retry_max: Duration,
    /// `STRIPE_EMULATOR_WEBHOOK_TIMEOUT_MS` (default 10000): per-attempt HTTP timeout.
    pub attempt_timeout: Duration,
    /// `STRIPE_EMULATOR_WEBHOOK_HOLD_MS` (default 1000): how long the
    /// out-of-order fault holds an event back when no later event of the same
    /// session comes along.
    pub out_of_order_hold: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 20,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_millis(2000),
            attempt_timeout: Duration::from_secs(10),
            out_of_order_hold: Duration::from_millis(1000),
        }
    }
}

impl DeliveryPolicy {
    /// Backoff before attempt `attempt + 1` (attempt counts from 1).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
        self.retry_base.saturating_mul(factor).min(self.retry_max)
    }
}

/// Injected faults. Rates are probabilities in `0.0..=1.0`, rolled per API
/// call (latency, 429, 500) or per webhook delivery attempt (signature,
/// timestamp) or per event (duplicate, out-of-order), or decided per
/// session (lost webhooks). JSON shape of
/// `GET/PUT /_emulator/faults`; fields left out of a `PUT` are 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// `STRIPE_EMULATOR_LATENCY_MS`: added to every `/v1` call.
    pub latency_ms: u64,
    /// `STRIPE_EMULATOR_LATENCY_AFTER_MS`: added to every `/v1` call *after*
    /// it executed, so a client timeout leaves its effect (a session) behind.
    pub latency_after_ms: u64,
    /// `STRIPE_EMULATOR_RATE_429`: share of `/v1` calls answered 429 `rate_limit` (never saved for idempotency).
    pub rate_429: f64,
    /// `STRIPE_EMULATOR_RATE_500`: share of `/v1` calls answered 500 `api_error`
    /// (saved under the idempotency key, so a retry with the same key replays it, as Stripe does).
    pub rate_500: f64,
    /// `STRIPE_EMULATOR_WEBHOOK_DUPLICATE_RATE`: share of events delivered twice (same event id).
    pub webhook_duplicate_rate: f64,
    /// `STRIPE_EMULATOR_WEBHOOK_OUT_OF_ORDER_RATE`: share of events held back
    /// and sent after the next event of the same session.
    pub webhook_out_of_order_rate: f64,
    /// `STRIPE_EMULATOR_WEBHOOK_BAD_SIGNATURE_RATE`: share of attempts signed with a wrong secret.
    pub webhook_bad_signature_rate: f64,
    /// `STRIPE_EMULATOR_WEBHOOK_STALE_TIMESTAMP_RATE`: share of attempts
    /// correctly signed but with a timestamp 10 minutes old.
    pub webhook_stale_timestamp_rate: f64,
    /// `STRIPE_EMULATOR_WEBHOOK_LOST_RATE`: share of sessions none of whose
    /// events ever reaches the endpoint (as if it were unreachable until
    /// Stripe gave up), decided per session id, so every retry is lost too.
    pub webhook_lost_rate: f64,
}

impl Faults {
    /// The names of rates outside `0.0..=1.0`.
    pub fn invalid_rates(&self) -> Vec<&'static str> {
        [
            ("rate_429", self.rate_429),
            ("rate_500", self.rate_500),
            ("webhook_duplicate_rate", self.webhook_duplicate_rate),
            ("webhook_out_of_order_rate", self.webhook_out_of_order_rate),
            (
                "webhook_bad_signature_rate",
                self.webhook_bad_signature_rate,
            ),
            (
                "webhook_stale_timestamp_rate",
                self.webhook_stale_timestamp_rate,
            ),
            ("webhook_lost_rate", self.webhook_lost_rate),
        ]
        .into_iter()
        .filter(|(_, r)| !(0.0..=1.0).contains(r))
        .map(|(n, _)| n)
        .collect()
    }
}

impl Default for Config {
    /// For tests and embedding: `127.0.0.1:0`, no webhook endpoint, the
    /// default secret, no faults.
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            public_url: None,
            webhook_url: None,
            webhook_secret: Secret::new(DEFAULT_WEBHOOK_SECRET),
            api_key: None,
            session_lifetime: Duration::from_secs(crate::session::DEFAULT_LIFETIME_SECS),
            rate_limit: None,
            delivery: DeliveryPolicy::default(),
            faults: Faults::default(),
        }
    }
}

impl Config {
    /// Reads every `STRIPE_EMULATOR_*` variable and `STRIPE_WEBHOOK_SECRET`.
    ///
    /// # Errors
    /// Every bad variable at once.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::from_env())
    }

    /// Like [`Config::from_env`], from an explicit reader (tests use a map).
    ///
    /// # Errors
    /// Every bad variable at once.
    pub fn from_reader(mut env: EnvReader) -> Result<Self, ConfigError> {
        let listen = env.parse(
            "STRIPE_EMULATOR_LISTEN",
            DEFAULT_LISTEN.parse().expect("valid default"),
        );
        let public_url = env
            .optional("STRIPE_EMULATOR_PUBLIC_URL")
            .map(|u| u.trim_end_matches('/').to_owned());
        let webhook_url = env.optional("STRIPE_EMULATOR_WEBHOOK_URL");
        for (name, value) in [
            ("STRIPE_EMULATOR_PUBLIC_URL", &public_url),
            ("STRIPE_EMULATOR_WEBHOOK_URL", &webhook_url),
        ] {
            if let Some(v) = value
                && !is_http_url(v)
            {
                env.error(format!("{name}={v:?}: must be an absolute http(s) URL"));
            }
        }
        let webhook_secret = env.secret("STRIPE_WEBHOOK_SECRET", Some(DEFAULT_WEBHOOK_SECRET));
        let api_key = env.optional("STRIPE_EMULATOR_API_KEY").map(Secret::new);
        let session_lifetime = Duration::from_secs(env.parse(
            "STRIPE_EMULATOR_SESSION_LIFETIME_SECS",
            crate::session::DEFAULT_LIFETIME_SECS,
        ));
        let rate_limit = Some(env.parse("STRIPE_EMULATOR_RATE_LIMIT", 0u32)).filter(|&l| l > 0);
        let d = DeliveryPolicy::default();
        let delivery = DeliveryPolicy {
            max_attempts: env.parse("STRIPE_EMULATOR_WEBHOOK_MAX_ATTEMPTS", d.max_attempts),
            retry_base: env.millis("STRIPE_EMULATOR_WEBHOOK_RETRY_BASE_MS", d.retry_base),
            retry_max: env.millis("STRIPE_EMULATOR_WEBHOOK_RETRY_MAX_MS", d.retry_max),
            attempt_timeout: env.millis("STRIPE_EMULATOR_WEBHOOK_TIMEOUT_MS", d.attempt_timeout),
            out_of_order_hold: env.millis("STRIPE_EMULATOR_WEBHOOK_HOLD_MS", d.out_of_order_hold),
        };
        if delivery.max_attempts == 0 {
            env.error("STRIPE_EMULATOR_WEBHOOK_MAX_ATTEMPTS: must be at least 1");
        }
        let faults = Faults {
            latency_ms: env.parse("STRIPE_EMULATOR_LATENCY_MS", 0),
            latency_after_ms: env.parse("STRIPE_EMULATOR_LATENCY_AFTER_MS", 0),
            rate_429: env.parse("STRIPE_EMULATOR_RATE_429", 0.0),
            rate_500: env.parse("STRIPE_EMULATOR_RATE_500", 0.0),
            webhook_duplicate_rate: env.parse("STRIPE_EMULATOR_WEBHOOK_DUPLICATE_RATE", 0.0),
            webhook_out_of_order_rate: env.parse("STRIPE_EMULATOR_WEBHOOK_OUT_OF_ORDER_RATE", 0.0),
            webhook_bad_signature_rate: env
                .parse("STRIPE_EMULATOR_WEBHOOK_BAD_SIGNATURE_RATE", 0.0),
            webhook_stale_timestamp_rate: env
                .parse("STRIPE_EMULATOR_WEBHOOK_STALE_TIMESTAMP_RATE", 0.0),
            webhook_lost_rate: env.parse("STRIPE_EMULATOR_WEBHOOK_LOST_RATE", 0.0),
        };
        for name in faults.invalid_rates() {
            let var = format!("STRIPE_EMULATOR_{}", name.to_ascii_uppercase());
            env.error(format!("{var}: must be between 0 and 1"));
        }
        env.finish()?;
        Ok(Self {
            listen,
            public_url,
            webhook_url,
            webhook_secret,
            api_key,
            session_lifetime,
            rate_limit,
            delivery,
            faults,
        })
    }

    /// Sets the webhook endpoint and signing secret.
    #[must_use]
    pub fn with_webhook(mut self, url: impl Into<String>, secret: impl Into<String>) -> Self {
        self.webhook_url = Some(url.into());
        self.webhook_secret = Secret::new(secret.into());
        self
    }

    /// Sets the faults injected from the start.
    #[must_use]
    pub fn with_faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Sets how long sessions stay open (tests use seconds).
    #[must_use]
    pub fn with_session_lifetime(mut self, lifetime: Duration) -> Self {
        self.session_lifetime = lifetime;
        self
    }

    /// Sets the account rate limit (requests per second per secret key).
    #[must_use]
    pub fn with_rate_limit(mut self, per_second: u32) -> Self {
        self.rate_limit = Some(per_second).filter(|&l| l > 0);
        self
    }

    /// Sets the webhook retry policy.
    #[must_use]
    pub fn with_delivery(mut self, delivery: DeliveryPolicy) -> Self {
        self.delivery = delivery;
        self
    }
}

/// An absolute `http`/`https` URL with a host.
pub(crate) fn is_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(vars: &[(&str, &str)]) -> EnvReader {
        EnvReader::from_map(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())))
    }

    #[test]
    fn defaults_then_every_error_at_once() {
        let c = Config::from_reader(reader(&[])).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.faults, Faults::default());
        assert_eq!(c.rate_limit, None);
        let limited = Config::from_reader(reader(&[("STRIPE_EMULATOR_RATE_LIMIT", "25")])).unwrap();
        assert_eq!(limited.rate_limit, Some(25));
        let err = Config::from_reader(reader(&[
            ("STRIPE_EMULATOR_LISTEN", "nope"),
            ("STRIPE_EMULATOR_RATE_429", "1.5"),
            ("STRIPE_EMULATOR_WEBHOOK_URL", "ftp://x"),
            ("STRIPE_EMULATOR_RATE_LIMIT", "-1"),
        ]))
        .unwrap_err();
        assert_eq!(err.0.len(), 4, "{err}");
    }

    #[test]
    fn the_settings_table_is_what_the_config_reads() {
        let problems =
            checkout_contract::cli::table_problems(SETTINGS, &[&[]], Config::from_reader);
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn backoff_doubles_and_caps() {
        let p = DeliveryPolicy::default();
        assert_eq!(p.backoff(1), Duration::from_millis(100));
        assert_eq!(p.backoff(2), Duration::from_millis(200));
        assert_eq!(p.backoff(30), Duration::from_millis(2000));
    }
}
