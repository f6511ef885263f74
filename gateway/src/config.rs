//! The gateway's typed configuration, read from the environment by
//! [`Config::from_env`] (every bad variable reported at once) or built in code
//! by [`Config::new`] (tests, the all-in-one launcher).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use checkout_contract::HostAllowlist;
use checkout_contract::auth::{JwksSettings, SecretError, TokenSettings, jwt_secret};
use checkout_contract::cli::{self, Group, Setting};
use checkout_contract::env::{ConfigError, EnvReader};
use checkout_contract::kafka::KafkaConfig;
use checkout_contract::secret::Secret;
use checkout_contract::topics::Topics;

/// Every variable [`Config::from_env`] reads, for `gateway --help` and its
/// flags (`checkout_contract::cli`); a test proves it matches the reads.
pub const SETTINGS: &[Group] = &[
    cli::KAFKA,
    cli::JWT,
    Group {
        heading: "Gateway",
        settings: &[
            Setting {
                env: "GATEWAY_LISTEN",
                default: "127.0.0.1:50051",
                help: "the gRPC and gRPC-Web address",
            },
            Setting {
                env: "GATEWAY_ADMIN_LISTEN",
                default: "127.0.0.1:9464",
                help: "/metrics and /healthz",
            },
            Setting {
                env: "GATEWAY_AUTH_DISABLED",
                default: "false",
                help: "no token checks, every caller is the service `anonymous` (local development only)",
            },
            Setting {
                env: "GATEWAY_TLS_CERT",
                default: "",
                help: "PEM certificate chain: TLS on the gRPC listener, with GATEWAY_TLS_KEY (unset: plaintext)",
            },
            Setting {
                env: "GATEWAY_TLS_KEY",
                default: "",
                help: "PEM private key of GATEWAY_TLS_CERT",
            },
            Setting {
                env: "GATEWAY_TLS_CLIENT_CA",
                default: "",
                help: "PEM CA: mutual TLS, clients must present a certificate it signed (unset: none asked)",
            },
            Setting {
                env: "GATEWAY_CORS_ORIGINS",
                default: "",
                help: "origins allowed to call from a browser, comma-separated; * allows any (unset: none)",
            },
            cli::REDIRECT_HOSTS,
            Setting {
                env: "GATEWAY_LOOKBACK_SECS",
                default: "3600",
                help: "how far back the status tail starts reading",
            },
            Setting {
                env: "GATEWAY_REQUESTS_TAIL_WAIT_MS",
                default: "250",
                help: "longest the broker gathers other replicas' requests before answering the tail's fetch: how long a retry on another replica may go unrecognised",
            },
            Setting {
                env: "GATEWAY_INDEX_TTL_SECS",
                default: "3600",
                help: "how long a checkout stays in the index after its last event",
            },
            Setting {
                env: "GATEWAY_INDEX_MAX_ENTRIES",
                default: "100000",
                help: "most checkouts kept in the index",
            },
            Setting {
                env: "GATEWAY_MAX_CONCURRENT_STREAMS",
                default: "4096",
                help: "HTTP/2 streams per connection",
            },
            Setting {
                env: "GATEWAY_MAX_MESSAGE_BYTES",
                default: "65536",
                help: "largest request or response message",
            },
            Setting {
                env: "GATEWAY_UNARY_TIMEOUT_MS",
                default: "30000",
                help: "longest a unary call may take",
            },
            Setting {
                env: "GATEWAY_WATCH_MAX_SECS",
                default: "900",
                help: "longest one WatchCheckout stream stays open",
            },
            Setting {
                env: "GATEWAY_WATCH_QUEUE",
                default: "16",
                help: "updates buffered per watched checkout before a slow stream ends with RESOURCE_EXHAUSTED",
            },
            Setting {
                env: "GATEWAY_PRODUCE_LINGER_MS",
                default: "1",
                help: "how long the producer gathers StartCheckout events into one batch: more saves broker and CPU time under load, and adds to every call's latency",
            },
            Setting {
                env: "GATEWAY_PRODUCE_TIMEOUT_MS",
                default: "5000",
                help: "how long StartCheckout waits for the broker's acknowledgement before UNAVAILABLE",
            },
            Setting {
                env: "GATEWAY_KEEPALIVE_INTERVAL_MS",
                default: "30000",
                help: "HTTP/2 ping interval",
            },
            Setting {
                env: "GATEWAY_KEEPALIVE_TIMEOUT_MS",
                default: "10000",
                help: "HTTP/2 ping timeout",
            },
            Setting {
                env: "GATEWAY_HEALTH_PROBE_MS",
                default: "1000",
                help: "how often the broker is probed for the health status",
            },
            Setting {
                env: "GATEWAY_SHUTDOWN_GRACE_MS",
                default: "10000",
                help: "how long shutdown waits for calls to finish",
            },
        ],
    },
];

