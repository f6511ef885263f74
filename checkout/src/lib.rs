//! The checkout service: a Kafka-native worker that turns `checkout.requests`
//! into Stripe Checkout Sessions (`session_created` on `checkout.finished`),
//! and the Stripe webhook endpoint that turns Stripe's events into `success`
//! or `failed` (seed document, "Status Values").
//!
//! [`Application::build`] creates the Kafka clients and binds the webhook
//! listener; [`Application::run_until_stopped`] runs the worker, the webhook,
//! the open-session tail and reconciliation with Stripe until the shutdown
//! future resolves (or the worker stops on a refused Stripe key).
//!
//! # Layout
//! - [`config`]: typed configuration from the environment (`STRIPE_*`, `CHECKOUT_*`).
//! - [`worker`]: the `checkout.requests` consumer: concurrency, offsets, graceful stop.
//! - [`tracker`]: per-partition in-order completion tracking (which offset may be stored).
//! - [`checkout_request`]: the handler of one request message, returning an [`checkout_request::Outcome`].
//! - [`dlq`]: poison messages to `checkout.requests.dlq`.
//! - [`stripe`]: creating a Checkout Session: parameters, idempotency key, error classes, retries.
//! - [`stripe_http`]: the pooled HTTP transport under async-stripe's request types (connections reused, Stripe's retry headers kept).
//! - [`retry`]: the retry budget and jittered backoff.
//! - [`rate_limit`]: the client-side limit on calls to Stripe.
//! - [`assignment`]: the partitions this replica owns: its share of the account's Stripe limit, the sessions it reconciles.
//! - [`webhook`]: `POST /webhooks/stripe`: signature check, publish, status codes.
//! - [`stripe_event`]: what each verified Stripe event means for `checkout.finished`.
//! - [`sessions`]: the sessions opened without a terminal status yet, from a tail of `checkout.finished`.
//! - [`reconcile`]: asks Stripe about those sessions, so no payment depends on a webhook.
//! - [`metrics`]: Prometheus metrics (Stripe calls, outcomes published, webhook deliveries, dead letters, lag, process), `GET /metrics` on the webhook listener.

pub mod assignment;
pub mod checkout_request;
pub mod config;
pub mod dlq;
pub mod metrics;
pub mod rate_limit;
pub mod reconcile;
pub mod retry;
pub mod sessions;
pub mod stripe;
pub mod stripe_event;
pub mod stripe_http;
pub mod tracker;
pub mod webhook;
pub mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use checkout_contract::kafka::ensure_topics;
use checkout_contract::shutdown::Stop;
use rdkafka::producer::{FutureProducer, Producer};
use tokio::net::TcpListener;

use crate::assignment::Assignment;
use crate::checkout_request::RequestHandler;
pub use crate::config::Config;
use crate::metrics::Metrics;
use crate::reconcile::Reconciler;
use crate::sessions::{OpenSessions, SessionTail};
use crate::webhook::{Outcomes, WebhookState};
use crate::worker::{Worker, WorkerContext, WorkerError};

