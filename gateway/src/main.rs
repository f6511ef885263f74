//! The `gateway` binary: the command line and environment (`--help` lists
//! every variable; exit 64 on bad usage or listing every bad variable),
//! tracing, then [`gateway::Gateway`] until SIGINT/SIGTERM.

use anyhow::Context as _;
use checkout_contract::env::EnvReader;

/// Not `#[tokio::main]`: its runtime would wait without end for a blocking
/// call into a broker that is gone (see `checkout_contract::shutdown::block_on`).
fn main() -> anyhow::Result<()> {
    let env = checkout_contract::cli::parse(
        "gateway",
        "The checkout gRPC API: StartCheckout, WatchCheckout, GetCheckout over Kafka.",
        env!("CARGO_PKG_VERSION"),
        gateway::config::SETTINGS,
    );
    checkout_contract::shutdown::block_on(run(env)).context("cannot start the async runtime")?
}

async fn run(env: EnvReader) -> anyhow::Result<()> {
    let telemetry = checkout_contract::telemetry::init("info");
    let served = async {
        let config = match gateway::Config::from_reader(env) {
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
    .await;
    // The spans still batched go out before the exit.
    telemetry.shutdown().await;
    served
}
