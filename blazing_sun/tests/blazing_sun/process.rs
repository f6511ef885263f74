//! The real `blazing_sun` process, killed with SIGKILL while it credits a
//! stream of events, then started again: every event is credited exactly once.
//! Uses a broker of its own, so the binary's production topic names are free.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use checkout_contract::kafka::{ensure_topics, send_json};
use checkout_contract::topics::{PARTITIONS, Topics};
use testkit::broker::TestBroker;

use crate::helpers::{Backend, JWT_SECRET, TestDb, new_request_id, new_user, success};

const EVENTS: i64 = 1000;

struct Process {
    child: Child,
    http: String,
    _log: tempfile::NamedTempFile,
}

impl Process {
    fn start(broker: &TestBroker, db: &TestDb) -> Self {
        let port = testkit::free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_blazing_sun"))
            .env_clear()
            .env("DATABASE_URL", &db.url)
            .env("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap())
            .env("JWT_SECRET", JWT_SECRET)
            .env("BLAZING_SUN_LISTEN", format!("127.0.0.1:{port}"))
            // Small batches: many commits, so the kill lands between some of them.
            .env("BLAZING_SUN_BATCH_SIZE", "20")
            // The killed process's partitions move on after 3 s, not 10.
            .env("BLAZING_SUN_SESSION_TIMEOUT_MS", "3000")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("the binary starts");
        Self {
            child,
            http: format!("http://127.0.0.1:{port}"),
            _log: log,
        }
    }

    fn kill9(&mut self) {
        self.child.kill().unwrap(); // SIGKILL
        self.child.wait().unwrap();
    }

    async fn outcome_count(&self, label: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let prefix = format!("blazing_sun_checkout_finished_total{{outcome=\"{label}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn sigkill_mid_stream_then_restart_credits_every_event_once(backend: Backend) {
    testkit::init_tracing();
    let broker = TestBroker::start().await;
    let kafka = broker.config("blazing-sun-test");
    let topics = Topics::default();
    ensure_topics(&kafka, &topics.all(), PARTITIONS)
        .await
        .unwrap();
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let user = new_user();

    let producer = kafka.producer().unwrap();
    let events: Vec<_> = (0..EVENTS)
        .map(|_| success(&new_request_id(), user, 1))
        .collect();
    let sends = events
        .iter()
        .map(|e| send_json(&producer, &topics.finished, &e.request_id, e, &[]));
    for sent in futures::future::join_all(sends).await {
        sent.expect("broker acknowledges the event");
    }

    let mut first = Process::start(&broker, &db);
    testkit::eventually("the first credits", Duration::from_secs(20), || async {
        (store.balance(user, "eur").await.ok()? > 0).then_some(())
    })
    .await;
    first.kill9();
    let at_kill = store.balance(user, "eur").await.unwrap();

    let second = Process::start(&broker, &db);
    testkit::eventually("every event credited", Duration::from_secs(30), || async {
        (store.balance(user, "eur").await.ok()? >= EVENTS).then_some(())
    })
    .await;
    let duplicates = testkit::eventually(
        "the restarted process's metrics",
        Duration::from_secs(10),
        || async {
            let credited = second.outcome_count("credited").await;
            (credited + u64::try_from(at_kill).unwrap() >= u64::try_from(EVENTS).unwrap())
                .then_some(second.outcome_count("duplicate").await)
        },
    )
    .await;
    println!(
        "sigkill [{}]: {at_kill} credited before the kill, {duplicates} redelivered no-ops after the restart",
        store.backend()
    );
    assert_eq!(
        store.balance(user, "eur").await.unwrap(),
        EVENTS,
        "each event credited exactly once"
    );
    let ledger = store.recent_ledger(user, EVENTS * 2).await.unwrap();
    assert_eq!(i64::try_from(ledger.len()).unwrap(), EVENTS);
}

#[tokio::test]
async fn sigkill_mid_stream_then_restart_credits_every_event_once_sqlite() {
    sigkill_mid_stream_then_restart_credits_every_event_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn sigkill_mid_stream_then_restart_credits_every_event_once_postgres() {
    sigkill_mid_stream_then_restart_credits_every_event_once(Backend::Postgres).await;
}
