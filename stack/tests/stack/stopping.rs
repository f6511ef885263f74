//! Stopping never hangs: with the broker already gone (killed first, as
//! `docker compose down` stops it before the services), SIGTERM makes the
//! launcher and each service binary exit within its grace period.
//!
//! Each test starts the real processes on a broker of its own, waits
//! until every consumer group has joined and committed (so closing has a
//! group to leave), SIGKILLs the broker, then SIGTERMs the processes.
//!
//! The service binaries are found next to `checkout-stack` in the target
//! directory; the workspace test run builds them. For this crate alone:
//! `cargo build -p gateway -p checkout -p blazing_sun --bins` first.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use checkout_contract::kafka::{KafkaConfig, ensure_topics, send_json};
use checkout_contract::topics::{PARTITIONS, Topics, consumer_groups};
use checkout_contract::{CheckoutRequestEvent, RequestId};
use stack::monitor;
use testkit::broker::{BrokerKind, TestBroker};
use tokio::process::{Child, Command};

/// A 32-byte-plus secret for the services' JWTs.
const JWT_SECRET: &str = "stopping-tests-secret-0123456789";

/// The launcher's bound: its parts stop together within
/// [`stack::system::STOP_TIMEOUT`], then the runtime gets
/// `checkout_contract::shutdown::EXIT_TIMEOUT`; plus room for a busy machine.
const LAUNCHER_LIMIT: Duration = Duration::from_secs(40);
/// A service's bound: its grace period (10 s by default; blazing_sun's batch
/// grace is 15 s), closing its Kafka clients, the runtime's exit timeout.
const SERVICE_LIMIT: Duration = Duration::from_secs(30);

/// A child process with its log in a temp file.
struct Process {
    name: &'static str,
    child: Child,
    log: tempfile::NamedTempFile,
}

