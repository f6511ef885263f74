//! The services as real `fault-node` processes, each on fixed ports so a
//! restart is reachable where the old one was. Both suites start them with
//! the binary's path, which only a test target knows
//! (`env!("CARGO_BIN_EXE_fault-node")`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use checkout_contract::kafka::KafkaConfig;

/// A node's environment: where the broker is and whether producers are
/// idempotent (from `kafka`), then the node's own variables.
pub fn env_with_broker(kafka: &KafkaConfig, pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    [
        ("KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers.clone()),
        (
            "KAFKA_ENABLE_IDEMPOTENCE",
            kafka.enable_idempotence.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    )
    .collect()
}

/// Which service a node runs, and its environment (the services' own variables).
pub struct NodeSpec {
    /// The `fault-node` binary.
    pub program: PathBuf,
    /// `checkout`, `blazing_sun` or `gateway`.
    pub service: &'static str,
    /// What the node is called in logs and panics (`checkout-2`).
    pub name: String,
    pub env: Vec<(String, String)>,
    /// Log directives the suite itself reads (`checkout::worker=info`),
    /// added to `RUST_LOG` after the level of every other line
    /// (`FAULTS_NODE_LOG`, default `warn`).
    pub log_directives: &'static str,
}

impl NodeSpec {
    /// A node named after its service, logging warnings only.
    pub fn new(
        program: impl Into<PathBuf>,
        service: &'static str,
        env: Vec<(String, String)>,
    ) -> Self {
        Self {
            program: program.into(),
            service,
            name: service.to_owned(),
            env,
            log_directives: "",
        }
    }
}

/// A running `fault-node` process; SIGKILLed when dropped.
pub struct Node {
    spec: NodeSpec,
    child: Option<Child>,
    log: tempfile::NamedTempFile,
    pub starts: u32,
    pub kills: u32,
}

/// The line [`Node`] writes to the log before each start.
fn start_marker(start: u32) -> String {
    format!("=== start {start} ===\n")
}

impl Node {
    pub fn start(spec: NodeSpec) -> Self {
        let log = tempfile::NamedTempFile::new().expect("log file");
        let mut node = Self {
            spec,
            child: None,
            log,
            starts: 0,
            kills: 0,
        };
        node.spawn();
        node
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    fn append_to_log(&self, text: &str) {
        let _ = std::io::Write::write_all(
            &mut std::fs::OpenOptions::new()
                .append(true)
                .open(self.log.path())
                .expect("log file"),
            text.as_bytes(),
        );
    }

    fn spawn(&mut self) {
        self.starts += 1;
        self.append_to_log(&start_marker(self.starts));
        let mut filter = std::env::var("FAULTS_NODE_LOG").unwrap_or_else(|_| "warn".into());
        if !self.spec.log_directives.is_empty() {
            filter = format!("{filter},{}", self.spec.log_directives);
        }
        let child = Command::new(&self.spec.program)
            .arg(self.spec.service)
            .env_clear()
            .envs(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("RUST_LOG", filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            // Appended: each start adds to the same log.
            .stderr(
                std::fs::OpenOptions::new()
                    .append(true)
                    .open(self.log.path())
                    .expect("log file"),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start fault-node {}: {e}", self.spec.name));
        self.child = Some(child);
    }

    /// SIGKILL: no flush, no offset commit, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.append_to_log(&format!("=== SIGKILL ({}) ===\n", self.spec.name));
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{} had already exited ({status}) before the kill:\n{}",
                    self.spec.name,
                    self.log_tail()
                );
            }
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
            self.kills += 1;
        }
    }

    /// SIGKILL, then the same command again (same ports, same database, same group).
    pub fn kill9_and_restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Panics with the log when the process exited on its own.
    pub fn assert_running(&mut self) {
        if let Some(status) = self
            .child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
        {
            panic!(
                "{} exited on its own ({status}):\n{}",
                self.spec.name,
                self.log_tail()
            );
        }
    }

    /// What the current process logged so far (since its start marker).
    pub fn log_since_start(&self) -> String {
        let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let marker = start_marker(self.starts);
        log.rfind(&marker)
            .map_or(log.clone(), |at| log[at + marker.len()..].to_owned())
    }

    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // A failing suite shows what the processes said last.
        if std::thread::panicking() {
            eprintln!(
                "--- last lines of {} ---\n{}",
                self.spec.name,
                self.log_tail()
            );
            if let Some(dir) = std::env::var_os("FAULTS_KEEP_LOGS") {
                let _ = std::fs::copy(
                    self.log.path(),
                    std::path::Path::new(&dir).join(format!("{}.log", self.spec.name)),
                );
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