/// Why the service could not start or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot create Kafka client: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cannot create topics: {0}")]
    Topics(rdkafka::error::KafkaError),
    #[error("cannot build the Stripe client: {0}")]
    Stripe(#[from] ::stripe::StripeError),
    #[error("cannot bind the webhook listener on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("checkout worker stopped: {0}")]
    Worker(#[from] WorkerError),
}

/// A built, not yet running, checkout service.
pub struct Application {
    listener: TcpListener,
    webhook_addr: SocketAddr,
    worker: Worker,
    webhook: axum::Router,
    session_tail: SessionTail,
    reconciler: Reconciler,
    producer: FutureProducer,
    header_read_timeout: std::time::Duration,
    shutdown_grace: std::time::Duration,
}

impl Application {
    /// Creates the topics if missing, the Kafka clients and the Stripe
    /// client, and binds the webhook listener.
    ///
    /// # Errors
    /// When the broker refuses topic creation, a client cannot be created,
    /// or the listen address cannot be bound.
    pub async fn build(config: Config) -> Result<Self, Error> {
        ensure_topics(
            &config.kafka,
            &config.topics.all(),
            config.topics.partitions,
        )
        .await
        .map_err(Error::Topics)?;
        let producer = producer(&config)?;
        // One client, one rate limit: the worker and reconciliation share it
        // (clones share the limiter), at this replica's share of the
        // account's limit, set on every rebalance.
        let metrics = Arc::new(Metrics::default());
        let stripe = stripe::Stripe::new(&config.stripe)?.with_metrics(Arc::clone(&metrics));
        let assignment = Arc::new(Assignment::new(config.stripe.rate_limit, stripe.limiter()));
        let worker = worker(&config, &producer, &stripe, &assignment, &metrics)?;

        let sessions = Arc::new(OpenSessions::new(config.reconcile.after));
        let session_tail = SessionTail {
            consumer: Arc::new(sessions::consumer(&config.kafka, &metrics)?),
            topic: config.topics.finished.clone(),
            sessions: Arc::clone(&sessions),
        };
        let outcomes = Outcomes {
            producer: producer.clone(),
            finished_topic: config.topics.finished.clone(),
            publish_timeout: config.publish_timeout,
            sessions: Arc::clone(&sessions),
            metrics: Arc::clone(&metrics),
        };
        let reconciler = Reconciler {
            sessions,
            stripe: stripe.clone(),
            outcomes: outcomes.clone(),
            metrics: Arc::clone(&metrics),
            assignment: Arc::clone(&assignment),
            interval: config.reconcile.interval,
        };
        let webhook = webhook::router(
            WebhookState {
                outcomes,
                secrets: Arc::new(config.webhook.secrets.clone()),
                stripe,
                metrics,
                assignment,
            },
            config.webhook.max_body_bytes,
        )
        // Outermost: a body that trickles in slower than this ends the request.
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
            config.webhook.body_read_timeout,
        ));
        let (listener, webhook_addr) = bind(config.webhook.listen).await?;
        Ok(Self {
            listener,
            webhook_addr,
            worker,
            webhook,
            session_tail,
            reconciler,
            producer,
            header_read_timeout: config.webhook.header_read_timeout,
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// Where the webhook endpoint listens (the real port when configured with 0).
    pub fn webhook_addr(&self) -> SocketAddr {
        self.webhook_addr
    }

    /// Runs the worker and the webhook server until `shutdown` resolves; if
    /// either stops on its own, the other is stopped too.
    ///
    /// # Errors
    /// When the worker stopped on a refused Stripe key (or a bug), or the
    /// webhook server failed.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let stop = Stop::new();
        let server = async {
            checkout_contract::http_server::serve(
                self.listener,
                self.webhook,
                self.header_read_timeout,
                self.shutdown_grace,
                stop.stopping(),
            )
            .await;
            stop.stop();
        };
        let worker = async {
            let r = self.worker.run(stop.when_stopped()).await;
            stop.stop();
            r
        };
        let session_tail = tokio::spawn(self.session_tail.run(stop.stopping()));
        let reconciler = tokio::spawn(self.reconciler.run(stop.stopping()));
        let ((), worker_result) = stop
            .run_until(shutdown, async { tokio::join!(server, worker) })
            .await;
        // Both watch the stop signal and end a round or a read at once.
        let _ = tokio::join!(reconciler, session_tail);

        // Flushing and dropping wait for the broker: off the runtime, and
        // bounded whatever the broker does.
        let producer = self.producer;
        let flush_timeout = std::time::Duration::from_secs(5);
        let close = move || {
            if let Err(e) = producer.flush(flush_timeout) {
                tracing::warn!(error = %e, "producer flush at shutdown failed");
            }
            drop(producer);
        };
        checkout_contract::shutdown::close_within(
            "producer",
            flush_timeout + checkout_contract::shutdown::CLOSE_TIMEOUT,
            close,
        )
        .await;
        worker_result?;
        Ok(())
    }
}

/// One producer for the worker and the webhook. `message.timeout.ms` is the
/// publish timeout, so a webhook answers 5xx in time for Stripe to retry.
/// Idempotence follows `KAFKA_ENABLE_IDEMPOTENCE` (the contract's
/// `KafkaConfig`): on against Kafka, off against Tansu, which cannot
/// re-initialise a producer id after a timed-out message.
fn producer(config: &Config) -> Result<FutureProducer, Error> {
    let timeout_ms = config.publish_timeout.as_millis().max(1).to_string();
    Ok(config
        .kafka
        .producer_config()
        .set("message.timeout.ms", &timeout_ms)
        .create()?)
}

/// The worker: a member of the consumer group on `checkout.requests` whose
/// rebalances set this replica's Stripe budget ([`Assignment`]).
fn worker(
    config: &Config,
    producer: &FutureProducer,
    stripe: &stripe::Stripe,
    assignment: &Arc<Assignment>,
    metrics: &Arc<Metrics>,
) -> Result<Worker, Error> {
    let mut consumer_config = config
        .kafka
        .member_config(&config.consumer_group, config.group_instance_id.as_ref());
    let lag = metrics.consumer_lag().recorder(&mut consumer_config);
    let consumer = consumer_config.create_with_context(WorkerContext::new(
        Arc::clone(assignment),
        config.topics.requests.clone(),
        config.topics.partitions,
        lag,
    ))?;
    let handler = Arc::new(RequestHandler {
        producer: producer.clone(),
        topics: config.topics.clone(),
        stripe: stripe.clone(),
        redirect_hosts: config.redirect_hosts.clone(),
        metrics: Arc::clone(metrics),
    });
    Ok(Worker {
        consumer,
        topic: config.topics.requests.clone(),
        handler,
        max_in_flight: config.max_in_flight,
        shutdown_grace: config.shutdown_grace,
    })
}

/// The webhook's listener and the address it got (the real port for 0).
async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), Error> {
    let (listener, webhook_addr) = checkout_contract::http_server::bind(addr)
        .await
        .map_err(|source| Error::Bind { addr, source })?;
    tracing::info!(%webhook_addr, path = webhook::PATH, "webhook listener bound");
    Ok((listener, webhook_addr))
}
