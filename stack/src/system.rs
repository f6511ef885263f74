//! Starts every part of the checkout system in this process, in dependency
//! order, and stops them together.
//!
//! broker (embedded unless `KAFKA_BOOTSTRAP_SERVERS`) -> Stripe emulator ->
//! checkout worker + webhook (emulator wired to it with a generated secret)
//! -> blazing_sun -> gateway. Each part is the same library `run` its own
//! binary uses; they meet only through Kafka and HTTP, as in production.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;

use checkout_contract::auth::{JwtIssuer, Role};
use checkout_contract::kafka::ensure_topics;
use checkout_contract::secret::Secret;
use checkout_contract::shutdown::{CLOSE_TIMEOUT, Stop, drain_all, drop_within};

use crate::config::{StackConfig, Stripe, random_hex};
use crate::embedded_broker::{BrokerError, EmbeddedBroker};

/// The demo user the printed token belongs to.
pub const DEMO_USER_ID: i64 = 1;

/// The longest the launcher waits for its parts to stop (each bounds its
/// own stop by its grace period and closing timeouts; blazing_sun's, the
/// longest, is 15 s for its batch plus 10 s for its producers).
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the stack did not start or stopped with a failure. One line each.
#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error(transparent)]
    Broker(#[from] BrokerError),
    #[error("cannot prepare the Kafka topics on {bootstrap}: {source}")]
    Topics {
        bootstrap: String,
        source: rdkafka::error::KafkaError,
    },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        source: std::io::Error,
    },
    #[error("{part}: {message}")]
    Part { part: &'static str, message: String },
}

fn part(part: &'static str) -> impl FnOnce(String) -> StackError {
    move |message| StackError::Part { part, message }
}

/// The running system: where everything is, and how to stop it.
pub struct Running {
    pub kafka_bootstrap: String,
    pub embedded_kafka: bool,
    pub gateway: SocketAddr,
    pub gateway_admin: SocketAddr,
    pub blazing_sun: SocketAddr,
    pub webhook: SocketAddr,
    /// `None` when talking to real Stripe.
    pub emulator: Option<SocketAddr>,
    /// A bearer token for the demo user ([`DEMO_USER_ID`]), role `user`.
    pub demo_user_token: String,
    /// A bearer token with role `service` (acts for any user), for grpcurl.
    pub service_token: String,
    pub database_url: String,
    /// How the checkout service reconciles with Stripe.
    pub reconcile: checkout::config::ReconcileConfig,
    stop: Stop,
    tasks: Tasks,
    broker: Option<EmbeddedBroker>,
}

/// The parts' tasks: each ends with its name and how it ended.
type Tasks = JoinSet<(&'static str, Result<(), String>)>;

/// Starts every part and returns once all of them answer their health checks.
///
/// # Errors
/// The first part that cannot start (a busy port, a bad database URL, an
/// unreachable broker), as one line.
pub async fn start(config: StackConfig) -> Result<Running, StackError> {
    let stop = Stop::new();
    let mut tasks = JoinSet::new();
    match start_parts(&config, &stop, &mut tasks).await {
        Ok(parts) => {
            let issuer = JwtIssuer::new(&config.jwt_secret);
            let day = Duration::from_secs(24 * 3600);
            Ok(Running {
                kafka_bootstrap: parts.kafka_bootstrap,
                embedded_kafka: parts.broker.is_some(),
                gateway: parts.gateway,
                gateway_admin: parts.gateway_admin,
                blazing_sun: parts.blazing_sun,
                webhook: parts.webhook,
                emulator: parts.emulator,
                demo_user_token: issuer.issue(&DEMO_USER_ID.to_string(), Role::User, day),
                service_token: issuer.issue("checkout-stack-demo", Role::Service, day),
                database_url: config.database_url,
                reconcile: config.reconcile,
                stop,
                tasks,
                broker: parts.broker,
            })
        }
        Err(e) => {
            // Stop what did start before reporting.
            stop.stop();
            while tasks.join_next().await.is_some() {}
            Err(e)
        }
    }
}

/// Starts each part in order; what started is in `tasks`, stopped by `stop`.
async fn start_parts(
    config: &StackConfig,
    stop: &Stop,
    tasks: &mut Tasks,
) -> Result<Parts, StackError> {
    let (broker, bootstrap) = kafka(config).await?;
    data_dir(config)?;
    let stripe = stripe(config, stop, tasks).await?;
    let webhook = checkout(config, &bootstrap, &stripe, stop, tasks).await?;
    let blazing_sun = blazing_sun(config, &bootstrap, stop, tasks).await?;
    let (gateway, gateway_admin) = gateway(config, &bootstrap, blazing_sun, stop, tasks).await?;
    for (name, addr) in [("gateway", gateway_admin), ("blazing_sun", blazing_sun)] {
        wait_healthy(addr, Duration::from_secs(60))
            .await
            .map_err(part(name))?;
    }
    Ok(Parts {
        kafka_bootstrap: bootstrap,
        broker,
        gateway,
        gateway_admin,
        blazing_sun,
        webhook,
        emulator: stripe.emulator.map(|(addr, _)| addr),
    })
}

/// The broker: the external one (topics created if missing) or an embedded
/// one started here. Returns the latter, if any, and the bootstrap address.
async fn kafka(config: &StackConfig) -> Result<(Option<EmbeddedBroker>, String), StackError> {
    let topics = &config.topics;
    match &config.external_kafka {
        Some(bootstrap) => {
            let kafka = config.kafka(bootstrap, "checkout-stack");
            ensure_topics(&kafka, &topics.all(), topics.partitions)
                .await
                .map_err(|source| StackError::Topics {
                    bootstrap: bootstrap.clone(),
                    source,
                })?;
            Ok((None, bootstrap.clone()))
        }
        None => {
            let broker = EmbeddedBroker::start(config.kafka_listen, topics).await?;
            let bootstrap = broker.bootstrap().to_owned();
            Ok((Some(broker), bootstrap))
        }
    }
}

/// Creates the data directory a SQLite database lives in.
fn data_dir(config: &StackConfig) -> Result<(), StackError> {
    if config.database_url.starts_with("sqlite:") {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| StackError::DataDir {
            path: config.data_dir.display().to_string(),
            source,
        })?;
    }
    Ok(())
}

