//! The `blazing_sun` binary: [`blazing_sun::Application`] until
//! SIGINT/SIGTERM, with the command line, configuration and tracing every
//! service binary shares (`checkout_contract::service_main`).

use std::process::ExitCode;

use anyhow::Context as _;
use blazing_sun::{Application, Config};
use checkout_contract::service_main::{self, Binary};

fn main() -> ExitCode {
    let binary = Binary {
        name: "blazing_sun",
        about: "Balances: credits checkout.finished into the ledger, serves the balance API and page.",
        version: env!("CARGO_PKG_VERSION"),
        settings: blazing_sun::config::SETTINGS,
    };
    service_main::run(binary, Config::from_reader, |config| async {
        let app = Application::build(config)
            .await
            .context("cannot start blazing_sun")?;
        tracing::info!(http_addr = %app.http_addr(), "listening");
        app.run_until_stopped(checkout_contract::shutdown::signal())
            .await
            .context("blazing_sun stopped with an error")?;
        Ok(())
    })
}
