//! The `checkout` binary: read the command line and environment (`--help`
//! lists every variable; exit 64 on bad usage or listing every bad
//! variable), set up tracing, build the service, run it until SIGINT/SIGTERM.

use anyhow::Context;
use checkout_contract::env::EnvReader;

/// Not `#[tokio::main]`: its runtime would wait without end for a blocking
/// call into a broker that is gone (see `checkout_contract::shutdown::block_on`).
fn main() -> anyhow::Result<()> {
    let env = checkout_contract::cli::parse(
        "checkout",
        "The checkout worker (checkout.requests -> Stripe Checkout Sessions) and Stripe's webhook.",
        env!("CARGO_PKG_VERSION"),
        checkout::config::SETTINGS,
    );
    checkout_contract::shutdown::block_on(run(env)).context("cannot start the async runtime")?
}

async fn run(env: EnvReader) -> anyhow::Result<()> {
    let telemetry = checkout_contract::telemetry::init("info");
    let served = async {
        let config = match checkout::Config::from_reader(env) {
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
    .await;
    // The spans still batched go out before the exit.
    telemetry.shutdown().await;
    served
}
