//! Spawning a real gateway on port 0 against the real broker, tonic clients
//! with bearer tokens, and reading / producing the topics as the checkout
//! worker would.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use checkout_contract::auth::Role;
use checkout_contract::kafka::{KafkaConfig, send_json};
use checkout_contract::pb::checkout_gateway_client::CheckoutGatewayClient;
use checkout_contract::secret::Secret;
use checkout_contract::topics::Topics;
use checkout_contract::{CheckoutFinishedEvent, CheckoutStatus, pb};
use gateway::{AuthMode, Config, Gateway};
use rdkafka::producer::FutureProducer;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub use testkit::tokens::{JWT_SECRET, token};
pub use testkit::topic::Record;

/// A running gateway; stopped (gracefully) when dropped.
pub struct TestGateway {
    pub grpc: SocketAddr,
    pub admin: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<Result<(), gateway::Error>>>,
}

impl TestGateway {
    /// Starts a gateway on `kafka` / `topics` with `tweak` applied to the
    /// default test config, and waits until it reports SERVING.
    pub async fn start(
        kafka: &KafkaConfig,
        topics: &Topics,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let gw = Self::start_unready(kafka, topics, tweak).await;
        gw.wait_for_health(ServingStatus::Serving).await;
        gw
    }

    /// As [`TestGateway::start`], without waiting for SERVING.
    pub async fn start_unready(
        kafka: &KafkaConfig,
        topics: &Topics,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        testkit::init_tracing();
        let mut config = Config::new(
            kafka.clone(),
            topics.clone(),
            AuthMode::Jwt(Secret::new(JWT_SECRET)),
        );
        config.health_probe_interval = Duration::from_millis(100);
        tweak(&mut config);
        let gateway = Gateway::build(config).await.expect("gateway builds");
        let (grpc, admin) = (gateway.grpc_addr(), gateway.admin_addr());
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self {
            grpc,
            admin,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// Asks the gateway to stop and waits until it has.
    pub async fn stop(mut self) -> Result<(), gateway::Error> {
        drop(self.stop.take());
        self.task.take().unwrap().await.expect("gateway task")
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .unwrap()
            .connect()
            .await
            .expect("connect to gateway")
    }

    /// A client that sends `token` with every call.
    pub async fn client(&self, token: &str) -> Client {
        Client {
            inner: CheckoutGatewayClient::new(self.channel().await),
            token: format!("Bearer {token}"),
        }
    }

    /// A client acting as the internal service `billing`.
    pub async fn service_client(&self) -> Client {
        self.client(&token("billing", Role::Service)).await
    }

    pub async fn health(&self) -> Option<ServingStatus> {
        let mut client = HealthClient::new(self.channel().await);
        let status = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .ok()?
            .into_inner()
            .status;
        ServingStatus::try_from(status).ok()
    }

    pub async fn wait_for_health(&self, want: ServingStatus) {
        testkit::eventually(
            &format!("gateway health {want:?}"),
            Duration::from_secs(15),
            || async { (self.health().await == Some(want)).then_some(()) },
        )
        .await;
    }
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        drop(self.stop.take());
    }
}

/// A tonic client that adds its bearer token to every request.
#[derive(Clone)]
pub struct Client {
    pub inner: CheckoutGatewayClient<Channel>,
    token: String,
}

impl Client {
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut r = tonic::Request::new(message);
        r.metadata_mut()
            .insert("authorization", self.token.parse().unwrap());
        r
    }

