//! The launcher's configuration: fixed local ports by default, every one
//! overridable with the same variable the service's own binary reads.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use checkout::config::ReconcileConfig;
use checkout_contract::cli::{self, Group, Setting};
use checkout_contract::env::{ConfigError, EnvReader};
use checkout_contract::kafka::KafkaConfig;
use checkout_contract::secret::Secret;
use checkout_contract::topics::Topics;

/// Every variable [`StackConfig::from_env`] reads: `checkout-stack --help`
/// and its flags (`checkout_contract::cli`); a test proves it matches the reads.
pub const SETTINGS: &[Group] = &[
    Group {
        heading: "Launcher",
        settings: &[
            Setting {
                env: "KAFKA_BOOTSTRAP_SERVERS",
                default: "",
                help: "a real broker (unset: the embedded one on STACK_KAFKA_LISTEN)",
            },
            Setting {
                env: "STACK_KAFKA_LISTEN",
                default: "127.0.0.1:9092",
                help: "the embedded broker's bootstrap address",
            },
            cli::KAFKA.settings[2],
            cli::TOPIC_PARTITIONS,
            Setting {
                env: "STACK_DATA_DIR",
                default: "data",
                help: "where the embedded broker and the SQLite ledger keep their files",
            },
            Setting {
                env: "DATABASE_URL",
                default: "sqlite://data/blazing_sun.db",
                help: "blazing_sun's ledger (default: blazing_sun.db under STACK_DATA_DIR)",
            },
            Setting {
                env: "JWT_SECRET",
                default: "",
                help: "HS256 secret of bearer tokens (unset: generated at start)",
            },
            Setting {
                env: "GATEWAY_LISTEN",
                default: "127.0.0.1:50051",
                help: "the gateway's gRPC and gRPC-Web address",
            },
            Setting {
                env: "GATEWAY_ADMIN_LISTEN",
                default: "127.0.0.1:9464",
                help: "the gateway's /metrics and /healthz",
            },
            Setting {
                env: "BLAZING_SUN_LISTEN",
                default: "127.0.0.1:8080",
                help: "blazing_sun's balance API and page",
            },
            Setting {
                env: "CHECKOUT_WEBHOOK_LISTEN",
                default: "127.0.0.1:8081",
                help: "the checkout webhook",
            },
            Setting {
                env: "CHECKOUT_RECONCILE_INTERVAL_SECS",
                default: "15",
                help: "how often sessions without an outcome are looked up at Stripe",
            },
            Setting {
                env: "CHECKOUT_RECONCILE_AFTER_SECS",
                default: "30",
                help: "how old such a session must be before it is looked up",
            },
        ],
    },
    Group {
        heading: "Stripe",
        settings: &[
            Setting {
                env: "STRIPE_SECRET_KEY",
                default: "",
                help: "with STRIPE_WEBHOOK_SECRET: real Stripe (test keys) instead of the emulator",
            },
            Setting {
                env: "STRIPE_WEBHOOK_SECRET",
                default: "",
                help: "the webhook signing secret of real Stripe",
            },
            Setting {
                env: "STRIPE_API_BASE",
                default: "https://api.stripe.com/",
                help: "real Stripe's API",
            },
            Setting {
                env: "STACK_STRIPE_EMULATOR",
                default: "false",
                help: "true keeps the emulator even with Stripe keys set",
            },
            Setting {
                env: "STRIPE_EMULATOR_LISTEN",
                default: "127.0.0.1:12111",
                help: "the emulator's address",
            },
        ],
    },
];

/// What the Kafka subcommands (`topics`, `tail`, `lag`, `dlq replay`)
/// read: [`monitor_kafka`].
pub const MONITOR_SETTINGS: &[Group] = &[Group {
    heading: "Kafka",
    settings: &[
        Setting {
            env: "KAFKA_BOOTSTRAP_SERVERS",
            default: MONITOR_BOOTSTRAP,
            help: "the broker to ask (default: the launcher's embedded one)",
        },
        cli::KAFKA.settings[1],
        cli::KAFKA.settings[2],
    ],
}];

/// What `token` reads.
pub const TOKEN_SETTINGS: &[Group] = &[Group {
    heading: "Authentication",
    settings: &[Setting {
        env: "JWT_SECRET",
        default: "",
        help: "the secret the gateway and blazing_sun verify tokens with, at least 16 characters (required)",
    }],
}];

