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
use checkout_contract::shutdown::signal;

const USAGE: &str = "usage: fault-node checkout|blazing_sun|gateway";

/// Not `#[tokio::main]`, like the services' own binaries: its runtime would
/// wait without end for a blocking call into a broker that is gone (see
/// `checkout_contract::shutdown::block_on`).
fn main() -> anyhow::Result<ExitCode> {
    checkout_contract::shutdown::block_on(run()).context("cannot start the async runtime")?
}

async fn run() -> anyhow::Result<ExitCode> {
    let telemetry = checkout_contract::telemetry::init("info");
    let served = async {
        let service = std::env::args().nth(1).unwrap_or_default();
        match service.as_str() {
            "checkout" => {
                let config = match checkout::Config::from_env() {
                    Ok(config) => config,
                    Err(e) => return Ok(bad_config("checkout", &e)),
                };
                let app = checkout::Application::build(config)
                    .await
                    .context("cannot start checkout")?;
                app.run_until_stopped(signal())
                    .await
                    .context("checkout failed")?;
            }
            "blazing_sun" => {
                let config = match blazing_sun::Config::from_env() {
                    Ok(config) => config,
                    Err(e) => return Ok(bad_config("blazing_sun", &e)),
                };
                let app = blazing_sun::Application::build(config)
                    .await
                    .context("cannot start blazing_sun")?;
                app.run_until_stopped(signal())
                    .await
                    .context("blazing_sun failed")?;
            }
            "gateway" => {
                let config = match gateway::Config::from_env() {
                    Ok(config) => config,
                    Err(e) => return Ok(bad_config("gateway", &e)),
                };
                let gateway = gateway::Gateway::build(config)
                    .await
                    .context("cannot start the gateway")?;
                gateway
                    .run_until_stopped(signal())
                    .await
                    .context("gateway failed")?;
            }
            other => {
                eprintln!("fault-node: unknown service {other:?}; {USAGE}");
                return Ok(ExitCode::from(64));
            }
        }
        Ok(ExitCode::SUCCESS)
    }
    .await;
    // The spans still batched go out before the exit.
    telemetry.shutdown().await;
    served
}

fn bad_config(service: &str, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("{service}: {e}");
    ExitCode::from(64)
}
