//! The `checkout` binary: read the config (exit 64 listing every bad
//! variable), set up tracing, build the service, run it until SIGINT/SIGTERM.

use anyhow::Context;

/// Not `#[tokio::main]`: its runtime would wait without end for a blocking
/// call into a broker that is gone (see `checkout_contract::shutdown::block_on`).
fn main() -> anyhow::Result<()> {
    checkout_contract::shutdown::block_on(run()).context("cannot start the async runtime")?
}

async fn run() -> anyhow::Result<()> {
    checkout_contract::telemetry::init("info");
    let config = match checkout::Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("checkout: {e}");
            std::process::exit(64);
        }
    };
    let app = checkout::Application::build(config)
        .await
        .context("cannot start the checkout service")?;
    app.run_until_stopped(checkout_contract::shutdown::signal())
        .await
        .context("checkout service failed")
}
