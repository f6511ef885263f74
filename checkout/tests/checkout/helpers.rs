//! `spawn_app`: the real checkout service (worker + webhook) on port 0, a
//! real Stripe emulator on port 0 whose webhooks point at it, its own topics
//! on a real broker, and collectors tailing `checkout.finished` and the DLQ.

use std::time::Duration;

use checkout::Config;
use checkout_contract::kafka::{KafkaConfig, send_json};
use checkout_contract::secret::Secret;
use checkout_contract::topics::{PARTITIONS, Topics};
use checkout_contract::{CheckoutFinishedEvent, CheckoutRequestEvent, CheckoutStatus};
use rdkafka::consumer::Consumer;
use rdkafka::producer::FutureProducer;
use rdkafka::{Offset, TopicPartitionList};
use stripe_emulator::{DeliveryPolicy, Emulator, Faults};
use testkit::broker::BrokerKind;
use testkit::topic::TopicRecorder;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const API_KEY: &str = "sk_test_checkout_tests";
pub const WEBHOOK_SECRET: &str = "whsec_checkout_tests";
pub const WAIT: Duration = Duration::from_secs(20);

/// Knobs a test may turn; [`Options::default`] is a fast, fault-free set-up.
pub struct Options {
    pub faults: Faults,
    /// When set, the emulator accepts only this key (the service uses [`API_KEY`]).
    pub emulator_api_key: Option<String>,
    pub max_in_flight: usize,
    pub rate_limit: f64,
    pub max_attempts: u32,
    pub stripe_timeout: Duration,
    /// Secrets the service accepts; the emulator signs with [`WEBHOOK_SECRET`].
    pub webhook_secrets: Vec<String>,
    pub delivery: DeliveryPolicy,
    /// Another broker than the shared one (for tests that kill it).
    pub bootstrap: Option<String>,
    /// How long a publish may wait for the broker (the webhook answers 503 after it).
    pub publish_timeout: Duration,
    /// Overrides `KAFKA_ENABLE_IDEMPOTENCE` for the service's and the test's producers.
    pub enable_idempotence: Option<bool>,
    /// The webhook's header and body read timeouts.
    pub webhook_client_timeout: Duration,
    /// Reconciliation with Stripe (production defaults: minutes, so off in most tests).
    pub reconcile: checkout::config::ReconcileConfig,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            faults: Faults::default(),
            emulator_api_key: None,
            max_in_flight: 64,
            rate_limit: 1000.0,
            max_attempts: 4,
            stripe_timeout: Duration::from_secs(5),
            webhook_secrets: vec![WEBHOOK_SECRET.to_owned()],
            delivery: DeliveryPolicy {
                max_attempts: 40,
                retry_base: Duration::from_millis(50),
                retry_max: Duration::from_millis(500),
                attempt_timeout: Duration::from_secs(10),
                out_of_order_hold: Duration::from_millis(300),
            },
            bootstrap: None,
            publish_timeout: Duration::from_secs(5),
            enable_idempotence: None,
            webhook_client_timeout: checkout::config::DEFAULT_CLIENT_TIMEOUT,
            reconcile: checkout::config::ReconcileConfig::default(),
        }
    }
}

/// The service under test and everything around it.
pub struct TestApp {
    pub bootstrap: String,
    /// The service's consumer group on `checkout.requests`.
    pub group: String,
    pub topics: Topics,
    pub producer: FutureProducer,
    pub emulator: stripe_emulator::Handle,
    pub api_base: String,
    pub webhook_url: String,
    pub finished: TopicRecorder,
    pub dlq: TopicRecorder,
    pub http: reqwest::Client,
    config: Config,
    stop: Option<oneshot::Sender<()>>,
    app: Option<JoinHandle<Result<(), checkout::Error>>>,
    emulator_stop: Option<oneshot::Sender<()>>,
    // Last: dropped after everything that talks to it.
    _broker: Option<testkit::broker::Broker>,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    testkit::init_tracing();
    // The shared broker, or (without KAFKA_BOOTSTRAP_SERVERS) one of this test's own, kept alive by the TestApp.
    let broker = match &options.bootstrap {
        Some(_) => None,
        None => Some(testkit::broker::broker().await),
    };
    let mut kafka = match (&options.bootstrap, &broker) {
        (Some(b), _) => BrokerKind::current().client_config(b.clone(), "checkout-test"),
        (None, Some(broker)) => broker.config("checkout-test"),
        (None, None) => unreachable!(),
    };
    if let Some(on) = options.enable_idempotence {
        kafka.enable_idempotence = on;
    }
    let topics = testkit::broker::fresh_topics(&kafka).await;

