//! One fresh PostgreSQL database per test, on the server `scripts/test.sh`
//! starts and names in `TEST_DATABASE_URL` (an admin URL such as
//! `postgres://postgres@127.0.0.1:54329/postgres`).

use sqlx::{Connection, Executor, PgConnection};

/// Creates an empty database with a unique name and returns its URL.
///
/// # Panics
/// When `TEST_DATABASE_URL` is unset or the server cannot be reached: the
/// test fails loudly rather than skipping.
pub async fn fresh_database() -> String {
    let admin = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!("TEST_DATABASE_URL is not set: run the tests with scripts/test.sh, which starts PostgreSQL")
    });
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at TEST_DATABASE_URL={admin}: {e}"));
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    let _ = conn.close().await;
    match admin.rfind('/') {
        Some(slash)
            if admin[..slash].contains('@')
                || admin[..slash].ends_with(|c: char| c.is_ascii_digit()) =>
        {
            let query = admin.find('?').map(|q| &admin[q..]).unwrap_or("");
            format!("{}/{name}{query}", &admin[..slash])
        }
        _ => panic!("TEST_DATABASE_URL={admin} must end in /<database>"),
    }
}

/// A PostgreSQL server of one test's own, in a temp dir on a free port, that
/// the test can stop (immediate shutdown, like a crash or a failover) and
/// start again on the same data. Fault tests use it; everything else uses
/// [`fresh_database`] on the shared server. Stopped when dropped.
pub struct Cluster {
    dir: tempfile::TempDir,
    port: u16,
    bin: std::path::PathBuf,
}

impl Cluster {
    /// Runs `initdb` and starts the server (trust authentication, user `postgres`).
    ///
    /// # Panics
    /// When PostgreSQL is not installed (`scripts/setup.sh` installs it) or
    /// does not start.
    pub async fn start() -> Self {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .ok()
            .into_iter()
            .flatten()
            .filter_map(|e| Some(e.ok()?.path().join("bin")))
            .filter(|bin| bin.join("postgres").exists())
            .max()
            .expect("PostgreSQL is not installed under /usr/lib/postgresql: run scripts/setup.sh");
        let dir = tempfile::tempdir().expect("temp dir for PostgreSQL");
        let cluster = Self {
            dir,
            port: crate::free_port(),
            bin,
        };
        std::fs::create_dir(cluster.data()).expect("data dir");
        if is_root() {
            // The server refuses to run as root: its files belong to `postgres`.
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(cluster.dir.path(), std::fs::Permissions::from_mode(0o755))
                .expect("chmod temp dir");
            let uid = postgres_uid();
            std::os::unix::fs::chown(cluster.data(), Some(uid), None).expect("chown data dir");
        }
        cluster
            .run(&["initdb", "-U", "postgres", "-A", "trust", "--no-sync", "-D"])
            .await;
        cluster.start_again().await;
        cluster
    }

    /// The URL of database `name` (`postgres` always exists).
    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }

    /// Creates an empty database and returns its URL.
    ///
    /// # Panics
    /// When the server does not answer.
    pub async fn fresh_database(&self) -> String {
        let mut conn = PgConnection::connect(&self.url("postgres"))
            .await
            .expect("own PostgreSQL answers");
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .expect("create database");
        let _ = conn.close().await;
        self.url(&name)
    }

    /// Stops the server at once (`pg_ctl stop -m immediate`): every
    /// connection drops, new ones are refused.
    pub async fn stop(&self) {
        self.run(&["pg_ctl", "stop", "-m", "immediate", "-w", "-D"])
            .await;
    }

    /// Starts the (stopped) server again on the same port and data.
    pub async fn start_again(&self) {
        // The socket and the log go where the server may write: its data dir.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.data().display()
        );
        let log = self.data().join("server.log");
        let log = log.to_str().expect("utf-8 path");
        self.run(&[
            "pg_ctl", "start", "-w", "-t", "60", "-l", log, "-o", &options, "-D",
        ])
        .await;
    }

    fn data(&self) -> std::path::PathBuf {
        self.dir.path().join("data")
    }

    /// Runs a PostgreSQL program (as `postgres` when we are root) with the
    /// data dir as its last argument; panics with its output on failure.
    async fn run(&self, args: &[&str]) {
        let program = self.bin.join(args[0]);
        let mut command = if is_root() {
            let mut c = tokio::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            tokio::process::Command::new(&program)
        };
        let output = command
            .args(&args[1..])
            .arg(self.data())
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let mut command = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            std::process::Command::new(&program)
        };
        let _ = command
            .args(["stop", "-m", "immediate", "-D"])
            .arg(self.data())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
    }
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

fn postgres_uid() -> u32 {
    let output = std::process::Command::new("id")
        .args(["-u", "postgres"])
        .output()
        .expect("id -u postgres");
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .expect("the postgres user exists (Debian's postgresql package creates it)")
}