/// Which Stripe the checkout service talks to, and with which secrets.
struct StripeSide {
    /// The emulator's address and handle; `None` for real Stripe.
    emulator: Option<(SocketAddr, stripe_emulator::Handle)>,
    api_base: String,
    secret_key: Secret,
    webhook_secret: Secret,
}

/// Starts the emulator (its webhook target is set once the webhook is
/// bound, with secrets generated here), or takes real Stripe's settings.
async fn stripe(
    config: &StackConfig,
    stop: &Stop,
    tasks: &mut Tasks,
) -> Result<StripeSide, StackError> {
    match &config.stripe {
        Stripe::Emulator { listen } => {
            let emulator_config = stripe_emulator::Config {
                listen: *listen,
                ..Default::default()
            };
            let emulator = stripe_emulator::Emulator::build(emulator_config)
                .await
                .map_err(|e| part("stripe emulator")(e.to_string()))?;
            let handle = emulator.handle();
            let api_base = emulator.api_base();
            let addr = emulator.addr();
            let run = emulator.run_until_stopped(stop.when_stopped());
            tasks.spawn(async move { ("stripe emulator", run.await.map_err(|e| e.to_string())) });
            Ok(StripeSide {
                emulator: Some((addr, handle)),
                api_base,
                secret_key: Secret::new(format!("sk_test_{}", random_hex(12))),
                webhook_secret: Secret::new(format!("whsec_{}", random_hex(24))),
            })
        }
        Stripe::Real {
            api_base,
            secret_key,
            webhook_secret,
        } => Ok(StripeSide {
            emulator: None,
            api_base: api_base.clone(),
            secret_key: secret_key.clone(),
            webhook_secret: webhook_secret.clone(),
        }),
    }
}

/// Starts the checkout worker and webhook, and points the emulator's
/// webhook at it. Returns the webhook's address.
async fn checkout(
    config: &StackConfig,
    bootstrap: &str,
    stripe: &StripeSide,
    stop: &Stop,
    tasks: &mut Tasks,
) -> Result<SocketAddr, StackError> {
    let mut checkout_config = checkout::Config::new(
        bootstrap.to_owned(),
        stripe.api_base.clone(),
        stripe.secret_key.clone(),
        stripe.webhook_secret.clone(),
    );
    checkout_config.kafka = config.kafka(bootstrap, "checkout");
    checkout_config.topics = config.topics.clone();
    checkout_config.webhook.listen = config.webhook_listen;
    checkout_config.reconcile = config.reconcile;
    let worker = checkout::Application::build(checkout_config)
        .await
        .map_err(|e| part("checkout")(e.to_string()))?;
    let webhook = worker.webhook_addr();
    if let Some((_, handle)) = &stripe.emulator {
        handle.set_webhook(
            Some(format!("http://{webhook}/webhooks/stripe")),
            Some(stripe.webhook_secret.expose().to_owned()),
        );
    }
    let run = worker.run_until_stopped(stop.when_stopped());
    tasks.spawn(async move { ("checkout", run.await.map_err(|e| e.to_string())) });
    Ok(webhook)
}