    let mut emulator_config = stripe_emulator::Config::default()
        .with_faults(options.faults)
        .with_delivery(options.delivery);
    emulator_config.api_key = options.emulator_api_key.map(Secret::new);
    let emulator = Emulator::build(emulator_config)
        .await
        .expect("emulator starts");
    let handle = emulator.handle();
    let api_base = emulator.api_base();
    let (emulator_stop, emulator_stopped) = oneshot::channel::<()>();
    tokio::spawn(emulator.run_until_stopped(async move {
        let _ = emulator_stopped.await;
    }));

    let mut config = Config::new(
        kafka.bootstrap_servers.clone(),
        api_base.clone(),
        Secret::new(API_KEY),
        Secret::new(WEBHOOK_SECRET),
    );
    config.kafka = KafkaConfig {
        client_id: testkit::unique("checkout"),
        ..kafka.clone()
    };
    config.topics = topics.clone();
    let group = testkit::unique("checkout-service");
    config.consumer_group = group.clone();
    config.max_in_flight = options.max_in_flight;
    config.stripe.rate_limit = options.rate_limit;
    config.stripe.timeout = options.stripe_timeout;
    config.stripe.retry.max_attempts = options.max_attempts;
    config.stripe.retry.base = Duration::from_millis(20);
    config.stripe.retry.max = Duration::from_millis(200);
    config.webhook.secrets = options
        .webhook_secrets
        .into_iter()
        .map(Secret::new)
        .collect();
    config.publish_timeout = options.publish_timeout;
    config.webhook.header_read_timeout = options.webhook_client_timeout;
    config.webhook.body_read_timeout = options.webhook_client_timeout;
    config.shutdown_grace = Duration::from_secs(5);
    config.reconcile = options.reconcile;

    let (webhook_url, stop, app) = start_service(config.clone(), &handle).await;

    TestApp {
        config,
        bootstrap: kafka.bootstrap_servers.clone(),
        group,
        producer: kafka.producer().expect("producer"),
        finished: TopicRecorder::start(&kafka, &topics.finished),
        dlq: TopicRecorder::start(&kafka, &topics.requests_dlq),
        topics,
        emulator: handle,
        api_base,
        webhook_url,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
        stop: Some(stop),
        app: Some(app),
        emulator_stop: Some(emulator_stop),
        _broker: broker,
    }
}

type Running = (
    String,
    oneshot::Sender<()>,
    JoinHandle<Result<(), checkout::Error>>,
);