    pub async fn start(
        &mut self,
        message: pb::StartCheckoutRequest,
    ) -> Result<pb::StartCheckoutResponse, tonic::Status> {
        let r = self.request(message);
        self.inner
            .start_checkout(r)
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn watch(
        &mut self,
        request_id: &str,
        resume_after: Option<pb::Cursor>,
    ) -> Result<tonic::Streaming<pb::CheckoutUpdate>, tonic::Status> {
        let r = self.request(pb::WatchCheckoutRequest {
            request_id: request_id.to_owned(),
            resume_after,
        });
        self.inner
            .watch_checkout(r)
            .await
            .map(tonic::Response::into_inner)
    }

    pub async fn get(&mut self, request_id: &str) -> Result<pb::CheckoutUpdate, tonic::Status> {
        let r = self.request(pb::GetCheckoutRequest {
            request_id: request_id.to_owned(),
        });
        self.inner
            .get_checkout(r)
            .await
            .map(tonic::Response::into_inner)
    }
}

/// A valid StartCheckout request for `user_id`.
pub fn start_request(user_id: i64, key: Option<&str>) -> pb::StartCheckoutRequest {
    pb::StartCheckoutRequest {
        user_id,
        amount_cents: 500,
        currency: "eur".into(),
        purpose: "balance_topup".into(),
        success_url: "https://example.com/balance?status=success".into(),
        cancel_url: "https://example.com/balance?status=cancel".into(),
        idempotency_key: key.map(str::to_owned),
        wait_for_session: None,
    }
}

/// The broker for this test and fresh topics on it.
pub async fn broker_and_topics() -> (testkit::broker::Broker, KafkaConfig, Topics) {
    let broker = testkit::broker::broker().await;
    let kafka = broker.config(&testkit::unique("gateway-test"));
    let topics = testkit::broker::fresh_topics(&kafka).await;
    (broker, kafka, topics)
}

/// A producer acting as the checkout worker. Not idempotent, like the
/// gateway's own: Tansu 0.6's storage task panics in its idempotent-produce
/// check under load ("more or less than one row", lite.rs:503) and the broker
/// then fails every request until restarted, for every test sharing it.
pub fn worker_producer(kafka: &KafkaConfig) -> FutureProducer {
    kafka
        .producer_config()
        .set("enable.idempotence", "false")
        .create()
        .expect("producer")
}

/// What the checkout worker would publish for `request_id` of `user_id` (500 eur).
pub fn finished(request_id: &str, user_id: i64, status: CheckoutStatus) -> CheckoutFinishedEvent {
    testkit::events::finished(request_id, user_id, 500, status)
}

/// Publishes `status` for `request_id` on `checkout.finished`, as the worker would.
pub async fn publish(
    producer: &FutureProducer,
    topics: &Topics,
    request_id: &str,
    user_id: i64,
    status: CheckoutStatus,
) -> pb::Cursor {
    let d = send_json(
        producer,
        &topics.finished,
        request_id,
        &finished(request_id, user_id, status),
        &[],
    )
    .await
    .expect("finished event acknowledged");
    pb::Cursor {
        partition: d.partition,
        offset: d.offset,
    }
}

/// Every message on `topic` right now (the gateway answers only after the
/// broker acknowledged, so what it produced is there).
pub async fn read_all(kafka: &KafkaConfig, topic: &str) -> Vec<Record> {
    testkit::topic::read_records(kafka, topic, Duration::from_secs(10)).await
}

/// Starts `request` again on `client` and checks that it is recognised as
/// the checkout `id`: the same request_id, `status`, and still exactly one
/// event on `checkout.requests` (`why` names the retry).
pub async fn assert_retry_recognised(
    client: &mut Client,
    request: pb::StartCheckoutRequest,
    (id, status): (&str, pb::CheckoutStatus),
    (kafka, topics): (&KafkaConfig, &Topics),
    why: &str,
) {
    let retry = client.start(request).await.unwrap();
    assert_eq!(retry.request_id, id, "{why}");
    assert_eq!(retry.status(), status, "{why}");
    assert_eq!(
        read_all(kafka, &topics.requests).await.len(),
        1,
        "no second event {why}"
    );
}

/// Runs `f` and fails if it takes longer than `limit`.
pub async fn within<T>(limit: Duration, what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, f)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {limit:?}"))
}

/// Reads the rest of `stream` and returns its updates and how it ended.
pub async fn drain(
    stream: &mut tonic::Streaming<pb::CheckoutUpdate>,
) -> (Vec<pb::CheckoutUpdate>, Result<(), tonic::Status>) {
    let mut updates = Vec::new();
    loop {
        match within(Duration::from_secs(15), "stream", stream.message()).await {
            Ok(Some(u)) => updates.push(u),
            Ok(None) => return (updates, Ok(())),
            Err(s) => return (updates, Err(s)),
        }
    }
}

/// The status of each update.
pub fn statuses(updates: &[pb::CheckoutUpdate]) -> Vec<pb::CheckoutStatus> {
    updates
        .iter()
        .map(|u| u.event.as_ref().unwrap().status())
        .collect()
}
