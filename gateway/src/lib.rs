//! The checkout gRPC gateway: `checkout.v1.CheckoutGateway` (StartCheckout,
//! WatchCheckout, GetCheckout) over tonic, backed by the Kafka topics
//! `checkout.requests` (it produces) and `checkout.finished` (it tails).
//!
//! Internal services start checkouts; browsers (gRPC-Web) and mobile clients
//! stream their status; engineers use grpcurl (server reflection v1 and
//! v1alpha, `grpc.health.v1.Health`). Every replica tails the topics itself,
//! so any replica serves any watch.
//!
//! Use [`Gateway::build`] (binds both listeners; port 0 is fine) and
//! [`Gateway::run_until_stopped`]; `main.rs` only adds configuration from
//! the environment and tracing.
//!
//! # Layout
//! - [`config`]: the typed [`Config`], from the environment or in code.
//! - [`error`]: start-up [`Error`]s, call errors and their ONE mapping to `tonic::Status`.
//! - [`auth`]: the bearer-token tower layer and who may see what.
//! - [`service`]: the tonic service; dispatches to [`rpc`], records metrics.
//! - [`rpc`]: one file per RPC (`start_checkout`, `watch_checkout`, `get_checkout`),
//!   and `idempotency`: the per-request_id locks of concurrent StartCheckouts.
//! - [`index`]: the bounded request_id -> statuses index and its watcher channels.
//! - [`tail`]: the per-replica tails of `checkout.finished` and `checkout.requests`.
//! - [`health`]: the broker probe behind gRPC health and `/healthz`.
//! - [`metrics`]: Prometheus metrics (RPCs, streams, index, tail and consumer lag, process).
//! - [`admin`]: the admin HTTP port (`/metrics`, `/healthz`).
//! - [`server`]: the tonic server: its tower layers, services, TLS, `TCP_NODELAY`.
//! - this file: wiring: listeners, Kafka clients, tasks, graceful shutdown.

pub mod admin;
pub mod auth;
pub mod config;
pub mod error;
pub mod health;
pub mod index;
pub mod metrics;
pub mod rpc;
pub mod server;
pub mod service;
pub mod tail;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use checkout_contract::http_server;
use checkout_contract::shutdown::{Stop, Stopping, drain};
use rdkafka::producer::{FutureProducer, Producer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub use config::{AuthMode, Config};
pub use error::{ApiError, Error};

use crate::health::Probe;
use crate::index::Index;
use crate::metrics::Metrics;
use crate::rpc::{KeyLocks, Shared};
use crate::tail::{Tail, TailState};

/// The settings of the producer of `checkout.requests` (also the raw
/// produce floor of `checkout-bench start`).
///
/// A short `message.timeout.ms`: StartCheckout answers UNAVAILABLE rather
/// than hang while the broker is away. `linger.ms` from
/// `GATEWAY_PRODUCE_LINGER_MS`. Idempotence follows
/// `KAFKA_ENABLE_IDEMPOTENCE` (see `checkout_contract::kafka`): on, with up
/// to 5 produce requests in flight (librdkafka's limit with idempotence),
/// except on Tansu 0.6, whose idempotent-produce path panics its storage
/// task after an epoch bump. Without it a retry may duplicate a request
/// event; that is harmless, the request_id identifies the checkout and the
/// worker dedupes by it.
pub fn producer_config(config: &Config) -> rdkafka::ClientConfig {
    let mut c = config.kafka.producer_config();
    c.set(
        "message.timeout.ms",
        config.produce_timeout.as_millis().max(1).to_string(),
    )
    .set("linger.ms", config.produce_linger.as_millis().to_string());
    c
}

/// A gateway with both listeners bound, ready to run.
pub struct Gateway {
    config: Config,
    grpc: TcpListener,
    admin: TcpListener,
    grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
    shared: Arc<Shared>,
    producer: FutureProducer,
    /// The consumers of the `checkout.finished` and `checkout.requests` tails.
    tail_consumers: [Arc<tail::TailConsumer>; 2],
    stop: Stop,
}

impl Gateway {
    /// Binds the gRPC and admin listeners and creates the Kafka clients
    /// (which connect lazily: a broker that is down only keeps the gateway
    /// NOT_SERVING).
    ///
    /// # Errors
    /// When a listener cannot be bound or a Kafka client cannot be created.
    pub async fn build(config: Config) -> Result<Self, Error> {
        let bind = |what: &'static str, addr: SocketAddr| async move {
            http_server::bind(addr)
                .await
                .map_err(|source| Error::Bind { what, addr, source })
        };
        let (grpc, grpc_addr) = bind("gRPC", config.grpc_listen).await?;
        let (admin, admin_addr) = bind("admin", config.admin_listen).await?;

        let producer: FutureProducer = producer_config(&config).create()?;
        let metrics = Arc::new(Metrics::default());
        let tail_consumers = [
            Arc::new(tail::consumer(&config.kafka, &metrics)?),
            Arc::new(tail::requests_consumer(
                &config.kafka,
                config.requests_tail_wait,
                &metrics,
            )?),
        ];
        let stop = Stop::new();
        let shared = Arc::new(Shared {
            index: Arc::new(Index::new(
                config.index_ttl,
                config.index_max_entries,
                config.watch_queue,
            )),
            producer: producer.clone(),
            topics: config.topics.clone(),
            metrics,
            produce_timeout: config.produce_timeout,
            unary_timeout: config.unary_timeout,
            watch_max: config.watch_max,
            stopping: stop.stopping(),
            in_flight: KeyLocks::default(),
            redirect_hosts: config.redirect_hosts.clone(),
        });
        if config.auth == AuthMode::Disabled {
            tracing::warn!(
                "authentication is DISABLED (GATEWAY_AUTH_DISABLED=true): every caller acts as `anonymous` for any user"
            );
        }
        tracing::info!(%grpc_addr, %admin_addr, "gateway listening");
        Ok(Self {
            config,
            grpc,
            admin,
            grpc_addr,
            admin_addr,
            shared,
            producer,
            tail_consumers,
            stop,
        })
    }

    /// Where gRPC (and gRPC-Web) is served.
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc_addr
    }

    /// Where `/metrics` and `/healthz` are served.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Serves until `shutdown` resolves, then: stops accepting, ends open
    /// streams with UNAVAILABLE, waits up to the grace period for calls in
    /// flight, flushes the producer and stops the tail.
    ///
    /// # Errors
    /// When the reflection service cannot be built or a server fails.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let Self {
            config,
            grpc,
            admin,
            shared,
            producer,
            tail_consumers,
            stop,
            ..
        } = self;
        let serving = Arc::new(AtomicBool::new(false));
        let reporter = tonic_health::server::HealthReporter::new();
        // The reporter starts with "" SERVING; nothing is connected yet.
        health::set(&reporter, false).await;
        let grpc_server = server::grpc(&config, &shared, &reporter, grpc, stop.when_stopped())?;

        let mut tasks = background(
            &config,
            &shared,
            reporter,
            producer.clone(),
            tail_consumers,
            Arc::clone(&serving),
            &stop,
        );

        let admin_server = axum::serve(
            admin,
            admin::router(admin::AdminState {
                metrics: Arc::clone(&shared.metrics),
                index: Arc::clone(&shared.index),
                serving,
            }),
        )
        .with_graceful_shutdown(stop.when_stopped());
        let mut grpc_task = tokio::spawn(grpc_server);
        let mut admin_task = tokio::spawn(async move { admin_server.await.map_err(Error::Admin) });
        let joined = |r: Result<Result<(), Error>, tokio::task::JoinError>| {
            r.map_err(Error::from).and_then(|r| r)
        };

        let (mut result, mut grpc_done, mut admin_done) = (Ok(()), false, false);
        tokio::select! {
            () = shutdown => {}
            r = &mut grpc_task => (result, grpc_done) = (joined(r), true),
            r = &mut admin_task => (result, admin_done) = (joined(r), true),
        }
        if let Err(e) = &result {
            tracing::error!(error = %e, "a server stopped unexpectedly");
        }
        tracing::info!("gateway shutting down");
        // Streams see this and end with UNAVAILABLE; both servers stop accepting.
        stop.stop();

        let grace = config.shutdown_grace;
        if !grpc_done && let Some(r) = drain("calls in flight", grace, &mut grpc_task).await {
            result = result.and(joined(r));
        }
        let flushed = tokio::task::spawn_blocking(move || producer.flush(grace)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!("producer flush did not complete");
        }
        if !admin_done && let Some(r) = drain("admin requests", grace, &mut admin_task).await {
            result = result.and(joined(r));
        }
        while tasks.join_next().await.is_some() {}
        tracing::info!("gateway stopped");
        result
    }
}

