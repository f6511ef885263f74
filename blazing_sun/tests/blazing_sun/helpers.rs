//! Test support: a database per backend, the app on port 0 with its own
//! topics and consumer group, event builders, and reading topics back.

use std::time::Duration;

use blazing_sun::{Application, Config, Error, Metrics, Store};
use checkout_contract::CheckoutFinishedEvent;
use checkout_contract::kafka::{KafkaConfig, send_json};
use checkout_contract::secret::Secret;
use checkout_contract::topics::Topics;
use rdkafka::producer::FutureProducer;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use testkit::events::{finished, new_request_id, new_user, success};
pub use testkit::tokens::{JWT_SECRET, user_token as token};
use testkit::topic::Record;

/// How long an end-to-end condition may take (group join included).
pub const E2E: Duration = Duration::from_secs(15);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A database of one test; an SQLite file lives as long as this.
pub struct TestDb {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!(
                    "sqlite://{}",
                    dir.path().join("data/blazing_sun.db").display()
                );
                Self {
                    url,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => Self {
                url: testkit::postgres::fresh_database().await,
                _dir: None,
            },
        }
    }

    /// A database at `url` that something else owns (e.g. a test's own
    /// [`testkit::postgres::Cluster`]).
    pub fn at(url: String) -> Self {
        Self { url, _dir: None }
    }

    pub async fn store(&self) -> Store {
        Store::connect(&self.url)
            .await
            .expect("store connects and migrates")
    }
}

/// The store of a fresh database for `backend`, with the database kept alive.
pub async fn store(backend: Backend) -> (Store, TestDb) {
    testkit::init_tracing();
    let db = TestDb::new(backend).await;
    (db.store().await, db)
}

/// One test's world: broker, topics, consumer group, database.
pub struct World {
    /// Kept alive: a broker of the test's own stops when dropped.
    _broker: testkit::broker::Broker,
    pub kafka: KafkaConfig,
    pub topics: Topics,
    pub group: String,
    pub db: TestDb,
    pub producer: FutureProducer,
}

impl World {
    pub async fn new(backend: Backend) -> Self {
        Self::with_db(TestDb::new(backend).await).await
    }

    /// A world on the database `db`.
    pub async fn with_db(db: TestDb) -> Self {
        testkit::init_tracing();
        let broker = testkit::broker::broker().await;
        let kafka = broker.config(&testkit::unique("blazing-sun-test"));
        let topics = testkit::broker::fresh_topics(&kafka).await;
        let producer = kafka.producer().expect("test producer");
        Self {
            _broker: broker,
            kafka,
            topics,
            group: testkit::unique("blazing-sun-main"),
            db,
            producer,
        }
    }

    /// The app's config for this world: port 0, its topics, group and database.
    pub fn config(&self) -> Config {
        let mut config = Config::new(&self.db.url, self.kafka.clone(), Secret::new(JWT_SECRET));
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.topics = self.topics.clone();
        config.consumer_group = self.group.clone();
        config.create_topics = false;
        config
    }

    pub async fn spawn(&self) -> TestApp {
        TestApp::spawn(self.config()).await
    }

    /// Produces `event` to checkout.finished, keyed by its request_id.
    pub async fn send_finished(&self, event: &CheckoutFinishedEvent) {
        send_json(
            &self.producer,
            &self.topics.finished,
            &event.request_id,
            event,
            &[],
        )
        .await
        .expect("broker acknowledges the event");
    }

    /// Produces a raw payload to checkout.finished on `partition`, keyed by `key`.
    pub async fn send_raw_to(&self, partition: i32, key: &str, payload: &[u8]) {
        let topic = &self.topics.finished;
        testkit::topic::send_raw(&self.producer, topic, Some(partition), key, payload, &[]).await;
    }

    /// Produces `event` to checkout.finished on `partition`.
    pub async fn send_finished_to(&self, partition: i32, event: &CheckoutFinishedEvent) {
        self.send_raw_to(
            partition,
            &event.request_id,
            &serde_json::to_vec(event).unwrap(),
        )
        .await;
    }
}

/// A running app.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub store: Store,
    pub metrics: Arc<Metrics>,
    stop: Option<oneshot::Sender<()>>,
    pub task: JoinHandle<Result<(), Error>>,
}

impl TestApp {
    pub async fn spawn(config: Config) -> Self {
        let app = Application::build(config)
            .await
            .expect("application builds");
        Self::start(app)
    }

    /// Runs an application already built (e.g. with a test hook set).
    pub fn start(app: Application) -> Self {
        testkit::init_tracing();
        let (stop, stopped) = oneshot::channel::<()>();
        let (addr, store, metrics) = (app.http_addr(), app.store().clone(), app.metrics());
        let task = tokio::spawn(app.run_until_stopped(async move {
            let _ = stopped.await;
        }));
        Self {
            addr,
            store,
            metrics,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Asks the app to stop and waits for it.
    pub async fn stop(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.task)
            .await
            .expect("app stops in time")
            .expect("no panic")
    }

    /// Waits until exactly `count` messages had the outcome `label` (and fails
    /// if more ever do).
    pub async fn wait_outcomes(&self, label: &str, count: u64) {
        testkit::eventually(&format!("{count} {label} outcomes"), E2E, || async {
            let seen = self.metrics.outcome_count(label);
            assert!(seen <= count, "{seen} {label} outcomes, expected {count}");
            (seen == count).then_some(())
        })
        .await;
    }

    /// Waits until the balance of `user` in `currency` is `cents`.
    pub async fn wait_balance(&self, user: i64, currency: &str, cents: i64) {
        let store = self.store.clone();
        let currency = currency.to_owned();
        testkit::eventually(
            &format!("balance of user {user} to be {cents} {currency}"),
            E2E,
            || {
                let (store, currency) = (store.clone(), currency.clone());
                async move { (store.balance(user, &currency).await.ok()? == cents).then_some(()) }
            },
        )
        .await;
    }
}

/// The first message on `topic` whose key is `key`, reading every partition from the start.
pub async fn read_back(kafka: &KafkaConfig, topic: &str, key: &str) -> Record {
    testkit::topic::first_with_key(kafka, topic, key, E2E).await
}