/// Builds and spawns the service, and points the emulator's webhooks at it.
async fn start_service(config: Config, emulator: &stripe_emulator::Handle) -> Running {
    let app = checkout::Application::build(config)
        .await
        .expect("checkout service builds");
    let webhook_url = format!("http://{}/webhooks/stripe", app.webhook_addr());
    emulator.set_webhook(Some(webhook_url.clone()), Some(WEBHOOK_SECRET.to_owned()));
    let (stop, stopped) = oneshot::channel::<()>();
    let app = tokio::spawn(app.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    (webhook_url, stop, app)
}

/// The seed's request of user 123 with a fresh request_id, made now.
pub fn request(amount_cents: i64) -> CheckoutRequestEvent {
    testkit::events::request(&testkit::events::new_request_id(), 123, amount_cents)
}

impl TestApp {
    pub async fn send(&self, request: &CheckoutRequestEvent) {
        send_json(
            &self.producer,
            &self.topics.requests,
            &request.request_id,
            request,
            &[],
        )
        .await
        .expect("request produced");
    }

    pub async fn send_raw(&self, partition: i32, key: &str, payload: &[u8]) {
        let topic = &self.topics.requests;
        testkit::topic::send_raw(&self.producer, topic, Some(partition), key, payload, &[]).await;
    }

    /// Every `checkout.finished` event published so far.
    pub fn finished_events(&self) -> Vec<CheckoutFinishedEvent> {
        self.finished
            .records()
            .iter()
            .map(|r| r.finished_event())
            .collect()
    }

    pub fn events_for(&self, request_id: &str) -> Vec<CheckoutFinishedEvent> {
        self.finished_events()
            .into_iter()
            .filter(|e| e.request_id == request_id)
            .collect()
    }

    /// Waits for an event of `request_id` with `status`.
    pub async fn wait_for(
        &self,
        request_id: &str,
        status: CheckoutStatus,
    ) -> CheckoutFinishedEvent {
        testkit::eventually(&format!("{status} for {request_id}"), WAIT, || async {
            self.events_for(request_id)
                .into_iter()
                .find(|e| e.status == status)
        })
        .await
    }

    /// The number of sessions the emulator created under our idempotency key.
    pub fn sessions_created_for(&self, request_id: &str) -> u64 {
        let report = self.emulator.sessions();
        report
            .created_per_idempotency_key
            .get(&format!("checkout:{request_id}"))
            .copied()
            .unwrap_or(0)
    }

    /// The offsets the service's group committed on `checkout.requests`, summed over partitions.
    pub async fn committed_total(&self) -> i64 {
        let config = KafkaConfig::new(
            self.bootstrap.clone(),
            testkit::unique("checkout-test-offsets"),
        );
        let consumer: rdkafka::consumer::BaseConsumer =
            config.consumer_config(&self.group).create().unwrap();
        let mut list = TopicPartitionList::new();
        for p in 0..PARTITIONS {
            list.add_partition(&self.topics.requests, p);
        }
        let committed = tokio::task::spawn_blocking(move || {
            consumer.committed_offsets(list, Duration::from_secs(5))
        })
        .await
        .unwrap()
        .expect("committed offsets");
        committed
            .elements()
            .iter()
            .map(|e| match e.offset() {
                Offset::Offset(n) => n,
                _ => 0,
            })
            .sum()
    }

    /// Stops the service and returns what its run returned.
    pub async fn stop(&mut self) -> Result<(), checkout::Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.finished_run(Duration::from_secs(10)).await
    }

    /// Kills the service mid-flight: no grace period, nothing finished.
    pub async fn crash(&mut self) {
        let app = self.app.take().expect("the service runs");
        app.abort();
        let _ = app.await;
        self.stop = None;
    }

    /// Starts a new instance of the service: same topics, same consumer group.
    pub async fn restart(&mut self) {
        assert!(
            self.app.is_none(),
            "stop or crash the running instance first"
        );
        let (webhook_url, stop, app) = start_service(self.config.clone(), &self.emulator).await;
        self.webhook_url = webhook_url;
        self.stop = Some(stop);
        self.app = Some(app);
    }

    /// Waits for the service's run to end on its own.
    pub async fn finished_run(&mut self, timeout: Duration) -> Result<(), checkout::Error> {
        let app = self.app.take().expect("the service runs");
        tokio::time::timeout(timeout, app)
            .await
            .expect("the service stops in time")
            .expect("no panic")
    }
}

/// The value of the metric line starting with `name` in a `/metrics` text.
pub fn metric<T: std::str::FromStr>(text: &str, name: &str) -> T {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from:\n{text}"))
}

/// The `/metrics` text served beside the webhook at `webhook_url`.
async fn metrics_at(http: &reqwest::Client, webhook_url: &str) -> String {
    http.get(webhook_url.replace("/webhooks/stripe", "/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

impl TestApp {
    /// The service's `/metrics` text.
    pub async fn metrics(&self) -> String {
        metrics_at(&self.http, &self.webhook_url).await
    }

    /// Another replica of the service: same topics, same consumer group,
    /// same Stripe account; its own webhook port (the emulator's webhooks
    /// still go to the first). Stopped when dropped.
    pub async fn start_replica(&self) -> Replica {
        let mut config = self.config.clone();
        config.kafka.client_id = testkit::unique("checkout-replica");
        let app = checkout::Application::build(config)
            .await
            .expect("replica builds");
        let webhook_url = format!("http://{}/webhooks/stripe", app.webhook_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Replica {
            webhook_url,
            http: self.http.clone(),
            _stop: stop,
        }
    }
}

/// A replica started by [`TestApp::start_replica`].
pub struct Replica {
    pub webhook_url: String,
    http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

impl Replica {
    pub async fn metrics(&self) -> String {
        metrics_at(&self.http, &self.webhook_url).await
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(stop) = self.emulator_stop.take() {
            let _ = stop.send(());
        }
    }
}