/// How callers prove who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthMode {
    /// `Authorization: Bearer <JWT>` checked against this HS256 secret (`JWT_SECRET`).
    Jwt(Secret),
    /// `Authorization: Bearer <JWT>`: RS256/ES256 tokens of an identity
    /// provider (`JWT_JWKS_URL`, `JWT_ISSUER`, `JWT_AUDIENCE`), and HS256
    /// ones too when `JWT_SECRET` is set (see `checkout_contract::auth`).
    Tokens(TokenSettings),
    /// No checks; every caller is the service `anonymous`
    /// (`GATEWAY_AUTH_DISABLED=true`, local development only).
    Disabled,
}

/// PEM files for TLS on the gRPC listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `GATEWAY_TLS_CERT`: the server's certificate chain.
    pub cert: PathBuf,
    /// `GATEWAY_TLS_KEY`: its private key.
    pub key: PathBuf,
    /// `GATEWAY_TLS_CLIENT_CA`: when set, mutual TLS: every client must
    /// present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

/// Everything the gateway needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `GATEWAY_LISTEN`: the gRPC / gRPC-Web port (default `127.0.0.1:50051`).
    pub grpc_listen: SocketAddr,
    /// `GATEWAY_ADMIN_LISTEN`: `/metrics` and `/healthz` (default `127.0.0.1:9464`).
    pub admin_listen: SocketAddr,
    /// `KAFKA_BOOTSTRAP_SERVERS`, `KAFKA_REPLICATION_FACTOR`.
    pub kafka: KafkaConfig,
    /// The seed's topic names in production; unique names in tests.
    pub topics: Topics,
    /// `JWT_SECRET`, `JWT_JWKS_URL` (+ `JWT_ISSUER`, `JWT_AUDIENCE`) /
    /// `GATEWAY_AUTH_DISABLED`.
    pub auth: AuthMode,
    /// `GATEWAY_LOOKBACK_SECS`: how far back the status tail starts reading (default 3600).
    pub lookback: Duration,
    /// `GATEWAY_REQUESTS_TAIL_WAIT_MS`: longest the broker holds the
    /// `checkout.requests` tail's fetch to gather more (default 250). Other
    /// replicas' requests reach the index up to this late; see [`crate::tail`].
    pub requests_tail_wait: Duration,
    /// `GATEWAY_INDEX_TTL_SECS`: how long a checkout stays in the index after its last event (default 3600).
    pub index_ttl: Duration,
    /// `GATEWAY_INDEX_MAX_ENTRIES`: most checkouts kept in the index (default 100000).
    pub index_max_entries: usize,
    /// `GATEWAY_CORS_ORIGINS`: comma-separated origins allowed to call from a
    /// browser; `*` allows any; empty allows none (default empty).
    pub cors_origins: Vec<String>,
    /// `GATEWAY_MAX_CONCURRENT_STREAMS`: HTTP/2 streams per connection (default 4096).
    pub max_concurrent_streams: u32,
    /// `GATEWAY_MAX_MESSAGE_BYTES`: largest request or response message (default 65536).
    pub max_message_bytes: usize,
    /// `GATEWAY_UNARY_TIMEOUT_MS`: longest a unary call may take (default 30000).
    pub unary_timeout: Duration,
    /// `GATEWAY_WATCH_MAX_SECS`: longest one WatchCheckout stream stays open (default 900).
    pub watch_max: Duration,
    /// `GATEWAY_WATCH_QUEUE`: updates buffered per watched checkout before a
    /// slow stream is ended with RESOURCE_EXHAUSTED (default 16).
    pub watch_queue: usize,
    /// `GATEWAY_PRODUCE_LINGER_MS`: the producer's `linger.ms` (default 1;
    /// 0 sends at once). See docs/benchmarks.md for what it trades.
    pub produce_linger: Duration,
    /// `GATEWAY_PRODUCE_TIMEOUT_MS`: how long StartCheckout waits for the
    /// broker's acknowledgement before answering UNAVAILABLE (default 5000).
    pub produce_timeout: Duration,
    /// `GATEWAY_KEEPALIVE_INTERVAL_MS` (default 30000) and
    /// `GATEWAY_KEEPALIVE_TIMEOUT_MS` (default 10000): HTTP/2 pings.
    pub keepalive_interval: Duration,
    pub keepalive_timeout: Duration,
    /// `GATEWAY_HEALTH_PROBE_MS`: how often the broker is probed for the health status (default 1000).
    pub health_probe_interval: Duration,
    /// `GATEWAY_SHUTDOWN_GRACE_MS`: how long shutdown waits for calls to finish (default 10000).
    pub shutdown_grace: Duration,
    /// `CHECKOUT_REDIRECT_HOSTS`: hosts success_url and cancel_url may point
    /// at (default loopback and the RFC 2606 example names).
    pub redirect_hosts: HostAllowlist,
    /// TLS (and mutual TLS) on the gRPC listener; plaintext when `None`
    /// (default; set `GATEWAY_TLS_CERT` and `GATEWAY_TLS_KEY`).
    pub tls: Option<TlsFiles>,
}