/// Where the Kafka subcommands look when `KAFKA_BOOTSTRAP_SERVERS` is unset.
pub const MONITOR_BOOTSTRAP: &str = "127.0.0.1:9092";

/// The Kafka settings of the monitoring subcommands: [`KafkaConfig::from_env`]
/// with [`MONITOR_BOOTSTRAP`] as the default broker.
///
/// # Errors
/// Every bad variable, at once.
pub fn monitor_kafka(mut env: EnvReader) -> Result<KafkaConfig, ConfigError> {
    let mut config = KafkaConfig::from_env(&mut env, "checkout-stack-monitor");
    if env.optional("KAFKA_BOOTSTRAP_SERVERS").is_none() {
        config.bootstrap_servers = MONITOR_BOOTSTRAP.into();
    }
    env.finish()?;
    Ok(config)
}

/// Where the checkout worker gets its Stripe.
#[derive(Debug, Clone)]
pub enum Stripe {
    /// The local emulator on `listen` (the default).
    Emulator { listen: SocketAddr },
    /// Real Stripe (test keys): `STRIPE_SECRET_KEY` and `STRIPE_WEBHOOK_SECRET`
    /// set and `STACK_STRIPE_EMULATOR` not true.
    Real {
        api_base: String,
        secret_key: Secret,
        webhook_secret: Secret,
    },
}

/// Everything `checkout-stack` needs.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// `KAFKA_BOOTSTRAP_SERVERS`: a real broker; unset runs the embedded one.
    pub external_kafka: Option<String>,
    /// The seed's topics, with `CHECKOUT_TOPIC_PARTITIONS` partitions (default 3).
    pub topics: Topics,
    /// `STACK_KAFKA_LISTEN`: the embedded broker's bootstrap address (default 127.0.0.1:9092).
    pub kafka_listen: SocketAddr,
    /// `KAFKA_ENABLE_IDEMPOTENCE` (default true): idempotent producers in
    /// every part ([`Self::kafka`]).
    pub enable_idempotence: bool,
    /// `GATEWAY_LISTEN` (default 127.0.0.1:50051).
    pub gateway_listen: SocketAddr,
    /// `GATEWAY_ADMIN_LISTEN` (default 127.0.0.1:9464).
    pub gateway_admin_listen: SocketAddr,
    /// `BLAZING_SUN_LISTEN` (default 127.0.0.1:8080).
    pub blazing_sun_listen: SocketAddr,
    /// `CHECKOUT_WEBHOOK_LISTEN` (default 127.0.0.1:8081).
    pub webhook_listen: SocketAddr,
    /// `DATABASE_URL` (default `sqlite://data/blazing_sun.db`, under `STACK_DATA_DIR`).
    pub database_url: String,
    /// `STACK_DATA_DIR` (default `./data`).
    pub data_dir: PathBuf,
    /// `JWT_SECRET`; generated at start when unset.
    pub jwt_secret: Secret,
    pub stripe: Stripe,
    /// `CHECKOUT_RECONCILE_INTERVAL_SECS` / `CHECKOUT_RECONCILE_AFTER_SECS`:
    /// here 15 s / 30 s ([`LAUNCHER_RECONCILE`]), so a newcomer sees a
    /// payment whose webhook was lost arrive anyway.
    pub reconcile: ReconcileConfig,
}

/// The launcher's reconciliation defaults (the service's own are minutes).
pub const LAUNCHER_RECONCILE: ReconcileConfig = ReconcileConfig {
    interval: Duration::from_secs(15),
    after: Duration::from_secs(30),
};

fn secs(env: &mut EnvReader, name: &'static str, default: Duration) -> Duration {
    let secs: u64 = env.parse(name, default.as_secs());
    if secs == 0 {
        env.error(format!("{name}: must be a positive number of seconds"));
    }
    Duration::from_secs(secs)
}

fn addr(env: &mut EnvReader, name: &'static str, default: [u8; 4], port: u16) -> SocketAddr {
    env.parse(name, SocketAddr::from((default, port)))
}

