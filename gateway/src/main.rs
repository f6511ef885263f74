//! The `gateway` binary: configuration from the environment (exit 64 listing
//! every bad variable), tracing, then [`gateway::Gateway`] until SIGINT/SIGTERM.

use anyhow::Context as _;

/// Not `#[tokio::main]`: its runtime would wait without end for a blocking
/// call into a broker that is gone (see `checkout_contract::shutdown::block_on`).
fn main() -> anyhow::Result<()> {
    checkout_contract::shutdown::block_on(run()).context("cannot start the async runtime")?
}

async fn run() -> anyhow::Result<()> {
    checkout_contract::telemetry::init("info");
    let config = match gateway::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gateway: {e}");
            std::process::exit(64);
        }
    };
    let gateway = gateway::Gateway::build(config)
        .await
        .context("cannot start the gateway")?;
    gateway
        .run_until_stopped(checkout_contract::shutdown::signal())
        .await
        .context("gateway failed")
}
