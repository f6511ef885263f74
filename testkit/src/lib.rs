//! Test support shared by every crate's integration tests. Real parts only:
//!
//! - [`broker`]: a real Kafka-protocol broker over TCP. `KAFKA_BOOTSTRAP_SERVERS`
//!   if set (the test script starts one broker for the whole run), otherwise a
//!   broker process (Nisshi, or Tansu with `TEST_BROKER=tansu`) of the test's own, on a free port with durable sqlite
//!   storage in a temp dir, which can be killed with SIGKILL and restarted on
//!   the same storage ([`broker::TestBroker`]). Each test gets its own topic
//!   names ([`broker::fresh_topics`]) and consumer groups ([`unique`]).
//! - [`postgres`]: a fresh PostgreSQL database per test on the server the test
//!   script started (`TEST_DATABASE_URL`), or a server of the test's own to
//!   stop and start again ([`postgres::Cluster`]).
//! - [`front`]: a TCP front for a local server that counts connections and
//!   can terminate TLS with a generated certificate (the emulator over HTTPS).
//! - [`idp`]: a test identity provider: generated RS256/ES256 keys, their
//!   JWKS served over HTTP, tokens signed with them.
//! - [`otlp`]: an OpenTelemetry trace receiver (OTLP/gRPC) keeping the spans
//!   it is sent.
//! - [`topic`]: what the code under test wrote to a topic: a [`topic::Record`]
//!   per message, a [`topic::TopicRecorder`] tailing a topic in the background.
//! - [`events`]: the seed's example events with the ids a test chooses, and
//!   fresh request_ids and user ids.
//! - [`tokens`]: the JWT secret the services under test use and tokens signed with it.
//! - [`eventually`]: wait for a condition with a deadline, never a bare sleep.
//! - [`capture_logs`]: what the code under test logs on this thread, as text.
//!
//! Tests that need a server fail loudly when it is missing; they never skip.

pub mod broker;
pub mod events;
pub mod front;
pub mod idp;
pub mod otlp;
pub mod postgres;
pub mod tokens;
pub mod topic;

use std::future::Future;
use std::time::Duration;

/// A name no other test uses: `prefix` plus a random suffix.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// Logs go to the test output only when `TEST_LOG` is set (its value is the filter).
pub fn init_tracing() {
    if let Ok(filter) = std::env::var("TEST_LOG") {
        let filter = if filter.is_empty() || filter == "1" {
            "info".to_owned()
        } else {
            filter
        };
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// Everything logged on the current thread (with the fields of the spans
/// around each event) while the returned guard lives, at every level down to
/// DEBUG. Works for code that runs on the test's thread: a `#[tokio::test]`'s
/// current-thread runtime, including tasks it spawns.
pub fn capture_logs() -> (tracing::subscriber::DefaultGuard, CapturedLogs) {
    let logs = CapturedLogs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    (tracing::subscriber::set_default(subscriber), logs)
}

/// The lines of captured log `text` about one checkout: those that mention
/// its `request_id` or its `trace_id`.
///
/// # Panics
/// When one of them lacks either: every line about a checkout must carry
/// `request_id` and `trace_id=<trace_id>`.
pub fn lines_about_checkout<'a>(text: &'a str, request_id: &str, trace_id: &str) -> Vec<&'a str> {
    let tagged = format!("trace_id={trace_id}");
    let about: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(request_id) || l.contains(trace_id))
        .collect();
    for line in &about {
        assert!(
            line.contains(request_id) && line.contains(&tagged),
            "a line about checkout {request_id} without both request_id and trace_id:\n{line}"
        );
    }
    about
}

/// The text [`capture_logs`] collected.
#[derive(Clone, Default)]
pub struct CapturedLogs(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLogs {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(
            &self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
        .into_owned()
    }
}

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Polls `check` every 20 ms until it returns `Some`, and returns that value.
///
/// # Panics
/// When `timeout` passes first; the message names `what` was awaited.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A TCP port that was free a moment ago (for processes that must be told a
/// port; in-process servers bind port 0 instead).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind a local port")
}