/// Starts blazing_sun. Returns its HTTP address.
async fn blazing_sun(
    config: &StackConfig,
    bootstrap: &str,
    stop: &Stop,
    tasks: &mut Tasks,
) -> Result<SocketAddr, StackError> {
    let mut bs_config = blazing_sun::Config::new(
        config.database_url.clone(),
        config.kafka(bootstrap, "blazing_sun"),
        config.jwt_secret.clone(),
    );
    bs_config.topics = config.topics.clone();
    bs_config.listen = config.blazing_sun_listen;
    bs_config.public_url = format!("http://{}", config.blazing_sun_listen);
    // The balance page streams checkout status from the gateway (gRPC-Web).
    bs_config.gateway_url = format!("http://{}", config.gateway_listen);
    let app = blazing_sun::Application::build(bs_config)
        .await
        .map_err(|e| part("blazing_sun")(e.to_string()))?;
    let addr = app.http_addr();
    let run = app.run_until_stopped(stop.when_stopped());
    tasks.spawn(async move { ("blazing_sun", run.await.map_err(|e| e.to_string())) });
    Ok(addr)
}

/// Starts the gateway, open to the balance page served by `blazing_sun`.
/// Returns its gRPC and admin addresses.
async fn gateway(
    config: &StackConfig,
    bootstrap: &str,
    blazing_sun: SocketAddr,
    stop: &Stop,
    tasks: &mut Tasks,
) -> Result<(SocketAddr, SocketAddr), StackError> {
    let mut gw_config = gateway::Config::new(
        config.kafka(bootstrap, "gateway"),
        config.topics.clone(),
        gateway::AuthMode::Jwt(config.jwt_secret.clone()),
    );
    gw_config.grpc_listen = config.gateway_listen;
    gw_config.admin_listen = config.gateway_admin_listen;
    gw_config.cors_origins = vec![format!("http://{blazing_sun}")];
    let gw = gateway::Gateway::build(gw_config)
        .await
        .map_err(|e| part("gateway")(e.to_string()))?;
    let addrs = (gw.grpc_addr(), gw.admin_addr());
    let run = gw.run_until_stopped(stop.when_stopped());
    tasks.spawn(async move { ("gateway", run.await.map_err(|e| e.to_string())) });
    Ok(addrs)
}

/// Where the started parts are.
struct Parts {
    kafka_bootstrap: String,
    broker: Option<EmbeddedBroker>,
    gateway: SocketAddr,
    gateway_admin: SocketAddr,
    blazing_sun: SocketAddr,
    webhook: SocketAddr,
    emulator: Option<SocketAddr>,
}

impl Running {
    /// Runs until `shutdown` resolves or a part stops on its own; then stops
    /// every part and waits for them.
    ///
    /// # Errors
    /// The first part that failed.
    pub async fn run_until_stopped(
        mut self,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), StackError> {
        let mut first_error = None;
        tokio::select! {
            () = shutdown => {}
            Some(done) = self.tasks.join_next() => {
                let (name, result) = done.unwrap_or(("a part", Err("panicked".into())));
                tracing::error!(part = name, ?result, "a part stopped on its own; stopping the rest");
                first_error = Some(part(name)(result.err().unwrap_or_else(|| "stopped".into())));
            }
        }
        self.stop.stop();
        // Every part bounds its own stop; this bounds the launcher's, whatever a part does.
        drain_all("parts", STOP_TIMEOUT, &mut self.tasks, |done| {
            if let Ok((name, Err(message))) = done {
                first_error.get_or_insert(StackError::Part {
                    part: name,
                    message,
                });
            }
        })
        .await;
        if let Some(broker) = self.broker.take() {
            drop_within("embedded broker", CLOSE_TIMEOUT, broker).await;
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Polls `GET /healthz` on `addr` until it answers 200.
async fn wait_healthy(addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match get(addr, "/healthz").await {
            Ok((200, _)) => return Ok(()),
            Ok((status, body)) => last = format!("/healthz answered {status}: {body}"),
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(format!("not healthy after {timeout:?} ({last})"))
}

/// A minimal HTTP/1.1 GET: status code and body.
async fn get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = response
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .chars()
        .take(200)
        .collect();
    Ok((status, body))
}
