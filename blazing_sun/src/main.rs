//! The `blazing_sun` binary: read the config (exit 64 listing every bad
//! variable), set up tracing, build the application, run until SIGINT/SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use blazing_sun::{Application, Config};

/// Not `#[tokio::main]`: its runtime would wait without end for a blocking
/// call into a broker that is gone (see `checkout_contract::shutdown::block_on`).
fn main() -> anyhow::Result<ExitCode> {
    checkout_contract::shutdown::block_on(run()).context("cannot start the async runtime")?
}

async fn run() -> anyhow::Result<ExitCode> {
    checkout_contract::telemetry::init("info");
    let config = match Config::from_env() {
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
