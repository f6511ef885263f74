//! `stripe-emulator`: the emulator ([`stripe_emulator::Emulator`]) until
//! SIGINT/SIGTERM, with the command line, configuration and tracing every
//! service binary shares (`checkout_contract::service_main`).

use std::process::ExitCode;

use anyhow::Context as _;
use checkout_contract::service_main::{self, Binary};
use stripe_emulator::{Config, Emulator};

fn main() -> ExitCode {
    let binary = Binary {
        name: "stripe-emulator",
        about: "A local Stripe: Checkout Sessions, hosted payment pages, signed webhooks, injected faults.",
        version: env!("CARGO_PKG_VERSION"),
        settings: stripe_emulator::config::SETTINGS,
    };
    service_main::run(binary, Config::from_reader, |config| async {
        let emulator = Emulator::build(config)
            .await
            .context("starting the Stripe emulator")?;
        tracing::info!(api_base = %emulator.api_base(), "STRIPE_API_BASE for clients");
        emulator
            .run_until_stopped(checkout_contract::shutdown::signal())
            .await
            .context("serving")?;
        Ok(())
    })
}
