//! [`Config`]: everything the service reads from the environment, typed,
//! with local defaults; every bad variable is reported at once.
//!
//! Every variable, its default and meaning: [`SETTINGS`], which is also
//! what `blazing_sun --help` prints (every variable is a flag too).

use std::net::SocketAddr;
use std::time::Duration;

use checkout_contract::auth::{JwksSettings, TokenSettings};
use checkout_contract::cli::{self, Group, Setting};
use checkout_contract::env::{ConfigError, EnvReader};
use checkout_contract::kafka::{GroupInstanceId, KafkaConfig};
use checkout_contract::secret::Secret;
use checkout_contract::topics::{Topics, consumer_groups};
use checkout_contract::{HostAllowlist, RedirectUrl};

pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/blazing_sun.db";
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_PUBLIC_URL: &str = "http://127.0.0.1:8080";
pub const DEFAULT_BATCH_SIZE: usize = 256;
pub const DEFAULT_BATCH_LINGER: Duration = Duration::from_millis(5);
pub const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_PRODUCE_TIMEOUT: Duration = Duration::from_secs(3);
pub const DEFAULT_GATEWAY_URL: &str = "http://127.0.0.1:50051";

/// Every variable [`Config::from_env`] reads, for `blazing_sun --help` and
/// its flags (`checkout_contract::cli`); a test proves it matches the reads.
pub const SETTINGS: &[Group] = &[
    cli::KAFKA,
    cli::JWT,
    Group {
        heading: "Blazing sun",
        settings: &[
            Setting {
                env: "DATABASE_URL",
                default: DEFAULT_DATABASE_URL,
                help: "the ledger: sqlite://<path> or postgres://...",
            },
            Setting {
                env: "BLAZING_SUN_LISTEN",
                default: DEFAULT_LISTEN,
                help: "the balance HTTP API and page",
            },
            Setting {
                env: "BLAZING_SUN_PUBLIC_URL",
                default: DEFAULT_PUBLIC_URL,
                help: "this service's public base URL (default success/cancel URLs, status URLs)",
            },
            Setting {
                env: "BLAZING_SUN_GATEWAY_URL",
                default: DEFAULT_GATEWAY_URL,
                help: "the gateway the balance page streams status from (gRPC-Web)",
            },
            cli::REDIRECT_HOSTS,
            Setting {
                env: "BLAZING_SUN_CONSUMER_GROUP",
                default: "blazing-sun-main",
                help: "consumer group on checkout.finished",
            },
            Setting {
                env: "BLAZING_SUN_GROUP_INSTANCE_ID",
                default: "",
                help: "a static group member's id, {hostname} stands for HOSTNAME, never one value for two processes (unset: a dynamic member)",
            },
            cli::HOSTNAME,
            Setting {
                env: "BLAZING_SUN_BATCH_SIZE",
                default: "256",
                help: "events per database transaction (1 to 10000)",
            },
            Setting {
                env: "BLAZING_SUN_BATCH_LINGER_MS",
                default: "5",
                help: "how long a batch waits for more events after its first (at most 1000)",
            },
            Setting {
                env: "BLAZING_SUN_SESSION_TIMEOUT_MS",
                default: "10000",
                help: "how soon a dead consumer's partitions move on (2000 to 300000)",
            },
            Setting {
                env: "BLAZING_SUN_PRODUCE_TIMEOUT_MS",
                default: "3000",
                help: "how long POST /api/v1/balance/checkout waits for the broker before 503",
            },
            Setting {
                env: "BLAZING_SUN_CREATE_TOPICS",
                default: "true",
                help: "create missing topics at start-up",
            },
            cli::TOPIC_PARTITIONS,
        ],
    },
];

/// The service's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `sqlite://<path>` or `postgres://...`; a [`Secret`] because a
    /// PostgreSQL URL carries the password.
    pub database_url: Secret,
    pub kafka: KafkaConfig,
    /// Topic names: [`Topics::default`] in production, unique names in tests.
    pub topics: Topics,
    /// HS256 secret of the bearer tokens (`JWT_SECRET`).
    pub jwt_secret: Option<Secret>,
    /// The identity provider whose RS256/ES256 tokens are accepted too
    /// (`JWT_JWKS_URL`, `JWT_ISSUER`, `JWT_AUDIENCE`).
    pub jwks: Option<JwksSettings>,
    /// Where the HTTP API listens (port 0 picks a free one).
    pub listen: SocketAddr,
    /// The public base URL of this service, without a trailing slash.
    pub public_url: String,
    pub consumer_group: String,
    /// Static group membership: a restarted blazing_sun takes over its
    /// partitions at once instead of waiting out its dead predecessor's session.
    pub group_instance_id: Option<GroupInstanceId>,
    /// At most this many events are applied in one database transaction.
    pub batch_size: usize,
    /// How long a batch waits for more events after its first one (latency vs. fewer commits).
    pub batch_linger: Duration,
    /// Consumer group session timeout: a consumer that died (SIGKILL, no
    /// goodbye) keeps its partitions this long.
    pub session_timeout: Duration,
    /// How long `POST /api/v1/balance/checkout` waits for the broker before answering 503.
    pub produce_timeout: Duration,
    /// Hosts success_url and cancel_url may point at (no open redirect).
    pub redirect_hosts: HostAllowlist,
    /// Body size limit and client timeouts of the HTTP API.
    pub http: crate::http::Limits,
    /// Create missing topics (3 partitions) when the consumer starts.
    pub create_topics: bool,
    /// The gateway's public base URL, for the balance page's gRPC-Web calls
    /// (its CORS origins must include [`Self::public_url`]).
    pub gateway_url: String,
}

