//! `fault-node`: runs one service of the checkout system from its library,
//! configured from the environment exactly like that service's own binary
//! (`Config::from_env`), so the fault and scale suites (`tests/`) can
//! SIGKILL it as a real process and start it again. See `src/lib.rs` for
//! the crate's layout.
//!
//! Exit codes: 64 for a bad configuration or an unknown service, 1 when the
//! service fails, 0 after SIGINT/SIGTERM.

use std::process::ExitCode;

use anyhow::Context as _;
use checkout_contract::service_main::serve_with;
use checkout_contract::shutdown::signal;

const USAGE: &str = "usage: fault-node checkout|blazing_sun|gateway";

/// Configuration, tracing, exit codes and the flush on exit as in the
/// services' own binaries (`checkout_contract::service_main`).
fn main() -> ExitCode {
    match std::env::args().nth(1).unwrap_or_default().as_str() {
        "checkout" => serve_with("checkout", checkout::Config::from_env(), |config| async {
            let app = checkout::Application::build(config)
                .await
                .context("cannot start checkout")?;
            app.run_until_stopped(signal())
                .await
                .context("checkout failed")?;
            Ok(())
        }),
        "blazing_sun" => serve_with(
            "blazing_sun",
            blazing_sun::Config::from_env(),
            |config| async {
                let app = blazing_sun::Application::build(config)
                    .await
                    .context("cannot start blazing_sun")?;
                app.run_until_stopped(signal())
                    .await
                    .context("blazing_sun failed")?;
                Ok(())
            },
        ),
        "gateway" => serve_with("gateway", gateway::Config::from_env(), |config| async {
            let gateway = gateway::Gateway::build(config)
                .await
                .context("cannot start the gateway")?;
            gateway
                .run_until_stopped(signal())
                .await
                .context("gateway failed")?;
            Ok(())
        }),
        other => {
            eprintln!("fault-node: unknown service {other:?}; {USAGE}");
            ExitCode::from(64)
        }
    }
}
