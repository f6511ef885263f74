//! The infrastructure of one bench run: a broker of its own (heavy load
//! must never reach the shared test broker, and Tansu 0.6.0 stops serving for
//! everyone when an idempotent producer's epoch is bumped), Nisshi 0.8.1 or
//! Tansu 0.6.0 with either storage, and fresh databases.

use checkout_contract::kafka::{KafkaConfig, ensure_topics};
use checkout_contract::topics::{PARTITIONS, Topics};
use sqlx::{Connection, Executor, PgConnection};
use testkit::broker::{BrokerKind, Storage, TestBroker};

/// `--broker nisshi|tansu` and `--broker-storage sqlite|memory`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BrokerChoice {
    pub kind: BrokerKind,
    pub storage: Storage,
}

/// Which broker the figures come from, for the report (producers are
/// idempotent unless the broker is Tansu 0.6.0).
pub fn broker_name(broker: BrokerChoice) -> &'static str {
    match (broker.kind, broker.storage) {
        (BrokerKind::Nisshi, Storage::Sqlite) => {
            "Nisshi 0.8.1, sqlite storage, own process, idempotence on"
        }
        (BrokerKind::Nisshi, Storage::Memory) => {
            "Nisshi 0.8.1, memory storage, own process, idempotence on"
        }
        (BrokerKind::Tansu, Storage::Sqlite) => {
            "Tansu 0.6.0, sqlite storage, own process, idempotence off"
        }
        (BrokerKind::Tansu, Storage::Memory) => {
            "Tansu 0.6.0, memory storage, own process, idempotence off"
        }
    }
}

/// The bench's own broker with `topics` created (3 partitions each).
pub struct Kafka {
    /// Stopped when dropped.
    _broker: TestBroker,
    pub config: KafkaConfig,
    pub topics: Topics,
    /// What was appended to the seed's topic names.
    pub suffix: String,
}

impl Kafka {
    /// Another set of fresh topics on the same broker (3 partitions each).
    ///
    /// # Errors
    /// When the topics cannot be created.
    pub async fn more_topics(&self) -> anyhow::Result<Topics> {
        let suffix = format!(".bench{}", uuid::Uuid::new_v4().simple());
        let topics = Topics::with_suffix(&suffix);
        ensure_topics(&self.config, &topics.all(), PARTITIONS).await?;
        Ok(topics)
    }

    /// Starts the chosen broker on a free port and creates fresh topic
    /// names on it.
    ///
    /// # Errors
    /// When the topics cannot be created.
    pub async fn start(broker: BrokerChoice) -> anyhow::Result<Self> {
        Self::start_with_suffix(broker, &format!(".bench{}", uuid::Uuid::new_v4().simple())).await
    }

    /// [`Kafka::start`] with the seed's topic names, for the services'
    /// own binaries (they read no suffix; the broker is the bench's alone).
    ///
    /// # Errors
    /// When the topics cannot be created.
    pub async fn start_seed_names(broker: BrokerChoice) -> anyhow::Result<Self> {
        Self::start_with_suffix(broker, "").await
    }

    async fn start_with_suffix(broker: BrokerChoice, suffix: &str) -> anyhow::Result<Self> {
        let broker = TestBroker::start_on(broker.kind, broker.storage).await;
        let config = broker.config("checkout-bench");
        let suffix = suffix.to_owned();
        let topics = Topics::with_suffix(&suffix);
        ensure_topics(&config, &topics.all(), PARTITIONS).await?;
        Ok(Self {
            _broker: broker,
            config,
            topics,
            suffix,
        })
    }
}

/// A new, empty PostgreSQL database on the server of `admin_url` (an URL
/// ending in `/<database>`); returns its URL.
///
/// # Errors
/// When the server cannot be reached or the database cannot be created.
pub async fn fresh_postgres(admin_url: &str) -> anyhow::Result<String> {
    let mut conn = PgConnection::connect(admin_url).await?;
    let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await?;
    let _ = conn.close().await;
    let (base, query) = match admin_url.find('?') {
        Some(q) => admin_url.split_at(q),
        None => (admin_url, ""),
    };
    let slash = base
        .rfind('/')
        .filter(|&i| i > "postgres://".len())
        .ok_or_else(|| anyhow::anyhow!("{admin_url} must end in /<database>"))?;
    Ok(format!("{}/{name}{query}", &base[..slash]))
}

/// The PostgreSQL admin URL: `--database-url`, else `TEST_DATABASE_URL`.
///
/// # Errors
/// When neither is set.
pub fn postgres_admin_url(option: Option<&str>) -> anyhow::Result<String> {
    option
        .map(str::to_owned)
        .or_else(|| {
            std::env::var("TEST_DATABASE_URL")
                .ok()
                .filter(|s| !s.is_empty())
        })
        .ok_or_else(|| {
            anyhow::anyhow!("no PostgreSQL: pass --database-url or set TEST_DATABASE_URL")
        })
}

/// `nproc` and total memory, for the report.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| {
                    l.split_whitespace()
                        .nth(1)
                        .and_then(|v| v.parse::<u64>().ok())
                })
        })
        .unwrap_or(0);
    format!(
        "{cores} cores, {:.1} GiB memory",
        mem_kib as f64 / 1024.0 / 1024.0
    )
}

/// CPU seconds the whole machine has spent busy (all cores; `/proc/stat`,
/// USER_HZ = 100 on Linux), or `None` off Linux.
pub fn machine_busy_secs() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let jiffies: Vec<f64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0.0))
        .collect();
    // user nice system idle iowait irq softirq steal ...: idle and iowait are not busy.
    let total: f64 = jiffies.iter().take(8).sum();
    let idle = jiffies.get(3)? + jiffies.get(4).unwrap_or(&0.0);
    Some((total - idle) / 100.0)
}

/// utime + stime of process `pid` in seconds (`/proc/<pid>/stat`, USER_HZ =
/// 100 on Linux); 0 when it cannot be read (the process is gone).
pub fn process_cpu_secs(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            let fields: Vec<&str> = after.split_whitespace().collect();
            let utime: f64 = fields.get(11)?.parse().ok()?;
            let stime: f64 = fields.get(12)?.parse().ok()?;
            Some((utime + stime) / 100.0)
        })
        .unwrap_or(0.0)
}

/// The bench's own broker: the child process of this one named `nisshi` or `tansu`.
pub fn broker_pid() -> Option<u32> {
    let tasks = std::fs::read_dir("/proc/self/task").ok()?;
    tasks
        .filter_map(Result::ok)
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| {
            c.split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| matches!(c.trim(), "nisshi" | "tansu"))
        })
}