impl Config {
    /// Defaults for everything but the three things a deployment must choose.
    pub fn new(database_url: impl Into<String>, kafka: KafkaConfig, jwt_secret: Secret) -> Self {
        Self {
            database_url: Secret::new(database_url.into()),
            kafka,
            topics: Topics::default(),
            jwt_secret: Some(jwt_secret),
            jwks: None,
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            public_url: DEFAULT_PUBLIC_URL.to_owned(),
            consumer_group: consumer_groups::MAIN_APP.to_owned(),
            group_instance_id: None,
            batch_size: DEFAULT_BATCH_SIZE,
            batch_linger: DEFAULT_BATCH_LINGER,
            session_timeout: DEFAULT_SESSION_TIMEOUT,
            produce_timeout: DEFAULT_PRODUCE_TIMEOUT,
            redirect_hosts: HostAllowlist::local_default(),
            http: crate::http::Limits::default(),
            create_topics: true,
            gateway_url: DEFAULT_GATEWAY_URL.to_owned(),
        }
    }

    /// Reads the process environment.
    ///
    /// # Errors
    /// Every bad or missing variable, at once.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::from_env())
    }

    /// Reads `env` (a map in tests).
    ///
    /// # Errors
    /// Every bad or missing variable, at once.
    pub fn from_reader(mut env: EnvReader) -> Result<Self, ConfigError> {
        let database_url = env.string("DATABASE_URL", DEFAULT_DATABASE_URL);
        if !["sqlite:", "postgres:", "postgresql:"]
            .iter()
            .any(|s| database_url.starts_with(s))
        {
            env.error("DATABASE_URL: must start with sqlite:// or postgres://");
        }
        let kafka = KafkaConfig::from_env(&mut env, "blazing_sun");
        let jwt_secret = env.optional("JWT_SECRET").map(Secret::new);
        let jwks = JwksSettings::from_env(&mut env);
        if jwt_secret.is_none() && jwks.is_none() {
            env.error(
                "JWT_SECRET: must be set (or JWT_JWKS_URL for an identity provider's tokens)",
            );
        }
        let listen = env.parse(
            "BLAZING_SUN_LISTEN",
            DEFAULT_LISTEN.parse().expect("valid default address"),
        );
        let public_url = env.string("BLAZING_SUN_PUBLIC_URL", DEFAULT_PUBLIC_URL);
        if let Err(e) = RedirectUrl::parse("BLAZING_SUN_PUBLIC_URL", &public_url) {
            env.error(e.to_string());
        }
        let consumer_group = env.string("BLAZING_SUN_CONSUMER_GROUP", consumer_groups::MAIN_APP);
        let group_instance_id =
            GroupInstanceId::from_env(&mut env, "BLAZING_SUN_GROUP_INSTANCE_ID");
        let batch_size = env.parse("BLAZING_SUN_BATCH_SIZE", DEFAULT_BATCH_SIZE);
        if !(1..=10_000).contains(&batch_size) {
            env.error("BLAZING_SUN_BATCH_SIZE: must be between 1 and 10000");
        }
        let batch_linger = env.millis("BLAZING_SUN_BATCH_LINGER_MS", DEFAULT_BATCH_LINGER);
        if batch_linger > Duration::from_secs(1) {
            env.error("BLAZING_SUN_BATCH_LINGER_MS: must be at most 1000");
        }
        let session_timeout = env.millis("BLAZING_SUN_SESSION_TIMEOUT_MS", DEFAULT_SESSION_TIMEOUT);
        if !(Duration::from_secs(2)..=Duration::from_secs(300)).contains(&session_timeout) {
            env.error("BLAZING_SUN_SESSION_TIMEOUT_MS: must be between 2000 and 300000");
        }
        let produce_timeout = env.millis("BLAZING_SUN_PRODUCE_TIMEOUT_MS", DEFAULT_PRODUCE_TIMEOUT);
        if produce_timeout < Duration::from_millis(100) {
            env.error("BLAZING_SUN_PRODUCE_TIMEOUT_MS: must be at least 100");
        }
        let redirect_hosts = HostAllowlist::from_env(&mut env);
        if let Ok(url) = RedirectUrl::parse("BLAZING_SUN_PUBLIC_URL", &public_url)
            && !redirect_hosts.allows(url.host())
        {
            env.error(format!(
                "BLAZING_SUN_PUBLIC_URL: its host {:?} must be in CHECKOUT_REDIRECT_HOSTS (the default success/cancel URLs point at it)",
                url.host()
            ));
        }
        let create_topics = env.flag("BLAZING_SUN_CREATE_TOPICS", true);
        let gateway_url = env.string("BLAZING_SUN_GATEWAY_URL", DEFAULT_GATEWAY_URL);
        if let Err(e) = RedirectUrl::parse("BLAZING_SUN_GATEWAY_URL", &gateway_url) {
            env.error(e.to_string());
        }
        let topics = Topics::from_env(&mut env);
        env.finish()?;
        Ok(Self {
            database_url: Secret::new(database_url),
            kafka,
            topics,
            jwt_secret,
            jwks,
            listen,
            public_url: public_url.trim_end_matches('/').to_owned(),
            consumer_group,
            group_instance_id,
            batch_size,
            batch_linger,
            session_timeout,
            produce_timeout,
            redirect_hosts,
            http: crate::http::Limits::default(),
            create_topics,
            gateway_url: gateway_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Which bearer tokens the API accepts.
    pub fn token_settings(&self) -> TokenSettings {
        TokenSettings {
            secret: self.jwt_secret.clone(),
            jwks: self.jwks.clone(),
        }
    }

    /// Where a user lands after paying, unless the request says otherwise.
    pub fn default_success_url(&self) -> String {
        format!("{}/?checkout=success", self.public_url)
    }

    /// Where a user lands after cancelling, unless the request says otherwise.
    pub fn default_cancel_url(&self) -> String {
        format!("{}/?checkout=cancel", self.public_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_table_is_what_the_config_reads() {
        let hostname = [
            ("JWT_SECRET", "s"),
            ("BLAZING_SUN_GROUP_INSTANCE_ID", "blazing-sun-{hostname}"),
        ];
        let problems = cli::table_problems(
            SETTINGS,
            &[&[("JWT_SECRET", "s")], &hostname],
            Config::from_reader,
        );
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn redirect_hosts_come_from_the_shared_variable_and_include_the_public_host() {
        let config = Config::from_reader(EnvReader::from_pairs(&[
            ("JWT_SECRET", "s"),
            ("CHECKOUT_REDIRECT_HOSTS", "*.shop.test,127.0.0.1"),
        ]))
        .unwrap();
        assert!(config.redirect_hosts.allows("a.shop.test"));
        assert!(!config.redirect_hosts.allows("example.com"));
        let err = Config::from_reader(EnvReader::from_pairs(&[
            ("JWT_SECRET", "s"),
            ("CHECKOUT_REDIRECT_HOSTS", "*.shop.test"),
        ]))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("BLAZING_SUN_PUBLIC_URL") && err.contains("CHECKOUT_REDIRECT_HOSTS"),
            "{err}"
        );
    }

    #[test]
    fn defaults_need_only_the_jwt_secret() {
        let config = Config::from_reader(EnvReader::from_pairs(&[("JWT_SECRET", "s")])).unwrap();
        assert_eq!(config.database_url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(config.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(config.consumer_group, "blazing-sun-main");
        assert_eq!(config.group_instance_id, None);
        assert_eq!(config.topics, Topics::default());
        assert_eq!(
            config.default_success_url(),
            "http://127.0.0.1:8080/?checkout=success"
        );
    }

    #[test]
    fn an_identity_provider_replaces_or_joins_the_secret() {
        let jwks = [
            ("JWT_JWKS_URL", "https://idp.example/.well-known/jwks.json"),
            ("JWT_ISSUER", "https://idp.example/"),
            ("JWT_AUDIENCE", "checkout-api"),
        ];
        let config = Config::from_reader(EnvReader::from_pairs(&jwks)).unwrap();
        assert_eq!(config.jwt_secret, None);
        assert_eq!(
            config.token_settings().jwks.unwrap().issuer,
            "https://idp.example/"
        );
        let both = [&jwks[..], &[("JWT_SECRET", "s")]].concat();
        let settings = Config::from_reader(EnvReader::from_pairs(&both))
            .unwrap()
            .token_settings();
        assert!(settings.secret.is_some() && settings.jwks.is_some());
        let err = Config::from_reader(EnvReader::from_pairs(&jwks[..2]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("JWT_AUDIENCE: must be set when JWT_JWKS_URL is set"),
            "{err}"
        );
    }

    #[test]
    fn every_bad_variable_is_reported_at_once() {
        let err = Config::from_reader(EnvReader::from_pairs(&[
            ("DATABASE_URL", "mysql://x"),
            ("BLAZING_SUN_LISTEN", "nowhere"),
            ("BLAZING_SUN_PUBLIC_URL", "ftp://x"),
            ("BLAZING_SUN_BATCH_SIZE", "0"),
            ("BLAZING_SUN_GROUP_INSTANCE_ID", "blazing sun"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        for name in [
            "DATABASE_URL",
            "JWT_SECRET",
            "BLAZING_SUN_LISTEN",
            "BLAZING_SUN_PUBLIC_URL",
            "BLAZING_SUN_BATCH_SIZE",
            "BLAZING_SUN_GROUP_INSTANCE_ID",
        ] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
        assert_eq!(err.0.len(), 6, "{text}");
    }
}