/// The tasks beside the servers, each stopped by `stop`: the status tails
/// (of `checkout.finished` and `checkout.requests`, with these consumers),
/// the health probe and the index sweep.
fn background(
    config: &Config,
    shared: &Arc<Shared>,
    reporter: tonic_health::server::HealthReporter,
    producer: FutureProducer,
    consumers: [Arc<tail::TailConsumer>; 2],
    serving: Arc<AtomicBool>,
    stop: &Stop,
) -> JoinSet<()> {
    let tails: [Arc<TailState>; 2] = Default::default();
    let mut tasks = JoinSet::new();
    let topics = [&config.topics.finished, &config.topics.requests];
    for ((topic, consumer), state) in topics.into_iter().zip(&consumers).zip(&tails) {
        tasks.spawn(
            Tail {
                consumer: Arc::clone(consumer),
                topic: topic.clone(),
                topics: config.topics.clone(),
                lookback: config.lookback,
                index: Arc::clone(&shared.index),
                metrics: Arc::clone(&shared.metrics),
                state: Arc::clone(state),
            }
            .run(stop.stopping()),
        );
    }
    tasks.spawn(
        Probe {
            reporter,
            producer,
            tail_consumer: Arc::clone(&consumers[0]),
            tails,
            topics: config.topics.clone(),
            metrics: Arc::clone(&shared.metrics),
            interval: config.health_probe_interval,
            serving,
        }
        .run(stop.stopping()),
    );
    tasks.spawn(sweep(Arc::clone(&shared.index), stop.stopping()));
    tasks
}

/// Drops expired index entries and idle watcher channels every few seconds.
async fn sweep(index: Arc<Index>, mut stop: Stopping) {
    loop {
        tokio::select! {
            () = stop.stopped() => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => index.sweep(),
        }
    }
}

#[cfg(test)]
mod tests {
    use checkout_contract::kafka::KafkaConfig;
    use checkout_contract::topics::Topics;

    use super::*;

    #[test]
    fn the_producer_lingers_and_times_out_as_configured() {
        let kafka = KafkaConfig::new("127.0.0.1:9092", "gateway-test");
        let mut config = Config::new(kafka, Topics::default(), AuthMode::Disabled);
        let c = producer_config(&config);
        assert_eq!(c.get("linger.ms"), Some("1"));
        assert_eq!(c.get("message.timeout.ms"), Some("5000"));
        assert_eq!(c.get("acks"), Some("all"));

        config.produce_linger = Duration::from_millis(5);
        config.produce_timeout = Duration::from_millis(1500);
        let c = producer_config(&config);
        assert_eq!(c.get("linger.ms"), Some("5"));
        assert_eq!(c.get("message.timeout.ms"), Some("1500"));
    }
}
