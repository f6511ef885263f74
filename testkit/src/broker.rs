//! A real Kafka-protocol broker for tests.
//!
//! [`broker()`] returns the shared broker named by `KAFKA_BOOTSTRAP_SERVERS`
//! (what `scripts/test.sh` starts) or, when that is unset, a broker process
//! of the test's own. [`TestBroker::start`] always starts an own one, for
//! tests that kill it.
//!
//! Which broker: [`BrokerKind::current`], from `TEST_BROKER` (`nisshi`, the
//! default, or `tansu`). Nisshi 0.8.1 is Tansu renamed; it survives an
//! idempotent producer's epoch bump, which panics Tansu 0.6.0, so tests run
//! with idempotence on (production's setting) unless the broker is Tansu
//! ([`BrokerKind::supports_idempotence`]). Its binary is found at
//! `BROKER_BIN`, then in the test script's tool cache, then on `PATH`; when
//! it is nowhere the test fails with a message saying how to install it.

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use checkout_contract::kafka::{KafkaConfig, ensure_topics, partition_count};
use checkout_contract::topics::{PARTITIONS, Topics};
use rdkafka::message::OwnedMessage;

/// The broker a test talks to.
pub enum Broker {
    /// Started by the test script (`KAFKA_BOOTSTRAP_SERVERS`); shared by every test.
    External(String),
    /// Started by this test; stopped when dropped.
    Owned(TestBroker),
}

impl Broker {
    pub fn bootstrap(&self) -> String {
        match self {
            Broker::External(b) => b.clone(),
            Broker::Owned(b) => b.bootstrap(),
        }
    }

    /// Client settings for this broker (idempotence on unless it cannot take it).
    pub fn config(&self, client_id: &str) -> KafkaConfig {
        match self {
            Broker::External(b) => BrokerKind::current().client_config(b.clone(), client_id),
            Broker::Owned(b) => b.config(client_id),
        }
    }
}

/// The shared broker from `KAFKA_BOOTSTRAP_SERVERS`, or a fresh broker of this test's own.
pub async fn broker() -> Broker {
    match std::env::var("KAFKA_BOOTSTRAP_SERVERS") {
        Ok(b) if !b.is_empty() => Broker::External(b),
        _ => Broker::Owned(TestBroker::start().await),
    }
}

/// How many messages `topic` holds (high minus low watermark, over its
/// seed's partitions): 0 for an empty dead-letter topic.
///
/// # Panics
/// When the broker does not answer.
pub async fn message_count(config: &KafkaConfig, topic: &str) -> i64 {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    let (config, topic) = (config.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.tail_config().create().expect("consumer");
        (0..PARTITIONS)
            .map(|p| {
                let (low, high) = consumer
                    .fetch_watermarks(&topic, p, Duration::from_secs(5))
                    .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"));
                high - low
            })
            .sum()
    })
    .await
    .expect("watermark task")
}

/// Every record on `topic` now (its seed's partitions, up to the high
/// watermarks at the call), in partition then offset order.
///
/// # Panics
/// When the broker does not answer or the records are not all read `within`.
pub async fn read_all(config: &KafkaConfig, topic: &str, within: Duration) -> Vec<OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer as _};
    use rdkafka::message::Message as _;
    use rdkafka::{Offset, TopicPartitionList};
    let (config, topic) = (config.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = config.tail_config().create().expect("consumer");
        let mut tpl = TopicPartitionList::new();
        let mut expected = 0;
        for p in 0..PARTITIONS {
            let (low, high) = consumer
                .fetch_watermarks(&topic, p, Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("watermarks of {topic}/{p}: {e}"));
            expected += usize::try_from(high - low).expect("high >= low");
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + within;
        while out.len() < expected {
            assert!(
                std::time::Instant::now() < deadline,
                "read {} of {expected} records on {topic} within {within:?}",
                out.len()
            );
            if let Some(m) = consumer.poll(Duration::from_millis(100)) {
                out.push(m.expect("consumer error").detach());
            }
        }
        out.sort_by_key(|m| (m.partition(), m.offset()));
        out
    })
    .await
    .expect("read task")
}

/// A record's headers as (key, value bytes), in order.
pub fn headers_of(message: &OwnedMessage) -> Vec<(String, Vec<u8>)> {
    use rdkafka::message::{Headers as _, Message as _};
    message
        .headers()
        .map(|h| {
            h.iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default()
}

/// Topic names no other test uses (the seed's names plus a random suffix),
/// created with the seed's 3 partitions.
///
/// # Panics
/// When the broker cannot create them.
pub async fn fresh_topics(config: &KafkaConfig) -> Topics {
    let topics = Topics::with_suffix(&format!(".{}", uuid::Uuid::new_v4().simple()));
    ensure_topics(config, &topics.all(), PARTITIONS)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "cannot create test topics on {}: {e}",
                config.bootstrap_servers
            )
        });
    topics
}

/// The Kafka-protocol broker the tests run on: both take the same command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BrokerKind {
    /// Nisshi 0.8.1 (Tansu renamed): the default.
    #[default]
    Nisshi,
    /// Tansu 0.6.0, for comparisons (`TEST_BROKER=tansu`).
    Tansu,
}

impl BrokerKind {
    /// `TEST_BROKER` (`nisshi` or `tansu`; unset: nisshi).
    ///
    /// # Panics
    /// On any other value.
    pub fn current() -> Self {
        match std::env::var("TEST_BROKER").as_deref() {
            Err(_) | Ok("" | "nisshi") => Self::Nisshi,
            Ok("tansu") => Self::Tansu,
            Ok(other) => panic!("TEST_BROKER={other:?}: expected nisshi or tansu"),
        }
    }

