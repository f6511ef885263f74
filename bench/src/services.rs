//! The project's own service binaries (`gateway`, `checkout`,
//! `blazing_sun`) as child processes of the bench, for `scale`: each is a
//! separate OS process, configured only through its environment like in
//! production, so its CPU (`/proc/<pid>/stat`) is its own.
//!
//! The binaries are looked up next to the bench's executable (a test
//! binary in `target/<profile>/deps` looks one directory up); they are not
//! built by `cargo build -p bench`, so a missing one is an error naming the
//! command that builds them.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::infra;

/// The three service binaries `scale` runs.
pub const SERVICES: [&str; 3] = ["gateway", "checkout", "blazing_sun"];

/// Where the service binaries are.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// The directory of `exe` (default this process's executable), or its
    /// parent when that is cargo's `deps` directory, holding every one of
    /// [`SERVICES`].
    ///
    /// # Errors
    /// When one is missing: the message names the build command.
    pub fn find(exe: Option<&Path>) -> anyhow::Result<Self> {
        let exe = match exe {
            Some(p) => p.to_path_buf(),
            None => std::env::current_exe()?,
        };
        let mut dir = exe
            .parent()
            .ok_or_else(|| anyhow::anyhow!("{} has no directory", exe.display()))?
            .to_path_buf();
        if dir.file_name().is_some_and(|n| n == "deps") {
            dir.pop();
        }
        let missing: Vec<&str> = SERVICES
            .iter()
            .copied()
            .filter(|name| !dir.join(name).is_file())
            .collect();
        if !missing.is_empty() {
            let release = if dir.file_name().is_some_and(|n| n == "release") {
                "--release "
            } else {
                ""
            };
            anyhow::bail!(
                "{} not found in {}: build them first with `cargo build {release}-p gateway -p checkout -p blazing_sun`",
                missing.join(", "),
                dir.display()
            );
        }
        Ok(Self { dir })
    }

    /// The path of `name`, one of [`SERVICES`].
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// One running service process; SIGKILLed when dropped.
pub struct Service {
    /// `gateway 1`, `checkout 2`, ...
    pub name: String,
    child: Child,
    pid: u32,
    log: PathBuf,
}

impl Service {
    /// Starts `binary` with exactly `env` (nothing inherited but `RUST_LOG`,
    /// default `warn`), its stderr and stdout appended to
    /// `<log_dir>/<name>.log`.
    ///
    /// # Errors
    /// When the process cannot be started.
    pub fn spawn(
        binary: &Path,
        name: &str,
        env: &[(&str, String)],
        log_dir: &Path,
    ) -> anyhow::Result<Self> {
        let log = log_dir.join(format!("{}.log", name.replace(' ', "-")));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)?;
        let child = Command::new(binary)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env(
                "RUST_LOG",
                std::env::var("BENCH_SERVICE_LOG").unwrap_or_else(|_| "warn".to_owned()),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", binary.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow::anyhow!("{name} exited at once"))?;
        Ok(Self {
            name: name.to_owned(),
            child,
            pid,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// CPU seconds (user + system) the process has used so far.
    pub fn cpu_secs(&self) -> f64 {
        infra::process_cpu_secs(self.pid)
    }

    /// Still running?
    ///
    /// # Errors
    /// When it exited, with its exit status and the end of its log.
    pub fn ensure_running(&mut self) -> anyhow::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => anyhow::bail!(
                "{} exited ({status}); its log ends:\n{}",
                self.name,
                self.log_tail()
            ),
        }
    }

    /// SIGTERM (a graceful stop: the consumer leaves its group, so its
    /// partitions move at once), then SIGKILL if it is still there after 20 s.
    pub async fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        if tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(service = %self.name, "still running 20 s after SIGTERM: SIGKILL");
            let _ = self.child.kill().await;
        }
    }

    /// The last 30 lines of its log.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }
}
