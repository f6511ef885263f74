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
//! - [`tail`]: the per-replica tail of `checkout.finished` and `checkout.requests`.
//! - [`health`]: the broker probe behind gRPC health and `/healthz`.
//! - [`metrics`]: Prometheus metrics (RPCs, streams, index, tail and consumer lag, process).
//! - [`admin`]: the admin HTTP port (`/metrics`, `/healthz`).
//! - this file: wiring: listeners, tower layers, tasks, graceful shutdown.

pub mod admin;
pub mod auth;
pub mod config;
pub mod error;
pub mod health;
pub mod index;
pub mod metrics;
pub mod rpc;
pub mod service;
pub mod tail;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use checkout_contract::pb;
use checkout_contract::pb::checkout_gateway_server::CheckoutGatewayServer;
use http::{HeaderName, HeaderValue, Method};
use rdkafka::producer::{FutureProducer, Producer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tower::Layer;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use config::{AuthMode, Config};
pub use error::{ApiError, Error};

use crate::auth::AuthLayer;
use crate::health::Probe;
use crate::index::Index;
use crate::metrics::Metrics;
use crate::rpc::{KeyLocks, Shared, stopped};
use crate::service::CheckoutService;
use crate::tail::{Tail, TailState};

/// A gateway with both listeners bound, ready to run.
pub struct Gateway {
    config: Config,
    grpc: TcpListener,
    admin: TcpListener,
    grpc_addr: SocketAddr,
    admin_addr: SocketAddr,
    shared: Arc<Shared>,
    producer: FutureProducer,
    tail_consumer: Arc<tail::TailConsumer>,
    stop: watch::Sender<bool>,
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
            TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { what, addr, source })
        };
        let grpc = bind("gRPC", config.grpc_listen).await?;
        let admin = bind("admin", config.admin_listen).await?;
        let local = |l: &TcpListener, what, addr| {
            l.local_addr()
                .map_err(|source| Error::Bind { what, addr, source })
        };
        let grpc_addr = local(&grpc, "gRPC", config.grpc_listen)?;
        let admin_addr = local(&admin, "admin", config.admin_listen)?;

        let timeout_ms = config.produce_timeout.as_millis().max(1).to_string();
        // A short `message.timeout.ms`: StartCheckout answers UNAVAILABLE
        // rather than hang while the broker is away. Idempotence follows
        // `KAFKA_ENABLE_IDEMPOTENCE` (see `checkout_contract::kafka`): on for
        // Apache Kafka, off for Tansu 0.6, whose idempotent-produce path
        // panics its storage task after an epoch bump. Without it a retry may
        // duplicate a request event; that is harmless, the request_id
        // identifies the checkout and the worker dedupes by it.
        let producer: FutureProducer = config
            .kafka
            .producer_config()
            .set("message.timeout.ms", &timeout_ms)
            .create()?;
        let metrics = Arc::new(Metrics::default());
        let tail_consumer = Arc::new(tail::consumer(&config.kafka, &metrics)?);
        let (stop, stopping) = watch::channel(false);
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
            stopping,
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
            tail_consumer,
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
            tail_consumer,
            stop,
            ..
        } = self;
        let tail_state = Arc::new(TailState::default());
        let serving = Arc::new(AtomicBool::new(false));
        let reporter = tonic_health::server::HealthReporter::new();
        // The reporter starts with "" SERVING; nothing is connected yet.
        health::set(&reporter, false).await;
        let health_service = tonic_health::pb::health_server::HealthServer::new(
            tonic_health::server::HealthService::from_health_reporter(reporter.clone()),
        );

        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(
            Tail {
                consumer: Arc::clone(&tail_consumer),
                topics: config.topics.clone(),
                lookback: config.lookback,
                index: Arc::clone(&shared.index),
                metrics: Arc::clone(&shared.metrics),
                state: Arc::clone(&tail_state),
            }
            .run(stop.subscribe()),
        );
        tasks.spawn(
            Probe {
                reporter,
                producer: producer.clone(),
                tail_consumer,
                tail: tail_state,
                topics: config.topics.clone(),
                metrics: Arc::clone(&shared.metrics),
                interval: config.health_probe_interval,
                serving: Arc::clone(&serving),
            }
            .run(stop.subscribe()),
        );
        tasks.spawn(sweep(Arc::clone(&shared.index), stop.subscribe()));

        let reflection = || {
            tonic_reflection::server::Builder::configure()
                .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
                .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        };
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        let gateway = CheckoutGatewayServer::new(CheckoutService::new(Arc::clone(&shared)))
            .max_decoding_message_size(config.max_message_bytes)
            .max_encoding_message_size(config.max_message_bytes);
        // Authentication wraps only the checkout service: health and
        // reflection stay open for load balancers and grpcurl.
        let gateway = AuthLayer::new(&config.auth, Arc::clone(&shared.metrics)).layer(gateway);

        let mut builder = tonic::transport::Server::builder();
        if let Some(files) = &config.tls {
            builder = builder.tls_config(tls_config(files)?).map_err(Error::Tls)?;
        }
        let grpc_server = builder
            // gRPC-Web clients (browsers) speak HTTP/1.1.
            .accept_http1(true)
            .max_concurrent_streams(config.max_concurrent_streams)
            .http2_keepalive_interval(Some(config.keepalive_interval))
            .http2_keepalive_timeout(Some(config.keepalive_timeout))
            // Bounds every call's handler (streams return their stream at once,
            // their own deadline is in watch_checkout).
            .timeout(config.unary_timeout)
            // CORS outermost: a browser's preflight OPTIONS is answered here and
            // never reaches the gRPC-Web translation or a service.
            .layer(cors(&config.cors_origins))
            // gRPC-Web -> gRPC translation before routing, so every service
            // (checkout, health, reflection) is reachable from a browser.
            .layer(tonic_web::GrpcWebLayer::new())
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(gateway)
            .serve_with_incoming_shutdown(with_nodelay(grpc), {
                let mut stopping = stop.subscribe();
                async move { stopped(&mut stopping).await }
            });
        let admin_server = axum::serve(
            admin,
            admin::router(admin::AdminState {
                metrics: Arc::clone(&shared.metrics),
                index: Arc::clone(&shared.index),
                serving,
            }),
        )
        .with_graceful_shutdown({
            let mut stopping = stop.subscribe();
            async move { stopped(&mut stopping).await }
        });
        let mut grpc_task = tokio::spawn(async move { grpc_server.await.map_err(Error::Serve) });
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
        stop.send_replace(true);

        let grace = config.shutdown_grace;
        if !grpc_done {
            match tokio::time::timeout(grace, &mut grpc_task).await {
                Ok(r) => result = result.and(joined(r)),
                Err(_) => {
                    tracing::warn!(
                        ?grace,
                        "calls still open after the grace period; closing them"
                    );
                    grpc_task.abort();
                }
            }
        }
        let flushed = tokio::task::spawn_blocking(move || producer.flush(grace)).await;
        if !matches!(flushed, Ok(Ok(()))) {
            tracing::warn!("producer flush did not complete");
        }
        if !admin_done {
            match tokio::time::timeout(grace, &mut admin_task).await {
                Ok(r) => result = result.and(joined(r)),
                Err(_) => admin_task.abort(),
            }
        }
        while tasks.join_next().await.is_some() {}
        tracing::info!("gateway stopped");
        result
    }
}