impl Config {
    /// Defaults for everything but where the broker is, which topics to use
    /// and how to authenticate; both listeners on `127.0.0.1:0` (any free port).
    pub fn new(kafka: KafkaConfig, topics: Topics, auth: AuthMode) -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            grpc_listen: any,
            admin_listen: any,
            kafka,
            topics,
            auth,
            lookback: Duration::from_secs(3600),
            requests_tail_wait: Duration::from_millis(250),
            index_ttl: Duration::from_secs(3600),
            index_max_entries: 100_000,
            cors_origins: Vec::new(),
            max_concurrent_streams: 4096,
            max_message_bytes: 64 * 1024,
            unary_timeout: Duration::from_secs(30),
            watch_max: Duration::from_secs(900),
            watch_queue: 16,
            produce_linger: Duration::from_millis(1),
            produce_timeout: Duration::from_secs(5),
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(10),
            health_probe_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(10),
            redirect_hosts: HostAllowlist::local_default(),
            tls: None,
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
        let kafka = KafkaConfig::from_env(&mut env, "gateway");
        let mut c = Self::new(kafka, Topics::default(), AuthMode::Disabled);
        c.grpc_listen = env.parse("GATEWAY_LISTEN", SocketAddr::from(([127, 0, 0, 1], 50051)));
        c.admin_listen = env.parse(
            "GATEWAY_ADMIN_LISTEN",
            SocketAddr::from(([127, 0, 0, 1], 9464)),
        );
        let disabled = env.flag("GATEWAY_AUTH_DISABLED", false);
        let secret = env.optional("JWT_SECRET");
        let jwks = JwksSettings::from_env(&mut env);
        c.auth = match (disabled, jwt_secret(secret), jwks) {
            (true, _, _) => AuthMode::Disabled,
            (false, Ok(s), None) => AuthMode::Jwt(s),
            (false, Ok(s), Some(jwks)) => AuthMode::Tokens(TokenSettings {
                secret: Some(s),
                jwks: Some(jwks),
            }),
            (false, Err(SecretError::Missing), Some(jwks)) => AuthMode::Tokens(TokenSettings {
                secret: None,
                jwks: Some(jwks),
            }),
            (false, Err(SecretError::Missing), None) => {
                env.error(
                    "JWT_SECRET: must be set (or JWT_JWKS_URL for an identity provider's tokens, or GATEWAY_AUTH_DISABLED=true for local development)",
                );
                AuthMode::Disabled
            }
            (false, Err(e), _) => {
                env.error(e.to_string());
                AuthMode::Disabled
            }
        };
        c.lookback = Duration::from_secs(env.parse("GATEWAY_LOOKBACK_SECS", 3600));
        c.requests_tail_wait = env.millis("GATEWAY_REQUESTS_TAIL_WAIT_MS", c.requests_tail_wait);
        c.index_ttl = Duration::from_secs(env.parse("GATEWAY_INDEX_TTL_SECS", 3600));
        c.index_max_entries = env.parse("GATEWAY_INDEX_MAX_ENTRIES", c.index_max_entries);
        c.cors_origins = env.list("GATEWAY_CORS_ORIGINS", &[]);
        c.max_concurrent_streams =
            env.parse("GATEWAY_MAX_CONCURRENT_STREAMS", c.max_concurrent_streams);
        c.max_message_bytes = env.parse("GATEWAY_MAX_MESSAGE_BYTES", c.max_message_bytes);
        c.unary_timeout = env.millis("GATEWAY_UNARY_TIMEOUT_MS", c.unary_timeout);
        c.watch_max = Duration::from_secs(env.parse("GATEWAY_WATCH_MAX_SECS", 900));
        c.watch_queue = env.parse("GATEWAY_WATCH_QUEUE", c.watch_queue);
        c.produce_linger = env.millis("GATEWAY_PRODUCE_LINGER_MS", c.produce_linger);
        c.produce_timeout = env.millis("GATEWAY_PRODUCE_TIMEOUT_MS", c.produce_timeout);
        c.keepalive_interval = env.millis("GATEWAY_KEEPALIVE_INTERVAL_MS", c.keepalive_interval);
        c.keepalive_timeout = env.millis("GATEWAY_KEEPALIVE_TIMEOUT_MS", c.keepalive_timeout);
        c.health_probe_interval = env.millis("GATEWAY_HEALTH_PROBE_MS", c.health_probe_interval);
        c.shutdown_grace = env.millis("GATEWAY_SHUTDOWN_GRACE_MS", c.shutdown_grace);
        c.redirect_hosts = HostAllowlist::from_env(&mut env);
        let (cert, key, client_ca) = (
            env.optional("GATEWAY_TLS_CERT"),
            env.optional("GATEWAY_TLS_KEY"),
            env.optional("GATEWAY_TLS_CLIENT_CA"),
        );
        c.tls = match (cert, key, client_ca) {
            (Some(cert), Some(key), client_ca) => Some(TlsFiles {
                cert: cert.into(),
                key: key.into(),
                client_ca: client_ca.map(PathBuf::from),
            }),
            (None, None, None) => None,
            _ => {
                env.error("GATEWAY_TLS_CERT and GATEWAY_TLS_KEY: set both (GATEWAY_TLS_CLIENT_CA needs them too)");
                None
            }
        };
        for problem in c.problems() {
            env.error(problem);
        }
        env.finish()?;
        Ok(c)
    }

    /// Values that parse but make no sense.
    fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let mut positive = |name: &str, zero: bool| {
            if zero {
                p.push(format!("{name}: must be greater than 0"));
            }
        };
        positive(
            "GATEWAY_REQUESTS_TAIL_WAIT_MS",
            self.requests_tail_wait.is_zero(),
        );
        positive("GATEWAY_INDEX_TTL_SECS", self.index_ttl.is_zero());
        positive("GATEWAY_INDEX_MAX_ENTRIES", self.index_max_entries == 0);
        positive(
            "GATEWAY_MAX_CONCURRENT_STREAMS",
            self.max_concurrent_streams == 0,
        );
        positive("GATEWAY_MAX_MESSAGE_BYTES", self.max_message_bytes == 0);
        positive("GATEWAY_UNARY_TIMEOUT_MS", self.unary_timeout.is_zero());
        positive("GATEWAY_WATCH_MAX_SECS", self.watch_max.is_zero());
        positive("GATEWAY_WATCH_QUEUE", self.watch_queue == 0);
        positive("GATEWAY_PRODUCE_TIMEOUT_MS", self.produce_timeout.is_zero());
        positive(
            "GATEWAY_HEALTH_PROBE_MS",
            self.health_probe_interval.is_zero(),
        );
        if self
            .cors_origins
            .iter()
            .any(|o| o != "*" && http::HeaderValue::from_str(o).is_err())
        {
            p.push("GATEWAY_CORS_ORIGINS: every origin must be a valid header value like https://app.example".into());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_table_is_what_the_config_reads() {
        let problems = cli::table_problems(
            SETTINGS,
            &[&[("JWT_SECRET", "0123456789abcdef")]],
            Config::from_reader,
        );
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn defaults_need_only_a_jwt_secret() {
        let c = Config::from_reader(EnvReader::from_pairs(&[("JWT_SECRET", "0123456789abcdef")]))
            .unwrap();
        assert_eq!(c.grpc_listen.to_string(), "127.0.0.1:50051");
        assert_eq!(c.admin_listen.to_string(), "127.0.0.1:9464");
        assert_eq!(c.topics, Topics::default());
        assert!(matches!(c.auth, AuthMode::Jwt(_)));
        assert_eq!(c.requests_tail_wait, Duration::from_millis(250));
        assert_eq!(c.produce_linger, Duration::from_millis(1));
        assert!(!format!("{c:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = Config::from_reader(EnvReader::from_pairs(&[
            ("GATEWAY_LISTEN", "nowhere"),
            ("GATEWAY_LOOKBACK_SECS", "-1"),
            ("GATEWAY_WATCH_QUEUE", "0"),
            ("GATEWAY_REQUESTS_TAIL_WAIT_MS", "0"),
            ("GATEWAY_AUTH_DISABLED", "perhaps"),
        ]))
        .unwrap_err();
        let text = err.to_string();
        for name in [
            "GATEWAY_LISTEN",
            "GATEWAY_LOOKBACK_SECS",
            "GATEWAY_WATCH_QUEUE",
            "GATEWAY_REQUESTS_TAIL_WAIT_MS",
            "GATEWAY_AUTH_DISABLED",
            "JWT_SECRET",
        ] {
            assert!(text.contains(name), "{name} missing from {text}");
        }
    }

    #[test]
    fn redirect_hosts_come_from_the_shared_variable() {
        let c = Config::from_reader(EnvReader::from_pairs(&[
            ("GATEWAY_AUTH_DISABLED", "true"),
            ("CHECKOUT_REDIRECT_HOSTS", "shop.test, *.shop.test"),
        ]))
        .unwrap();
        assert!(c.redirect_hosts.allows("a.shop.test") && !c.redirect_hosts.allows("example.com"));
        let err = Config::from_reader(EnvReader::from_pairs(&[
            ("GATEWAY_AUTH_DISABLED", "true"),
            ("CHECKOUT_REDIRECT_HOSTS", "*"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("CHECKOUT_REDIRECT_HOSTS"), "{err}");
    }

    #[test]
    fn tls_needs_both_cert_and_key() {
        let c = Config::from_reader(EnvReader::from_pairs(&[
            ("GATEWAY_AUTH_DISABLED", "true"),
            ("GATEWAY_TLS_CERT", "/etc/gw/cert.pem"),
            ("GATEWAY_TLS_KEY", "/etc/gw/key.pem"),
            ("GATEWAY_TLS_CLIENT_CA", "/etc/gw/ca.pem"),
        ]))
        .unwrap();
        let tls = c.tls.unwrap();
        assert_eq!(tls.client_ca.unwrap().to_str(), Some("/etc/gw/ca.pem"));
        let err = Config::from_reader(EnvReader::from_pairs(&[
            ("GATEWAY_AUTH_DISABLED", "true"),
            ("GATEWAY_TLS_CLIENT_CA", "/etc/gw/ca.pem"),
        ]))
        .unwrap_err();
        assert!(err.to_string().contains("GATEWAY_TLS_CERT"), "{err}");
    }

    #[test]
    fn an_identity_provider_works_alone_or_beside_the_secret() {
        let jwks = [
            ("JWT_JWKS_URL", "https://idp.example/.well-known/jwks.json"),
            ("JWT_ISSUER", "https://idp.example/"),
            ("JWT_AUDIENCE", "checkout-api"),
        ];
        let c = Config::from_reader(EnvReader::from_pairs(&jwks)).unwrap();
        let AuthMode::Tokens(t) = c.auth else {
            panic!("{:?}", c.auth)
        };
        assert_eq!(
            (t.secret, t.jwks.unwrap().audience.as_str()),
            (None, "checkout-api")
        );
        let both = [&jwks[..], &[("JWT_SECRET", "0123456789abcdef")]].concat();
        let c = Config::from_reader(EnvReader::from_pairs(&both)).unwrap();
        assert!(matches!(
            c.auth,
            AuthMode::Tokens(TokenSettings {
                secret: Some(_),
                jwks: Some(_)
            })
        ));
        let err = Config::from_reader(EnvReader::from_pairs(&jwks[..1]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("JWT_ISSUER: must be set when JWT_JWKS_URL is set")
                && err.contains("JWT_AUDIENCE"),
            "{err}"
        );
    }

    #[test]
    fn auth_can_be_disabled_explicitly() {
        let c = Config::from_reader(EnvReader::from_pairs(&[("GATEWAY_AUTH_DISABLED", "true")]))
            .unwrap();
        assert_eq!(c.auth, AuthMode::Disabled);
    }
}
