//! `checkout-bench`: every hot path of the checkout system measured side by
//! side with its physical baseline in the same run, because the machines are
//! shared and noisy and only ratios mean something.
//!
//! Every scenario runs against real parts: a Tansu broker of the bench's own
//! (so the heavy load never reaches the shared test broker), the real
//! gateway / blazing_sun libraries, real SQLite and PostgreSQL databases.
//!
//! # Layout
//! - [`options`]: the command line (`--smoke`, `--duration`, `--database-url`, `--out`, `--rate`, `--scale-*`).
//! - [`load`]: the closed- and open-loop load generators and their latency [`load::Sample`].
//! - [`infra`]: the bench's own Tansu broker and fresh databases.
//! - [`report`]: the printed table and the JSON file per scenario.
//! - [`system`]: emulator + checkout worker (+ gateway) on the bench's broker, for `worker` and `e2e`.
//! - [`services`]: the project's `gateway`, `checkout` and `blazing_sun` binaries as child processes, for `scale`.
//! - [`scenarios`]: one file per scenario (`start`, `ledger`, `worker`, `e2e`, `watch`, `tail`, `scale`, `stripe-tls`).

pub mod infra;
pub mod load;
pub mod options;
pub mod report;
pub mod scenarios;
pub mod services;
pub mod system;

pub use options::{Options, Scenario};
pub use report::Report;

/// Runs `scenario` and returns its report(s) (`all` runs each in turn).
///
/// # Errors
/// When a part cannot start or a measurement fails outright.
pub async fn run(scenario: Scenario, options: &Options) -> anyhow::Result<Vec<Report>> {
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for s in scenario.expand() {
        let result = match s {
            Scenario::Start => scenarios::start::run(options).await,
            Scenario::Ledger => scenarios::ledger::run(options).await,
            Scenario::Worker => scenarios::worker::run(options).await,
            Scenario::E2e => scenarios::e2e::run(options).await,
            Scenario::Watch => scenarios::watch::run(options).await,
            Scenario::Scale => scenarios::scale::run(options).await,
            Scenario::StripeTls => scenarios::stripe_tls::run(options).await,
            Scenario::Tail => scenarios::tail::run(options).await,
            Scenario::All => unreachable!("expanded above"),
        };
        // One failed scenario does not stop the others of `all`.
        match result {
            Ok(report) => {
                report.write(&options.out_dir)?;
                println!("{}", report.render());
                reports.push(report);
            }
            Err(e) => {
                eprintln!("== {} == FAILED: {e:#}", s.name());
                failed.push(format!("{}: {e:#}", s.name()));
            }
        }
    }
    anyhow::ensure!(failed.is_empty(), "{}", failed.join("; "));
    Ok(reports)
}