    /// The executable's name.
    pub fn binary_name(self) -> &'static str {
        match self {
            Self::Nisshi => "nisshi",
            Self::Tansu => "tansu",
        }
    }

    /// Name and pinned version, for reports.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Nisshi => "Nisshi 0.8.1",
            Self::Tansu => "Tansu 0.6.0",
        }
    }

    /// Can producers be idempotent (production's default)? Tansu 0.6.0
    /// panics when librdkafka bumps an idempotent producer's epoch (after
    /// a delivery timeout) and then serves nothing.
    pub fn supports_idempotence(self) -> bool {
        self == Self::Nisshi
    }

    /// Where the binary is: `BROKER_BIN` (for the kind `TEST_BROKER`
    /// names), the tool cache, `PATH`.
    ///
    /// # Panics
    /// When it is not installed.
    pub fn binary(self) -> PathBuf {
        if let Some(p) = std::env::var_os("BROKER_BIN").filter(|_| self == Self::current()) {
            return PathBuf::from(p);
        }
        let name = self.binary_name();
        let cache = std::env::var_os("BLAZING_SUN_TOOLS")
            .map(PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/blazing-sun-tools"))
            });
        if let Some(p) = cache
            .map(|c| c.join("bin").join(name))
            .filter(|p| p.is_file())
        {
            return p;
        }
        if let Some(p) = std::env::var_os("PATH")
            .into_iter()
            .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
            .map(|d| d.join(name))
            .find(|p| p.is_file())
        {
            return p;
        }
        panic!(
            "the {} broker is not installed: run scripts/test.sh (it installs it), \
             or set BROKER_BIN, or KAFKA_BOOTSTRAP_SERVERS to a running broker",
            self.describe()
        );
    }

    /// Client settings for a broker of this kind: idempotence on, as in
    /// production, unless the broker cannot take it.
    pub fn client_config(self, bootstrap: impl Into<String>, client_id: &str) -> KafkaConfig {
        let mut config = KafkaConfig::new(bootstrap, client_id);
        config.enable_idempotence &= self.supports_idempotence();
        config
    }
}

/// Where a [`TestBroker`] keeps its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Storage {
    /// `sqlite://broker.db` in the broker's temp dir: durable across
    /// [`TestBroker::kill9`] and [`TestBroker::restart`].
    #[default]
    Sqlite,
    /// `memory://`: nothing survives a restart. Benchmarks use it to show
    /// what the sqlite storage costs.
    Memory,
}

impl Storage {
    fn url(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite://broker.db",
            Self::Memory => "memory://broker/",
        }
    }
}

/// A broker process ([`BrokerKind::current`]) owned by one test, with its storage (durable
/// sqlite by default) in a temp dir. Killed when dropped.
pub struct TestBroker {
    kind: BrokerKind,
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    storage: Storage,
}

impl TestBroker {
    /// Starts the broker on a free port and waits until it answers metadata requests.
    ///
    /// # Panics
    /// When the broker is missing or does not come up within 30 s.
    pub async fn start() -> Self {
        Self::start_with(Storage::Sqlite).await
    }

    /// [`TestBroker::start`] with the given storage.
    ///
    /// # Panics
    /// When the broker is missing or does not come up within 30 s.
    pub async fn start_with(storage: Storage) -> Self {
        Self::start_on(BrokerKind::current(), storage).await
    }

    /// [`TestBroker::start`] of the given kind with the given storage
    /// (benchmarks compare brokers in one run).
    ///
    /// # Panics
    /// When the broker is missing or does not come up within 30 s.
    pub async fn start_on(kind: BrokerKind, storage: Storage) -> Self {
        let dir = tempfile::tempdir().expect("temp dir for the broker");
        let mut broker = Self {
            kind,
            child: None,
            port: crate::free_port(),
            dir,
            storage,
        };
        broker.spawn().await;
        broker
    }

    /// `127.0.0.1:<port>`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Client settings for this broker (idempotence on unless it cannot take it).
    pub fn config(&self, client_id: &str) -> KafkaConfig {
        self.kind.client_config(self.bootstrap(), client_id)
    }

    /// Which broker this is.
    pub fn kind(&self) -> BrokerKind {
        self.kind
    }

    /// SIGKILL: no flush, no goodbye. Storage stays for [`TestBroker::restart`].
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill(); // std's kill is SIGKILL on unix
            let _ = child.wait();
        }
    }

    /// Starts the broker again on the same port and the same storage (empty
    /// again for [`Storage::Memory`]).
    pub async fn restart(&mut self) {
        self.kill9();
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("broker log file");
        let bin = self.kind.binary();
        let child = Command::new(&bin)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", self.storage.url()])
            .current_dir(self.dir.path())
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let addr = format!("127.0.0.1:{}", self.port);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let config = self.config("testkit-probe");
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log =
                    std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default();
                panic!("the broker exited at start-up ({status}):\n{log}");
            }
            let listening = TcpStream::connect_timeout(
                &addr.parse().expect("socket address"),
                Duration::from_millis(200),
            )
            .is_ok();
            if listening && partition_count(&config, "__testkit_probe").await.is_ok() {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the broker did not come up on {addr} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        self.kill9();
    }
}