impl StackConfig {
    /// Reads the process environment.
    ///
    /// # Errors
    /// Every bad variable, at once.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_reader(EnvReader::from_env())
    }

    /// # Errors
    /// Every bad variable, at once.
    pub fn from_reader(mut env: EnvReader) -> Result<Self, ConfigError> {
        let local = [127, 0, 0, 1];
        let data_dir = PathBuf::from(env.string("STACK_DATA_DIR", "data"));
        let default_db = format!("sqlite://{}", data_dir.join("blazing_sun.db").display());
        let jwt_secret = env
            .optional("JWT_SECRET")
            .map_or_else(|| Secret::new(random_hex(32)), Secret::new);
        let use_emulator = env.flag("STACK_STRIPE_EMULATOR", false);
        let secret_key = env.optional("STRIPE_SECRET_KEY");
        let webhook_secret = env.optional("STRIPE_WEBHOOK_SECRET");
        let api_base = env.string("STRIPE_API_BASE", "https://api.stripe.com/");
        let stripe = match (use_emulator, secret_key, webhook_secret) {
            (false, Some(key), Some(whsec)) => Stripe::Real {
                api_base,
                secret_key: Secret::new(key),
                webhook_secret: Secret::new(whsec),
            },
            _ => Stripe::Emulator {
                listen: addr(&mut env, "STRIPE_EMULATOR_LISTEN", local, 12111),
            },
        };
        let config = Self {
            external_kafka: env.optional("KAFKA_BOOTSTRAP_SERVERS"),
            topics: Topics::from_env(&mut env),
            kafka_listen: addr(&mut env, "STACK_KAFKA_LISTEN", local, 9092),
            enable_idempotence: env.flag("KAFKA_ENABLE_IDEMPOTENCE", true),
            gateway_listen: addr(&mut env, "GATEWAY_LISTEN", local, 50051),
            gateway_admin_listen: addr(&mut env, "GATEWAY_ADMIN_LISTEN", local, 9464),
            blazing_sun_listen: addr(&mut env, "BLAZING_SUN_LISTEN", local, 8080),
            webhook_listen: addr(&mut env, "CHECKOUT_WEBHOOK_LISTEN", local, 8081),
            database_url: env.string("DATABASE_URL", &default_db),
            data_dir,
            jwt_secret,
            stripe,
            reconcile: ReconcileConfig {
                interval: secs(
                    &mut env,
                    "CHECKOUT_RECONCILE_INTERVAL_SECS",
                    LAUNCHER_RECONCILE.interval,
                ),
                after: secs(
                    &mut env,
                    "CHECKOUT_RECONCILE_AFTER_SECS",
                    LAUNCHER_RECONCILE.after,
                ),
            },
        };
        env.finish()?;
        Ok(config)
    }

    /// Client settings for a part on `bootstrap`, with this configuration's
    /// idempotence.
    pub fn kafka(&self, bootstrap: &str, client_id: &str) -> KafkaConfig {
        let mut kafka = KafkaConfig::new(bootstrap, client_id);
        kafka.enable_idempotence = self.enable_idempotence;
        kafka
    }

    /// Every listener on `127.0.0.1:0`, the embedded broker and emulator, the
    /// database in `data_dir`: what tests use.
    pub fn on_free_ports(data_dir: PathBuf) -> Self {
        Self {
            external_kafka: None,
            topics: Topics::default(),
            kafka_listen: free_local_addr(),
            enable_idempotence: true,
            gateway_listen: free_local_addr(),
            gateway_admin_listen: free_local_addr(),
            blazing_sun_listen: free_local_addr(),
            webhook_listen: free_local_addr(),
            database_url: format!("sqlite://{}", data_dir.join("blazing_sun.db").display()),
            data_dir,
            jwt_secret: Secret::new(random_hex(32)),
            stripe: Stripe::Emulator {
                listen: free_local_addr(),
            },
            reconcile: LAUNCHER_RECONCILE,
        }
    }
}

/// A loopback address whose port was free a moment ago. Ports are chosen
/// up front (not 0) so every URL, such as blazing_sun's public URL, is known
/// before the parts start.
fn free_local_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|_| SocketAddr::from(([127, 0, 0, 1], 0)))
}

/// `bytes` random bytes as lowercase hex (secrets generated for local runs).
pub fn random_hex(bytes: usize) -> String {
    let buf: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_tables_are_what_the_configs_read() {
        let run = cli::table_problems(SETTINGS, &[&[]], StackConfig::from_reader);
        assert!(run.is_empty(), "{run:#?}");
        let monitor = cli::table_problems(MONITOR_SETTINGS, &[&[]], monitor_kafka);
        assert!(monitor.is_empty(), "{monitor:#?}");
    }
}
