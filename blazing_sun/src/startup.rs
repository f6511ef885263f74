//! [`Application`]: builds every part from a [`Config`] (database and
//! migrations, HTTP listener, Kafka clients), then runs the HTTP API and the
//! `checkout.finished` consumer until the shutdown future resolves
//! (zero2prod `startup.rs`).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use checkout_contract::auth::TokenVerifier;
use checkout_contract::metrics::LagConsumer;
use checkout_contract::shutdown::{Stop, drain};
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer as _};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::events::consumer::{self, ConsumerError};
use crate::events::handlers::checkout_finished::CheckoutFinished;
use crate::http;
use crate::metrics::Metrics;
use crate::store::{Store, StoreError};

/// How long the consumer gets to finish its batch after shutdown.
const CONSUMER_GRACE: Duration = Duration::from_secs(15);
/// How long the producers get to deliver what they hold at shutdown.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// Why the application could not start or stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot create a Kafka client: {0}")]
    Kafka(#[from] KafkaError),
    #[error("checkout.finished consumer: {0}")]
    Consumer(#[from] ConsumerError),
    #[error("a task panicked: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A built, not yet running, blazing_sun.
pub struct Application {
    config: Config,
    listener: TcpListener,
    http_addr: SocketAddr,
    store: Store,
    producer: FutureProducer,
    dlq_producer: FutureProducer,
    consumer: LagConsumer,
    metrics: Arc<Metrics>,
    crash_after_db_commit: bool,
}

impl Application {
    /// Connects the database and runs the migrations, binds the HTTP
    /// listener, and creates the Kafka clients (which connect lazily: a
    /// broker that is down makes `/healthz` and `POST` answer 503, not this fail).
    ///
    /// # Errors
    /// When the database, the listener or a Kafka client cannot be set up.
    pub async fn build(config: Config) -> Result<Self, Error> {
        let store = Store::connect(config.database_url.expose()).await?;
        let (listener, http_addr) = checkout_contract::http_server::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let producer = config
            .kafka
            .producer_config()
            .set(
                "message.timeout.ms",
                config.produce_timeout.as_millis().to_string(),
            )
            .create()?;
        let dlq_producer = config.kafka.producer()?;
        let metrics = Arc::new(Metrics::default());
        let mut consumer_config = config
            .kafka
            .member_config(&config.consumer_group, config.group_instance_id.as_ref());
        consumer_config
            .set(
                "session.timeout.ms",
                config.session_timeout.as_millis().to_string(),
            )
            .set(
                "heartbeat.interval.ms",
                (config.session_timeout.as_millis() / 5)
                    .min(1000)
                    .to_string(),
            );
        // Its lag goes to `kafka_consumer_lag_messages`.
        let consumer = metrics.consumer_lag().stream_consumer(consumer_config)?;
        tracing::info!(%http_addr, database = store.backend(), group = %config.consumer_group, "blazing_sun built");
        Ok(Self {
            config,
            listener,
            http_addr,
            store,
            producer,
            dlq_producer,
            consumer,
            metrics,
            crash_after_db_commit: false,
        })
    }

    /// Test hook, for tests only (no configuration turns it on): the
    /// consumer stops right after its first database commit, before storing
    /// the offsets, as a crash at the worst moment would, and
    /// [`Self::run_until_stopped`] returns [`ConsumerError::CrashHook`].
    #[doc(hidden)]
    #[must_use]
    pub fn crash_after_db_commit(mut self) -> Self {
        self.crash_after_db_commit = true;
        self
    }

    /// The bound HTTP address (the real port when the config said 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// The store, for the launcher and tests.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The counters `/metrics` shows.
    pub fn metrics(&self) -> Arc<Metrics> {
        Arc::clone(&self.metrics)
    }

    /// Serves HTTP and consumes `checkout.finished` until `shutdown`
    /// resolves; then finishes the batch in hand, drains connections,
    /// flushes the producers and closes the database.
    ///
    /// # Errors
    /// When the consumer stops on its own (it cannot subscribe; the crash
    /// test hook), after stopping everything else.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), Error> {
        let Self {
            config,
            listener,
            store,
            producer,
            dlq_producer,
            consumer,
            metrics,
            crash_after_db_commit,
            ..
        } = self;
        let stop = Stop::new();

        let state = http::AppState::new(http::Inner {
            store: store.clone(),
            producer: producer.clone(),
            topics: config.topics.clone(),
            verifier: {
                let verifier = TokenVerifier::new(&config.token_settings());
                let warm = verifier.clone();
                // Fetch an identity provider's keys now rather than on the
                // first request; a failure is logged, requests fetch again.
                tokio::spawn(async move { warm.warm_up().await });
                verifier
            },
            metrics: Arc::clone(&metrics),
            redirect_hosts: config.redirect_hosts.clone(),
            public_url: config.public_url.clone(),
            default_success_url: config.default_success_url(),
            default_cancel_url: config.default_cancel_url(),
            gateway_url: config.gateway_url.clone(),
        });
        let router = http::router(state, config.http);
        let mut server = tokio::spawn(http::serve(listener, router, config.http, stop.stopping()));

        let handler = CheckoutFinished::new(
            store.clone(),
            dlq_producer.clone(),
            &config.topics.finished_dlq,
            metrics,
        );
        let settings = consumer::Settings {
            batch_size: config.batch_size,
            batch_linger: config.batch_linger,
            create_topics: config.create_topics.then(|| config.kafka.clone()),
            crash_after_db_commit,
        };
        let mut consuming = tokio::spawn(consumer::run(
            consumer,
            handler,
            config.topics.clone(),
            settings,
            stop.stopping(),
        ));

        let result = tokio::select! {
            () = shutdown => Ok(()),
            ended = &mut consuming => {
                stop.stop();
                let _ = (&mut server).await;
                return finish(store, [producer, dlq_producer], consumed(ended)).await;
            }
            ended = &mut server => ended.map_err(Error::from),
        };
        tracing::info!("shutting down");
        stop.stop();
        let consumed = drain("the consumer", CONSUMER_GRACE, &mut consuming)
            .await
            .map_or(Ok(()), consumed);
        if !server.is_finished() {
            let _ = server.await;
        }
        finish(store, [producer, dlq_producer], result.and(consumed)).await
    }
}

/// The consumer task's result as the application's.
fn consumed(ended: Result<Result<(), ConsumerError>, tokio::task::JoinError>) -> Result<(), Error> {
    ended?.map_err(Error::from)
}

async fn finish(
    store: Store,
    producers: [FutureProducer; 2],
    result: Result<(), Error>,
) -> Result<(), Error> {
    // Flushing and dropping wait for the broker: off the runtime, and never
    // longer than FLUSH_TIMEOUT plus CLOSE_TIMEOUT, whatever the broker does.
    let close = move || {
        let until = std::time::Instant::now() + FLUSH_TIMEOUT;
        for producer in &producers {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if let Err(e) = producer.flush(left) {
                tracing::warn!(error = %e, "producer not flushed");
            }
        }
        drop(producers);
    };
    checkout_contract::shutdown::close_within(
        "producers",
        FLUSH_TIMEOUT + checkout_contract::shutdown::CLOSE_TIMEOUT,
        close,
    )
    .await;
    store.close().await;
    tracing::info!("stopped");
    result
}
