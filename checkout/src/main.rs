//! The `checkout` binary: the worker and the webhook
//! ([`checkout::Application`]) until SIGINT/SIGTERM, with the command line,
//! configuration and tracing every service binary shares
//! (`checkout_contract::service_main`).

use std::process::ExitCode;

use anyhow::Context as _;
use checkout_contract::service_main::{self, Binary};

fn main() -> ExitCode {
    let binary = Binary {
        name: "checkout",
        about: "The checkout worker (checkout.requests -> Stripe Checkout Sessions) and Stripe's webhook.",
        version: env!("CARGO_PKG_VERSION"),
        settings: checkout::config::SETTINGS,
    };
    service_main::run(binary, checkout::Config::from_reader, |config| async {
        let app = checkout::Application::build(config)
            .await
            .context("cannot start the checkout service")?;
        app.run_until_stopped(checkout_contract::shutdown::signal())
            .await
            .context("checkout service failed")?;
        Ok(())
    })
}
