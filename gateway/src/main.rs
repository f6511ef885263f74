//! The `gateway` binary: [`gateway::Gateway`] until SIGINT/SIGTERM, with the
//! command line, configuration and tracing every service binary shares
//! (`checkout_contract::service_main`).

use std::process::ExitCode;

use anyhow::Context as _;
use checkout_contract::service_main::{self, Binary};

fn main() -> ExitCode {
    let binary = Binary {
        name: "gateway",
        about: "The checkout gRPC API: StartCheckout, WatchCheckout, GetCheckout over Kafka.",
        version: env!("CARGO_PKG_VERSION"),
        settings: gateway::config::SETTINGS,
    };
    service_main::run(binary, gateway::Config::from_reader, |config| async {
        let gateway = gateway::Gateway::build(config)
            .await
            .context("cannot start the gateway")?;
        gateway
            .run_until_stopped(checkout_contract::shutdown::signal())
            .await
            .context("gateway failed")?;
        Ok(())
    })
}