impl Process {
    fn start(name: &'static str, program: &Path, env: &[(&str, String)]) -> Self {
        let log = tempfile::NamedTempFile::new().unwrap();
        let mut command = Command::new(program);
        command
            .env_remove("KAFKA_BOOTSTRAP_SERVERS")
            .env_remove("DATABASE_URL")
            // Idempotent producers unless the broker is Tansu 0.6 (see `checkout_contract::kafka`).
            .env(
                "KAFKA_ENABLE_IDEMPOTENCE",
                BrokerKind::current().supports_idempotence().to_string(),
            )
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .kill_on_drop(true);
        for (k, v) in env {
            command.env(k, v);
        }
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Self { name, child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    fn sigterm(&self) {
        let pid = self.child.id().expect("still running").to_string();
        let status = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -TERM {pid}");
    }

    /// Waits for the exit until `limit` after `signalled`; fails with the
    /// log if it does not come.
    async fn exits_within(&mut self, signalled: tokio::time::Instant, limit: Duration) {
        match tokio::time::timeout_at(signalled + limit, self.child.wait()).await {
            Ok(status) => {
                eprintln!(
                    "{} exited ({}) {:?} after SIGTERM; its warnings:",
                    self.name,
                    status.unwrap(),
                    signalled.elapsed()
                );
                for line in self.log().lines().filter(|l| l.contains("WARN")) {
                    eprintln!("  {line}");
                }
            }
            Err(_) => panic!(
                "{} still running {limit:?} after SIGTERM with the broker gone; its log:\n{}",
                self.name,
                self.log()
            ),
        }
    }
}

/// A sibling binary of `checkout-stack` in the target directory.
fn binary(name: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_BIN_EXE_checkout-stack"))
        .parent()
        .expect("target directory")
        .join(name);
    assert!(
        path.is_file(),
        "{} is not built: run `cargo build -p gateway -p checkout -p blazing_sun --bins` \
         (the workspace test run builds it)",
        path.display()
    );
    path
}

fn free() -> String {
    format!("127.0.0.1:{}", testkit::free_port())
}

/// Waits until `GET http://{addr}/healthz` answers 200.
async fn healthy(name: &str, addr: &str) {
    let url = format!("http://{addr}/healthz");
    testkit::eventually(
        &format!("{name} healthy"),
        Duration::from_secs(60),
        || async {
            let r = reqwest::get(&url).await.ok()?;
            r.status().is_success().then_some(())
        },
    )
    .await;
}

/// Produces one request and waits until both consumer groups have handled
/// it and committed: the checkout worker (`checkout.requests`) opened its
/// session, and blazing_sun (`checkout.finished`) read the outcome.
async fn both_groups_joined_and_committed(kafka: &KafkaConfig, topics: &Topics) {
    let producer = kafka
        .producer_config()
        .set("enable.idempotence", "false")
        .create()
        .unwrap();
    let request_id = RequestId::new_random().to_string();
    let request = CheckoutRequestEvent {
        request_id: request_id.clone(),
        user_id: 1,
        amount_cents: 500,
        currency: "eur".into(),
        purpose: "balance_topup".into(),
        timestamp: checkout_contract::events::now(),
        success_url: "http://127.0.0.1/?checkout=success".into(),
        cancel_url: "http://127.0.0.1/?checkout=cancel".into(),
    };
    send_json(&producer, &topics.requests, &request_id, &request, &[])
        .await
        .expect("request produced");
    for (group, topic) in [
        (consumer_groups::CHECKOUT_SERVICE, &topics.requests),
        (consumer_groups::MAIN_APP, &topics.finished),
    ] {
        testkit::eventually(
            &format!("{group} committed all of {topic}"),
            Duration::from_secs(60),
            || async {
                let rows = monitor::lag(kafka, group, std::slice::from_ref(topic))
                    .await
                    .ok()?;
                let done = rows.iter().any(|r| r.end > 0)
                    && rows
                        .iter()
                        .all(|r| r.lag == 0 && (r.end == 0 || r.committed.is_some()));
                done.then_some(())
            },
        )
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_launcher_exits_in_time_after_the_broker_died() {
    testkit::init_tracing();
    let mut broker = TestBroker::start().await;
    let kafka = broker.config("stopping-test");
    let data = tempfile::tempdir().unwrap();
    let (gateway_admin, blazing_sun) = (free(), free());
    let mut stack = Process::start(
        "checkout-stack",
        Path::new(env!("CARGO_BIN_EXE_checkout-stack")),
        &[
            ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap()),
            ("STACK_DATA_DIR", data.path().display().to_string()),
            ("STRIPE_EMULATOR_LISTEN", free()),
            ("CHECKOUT_WEBHOOK_LISTEN", free()),
            ("BLAZING_SUN_LISTEN", blazing_sun.clone()),
            ("GATEWAY_LISTEN", free()),
            ("GATEWAY_ADMIN_LISTEN", gateway_admin.clone()),
        ],
    );
    healthy("gateway", &gateway_admin).await;
    healthy("blazing_sun", &blazing_sun).await;
    both_groups_joined_and_committed(&kafka, &Topics::default()).await;

    broker.kill9();
    stack.sigterm();
    stack
        .exits_within(tokio::time::Instant::now(), LAUNCHER_LIMIT)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_service_binary_exits_in_time_after_the_broker_died() {
    testkit::init_tracing();
    let (gateway_bin, checkout_bin, blazing_sun_bin) =
        (binary("gateway"), binary("checkout"), binary("blazing_sun"));
    let mut broker = TestBroker::start().await;
    let kafka = broker.config("stopping-test");
    let topics = Topics::default();
    ensure_topics(&kafka, &topics.all(), PARTITIONS)
        .await
        .expect("topics created");
    let emulator = stripe_emulator::Emulator::build(stripe_emulator::Config::default())
        .await
        .expect("emulator builds");
    let api_base = emulator.api_base();
    let (stop_emulator, emulator_stopped) = tokio::sync::oneshot::channel::<()>();
    let emulator = tokio::spawn(emulator.run_until_stopped(async {
        let _ = emulator_stopped.await;
    }));

    let data = tempfile::tempdir().unwrap();
    let bootstrap = ("KAFKA_BOOTSTRAP_SERVERS", broker.bootstrap());
    let (gateway_admin, blazing_sun) = (free(), free());
    let mut processes = vec![
        Process::start(
            "gateway",
            &gateway_bin,
            &[
                bootstrap.clone(),
                ("JWT_SECRET", JWT_SECRET.into()),
                ("GATEWAY_LISTEN", free()),
                ("GATEWAY_ADMIN_LISTEN", gateway_admin.clone()),
            ],
        ),
        Process::start(
            "checkout",
            &checkout_bin,
            &[
                bootstrap.clone(),
                ("STRIPE_SECRET_KEY", "sk_test_stopping".into()),
                ("STRIPE_API_BASE", api_base),
                ("STRIPE_WEBHOOK_SECRET", "whsec_stopping".into()),
                ("CHECKOUT_WEBHOOK_LISTEN", free()),
            ],
        ),
        Process::start(
            "blazing_sun",
            &blazing_sun_bin,
            &[
                bootstrap,
                (
                    "DATABASE_URL",
                    format!("sqlite://{}", data.path().join("blazing_sun.db").display()),
                ),
                ("JWT_SECRET", JWT_SECRET.into()),
                ("BLAZING_SUN_LISTEN", blazing_sun.clone()),
            ],
        ),
    ];
    healthy("gateway", &gateway_admin).await;
    healthy("blazing_sun", &blazing_sun).await;
    both_groups_joined_and_committed(&kafka, &topics).await;

    broker.kill9();
    let signalled = tokio::time::Instant::now();
    for p in &processes {
        p.sigterm();
    }
    for p in &mut processes {
        p.exits_within(signalled, SERVICE_LIMIT).await;
    }
    let _ = stop_emulator.send(());
    let _ = emulator.await;
}
