//! `stripe-emulator`: reads [`stripe_emulator::Config`] from the command
//! line and environment (`--help` lists every variable; exit 64 on bad usage
//! or listing every bad variable), serves until SIGINT/SIGTERM.

use anyhow::Context as _;
use stripe_emulator::{Config, Emulator};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let env = checkout_contract::cli::parse(
        "stripe-emulator",
        "A local Stripe: Checkout Sessions, hosted payment pages, signed webhooks, injected faults.",
        env!("CARGO_PKG_VERSION"),
        stripe_emulator::config::SETTINGS,
    );
    let telemetry = checkout_contract::telemetry::init("info");
    let served = async {
        let config = match Config::from_reader(env) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                std::process::exit(64);
            }
        };
        let emulator = Emulator::build(config)
            .await
            .context("starting the Stripe emulator")?;
        tracing::info!(api_base = %emulator.api_base(), "STRIPE_API_BASE for clients");
        emulator
            .run_until_stopped(checkout_contract::shutdown::signal())
            .await
            .context("serving")?;
        Ok(())
    }
    .await;
    // The spans still batched go out before the exit.
    telemetry.shutdown().await;
    served
}
