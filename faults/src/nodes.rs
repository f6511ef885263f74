//! The checkout worker and blazing_sun as real processes (`fault-node`),
//! each on a fixed port so a restart is reachable where the old one was.

use std::process::{Child, Command, Stdio};

/// Which service a node runs, and its environment (the services' own variables).
pub struct NodeSpec {
    pub service: &'static str,
    pub env: Vec<(String, String)>,
}

/// A running `fault-node` process; SIGKILLed when dropped.
pub struct Node {
    spec: NodeSpec,
    child: Option<Child>,
    log: tempfile::NamedTempFile,
    pub starts: u32,
    pub kills: u32,
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

    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_fault-node"))
            .arg(self.spec.service)
            .env_clear()
            .envs(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("FAULTS_NODE_LOG").unwrap_or_else(|_| "warn".into()),
            )
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
            .unwrap_or_else(|e| panic!("cannot start fault-node {}: {e}", self.spec.service));
        self.child = Some(child);
        self.starts += 1;
    }

    /// SIGKILL: no flush, no offset commit, no goodbye.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = std::io::Write::write_all(
                &mut std::fs::OpenOptions::new()
                    .append(true)
                    .open(self.log.path())
                    .expect("log file"),
                format!("=== SIGKILL ({}) ===\n", self.spec.service).as_bytes(),
            );
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "{} had already exited ({status}) before the kill:\n{}",
                    self.spec.service,
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
                self.spec.service,
                self.log_tail()
            );
        }
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
                self.spec.service,
                self.log_tail()
            );
            if let Some(dir) = std::env::var_os("FAULTS_KEEP_LOGS") {
                let _ = std::fs::copy(
                    self.log.path(),
                    std::path::Path::new(&dir).join(format!("{}.log", self.spec.service)),
                );
            }
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
