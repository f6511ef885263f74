//! The `blazing_sun` binary: read the command line and environment
//! (`--help` lists every variable; exit 64 on bad usage or listing every bad
//! variable), set up tracing, build the application, run until SIGINT/SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use blazing_sun::{Application, Config};
use checkout_contract::env::EnvReader;

/// Not `#[tokio::main]`: its runtime would wait without end for a blocking
/// call into a broker that is gone (see `checkout_contract::shutdown::block_on`).
fn main() -> anyhow::Result<ExitCode> {
    let env = checkout_contract::cli::parse(
        "blazing_sun",
        "Balances: credits checkout.finished into the ledger, serves the balance API and page.",
        env!("CARGO_PKG_VERSION"),
        blazing_sun::config::SETTINGS,
    );
    checkout_contract::shutdown::block_on(run(env)).context("cannot start the async runtime")?
}

async fn run(env: EnvReader) -> anyhow::Result<ExitCode> {
    let telemetry = checkout_contract::telemetry::init("info");
    let served = async {
        let config = match Config::from_reader(env) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("blazing_sun: {e}");
                return Ok(ExitCode::from(64));
            }
        };
        let app = Application::build(config)
            .await
            .context("cannot start blazing_sun")?;
        tracing::info!(http_addr = %app.http_addr(), "listening");
        app.run_until_stopped(checkout_contract::shutdown::signal())
            .await
            .context("blazing_sun stopped with an error")?;
        Ok(ExitCode::SUCCESS)
    }
    .await;
    // The spans still batched go out before the exit.
    telemetry.shutdown().await;
    served
}