/// Drops expired index entries and idle watcher channels every few seconds.
async fn sweep(index: Arc<Index>, mut stop: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            () = stopped(&mut stop) => return,
            () = tokio::time::sleep(Duration::from_secs(5)) => index.sweep(),
        }
    }
}

/// CORS for gRPC-Web: the allowed origins (`*` for any), POST, the headers
/// gRPC-Web clients send, and the gRPC status headers they must read.
fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let h = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            h("content-type"),
            h("authorization"),
            h("x-grpc-web"),
            h("x-user-agent"),
            h("grpc-timeout"),
        ])
        .expose_headers([
            h("grpc-status"),
            h("grpc-message"),
            h("grpc-status-details-bin"),
        ])
        .max_age(Duration::from_secs(24 * 3600))
}

/// The rustls server configuration from PEM files: the server's identity,
/// and with a client CA, mandatory client certificates (mutual TLS).
/// Read once at start-up, so plain blocking reads.
fn tls_config(files: &config::TlsFiles) -> Result<tonic::transport::ServerTlsConfig, Error> {
    fn read(path: &std::path::Path) -> Result<Vec<u8>, Error> {
        std::fs::read(path).map_err(|source| Error::TlsFile {
            path: path.to_owned(),
            source,
        })
    }
    let identity = tonic::transport::Identity::from_pem(read(&files.cert)?, read(&files.key)?);
    let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca {
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    Ok(tls)
}

/// The accepted connections of `listener` with `TCP_NODELAY` set: tonic's
/// own `tcp_nodelay` (on by default) does not apply to
/// `serve_with_incoming`, and without it Nagle's algorithm held small
/// responses and stream messages for a delayed ACK (p99 +40 ms).
fn with_nodelay(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|accepted| {
        if let Ok(stream) = &accepted {
            let _ = stream.set_nodelay(true);
        }
        accepted
    })
}
