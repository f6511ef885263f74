//! `checkout-bench <start|ledger|worker|e2e|watch|tail|scale|stripe-tls|all> [options]`: parses the
//! command line (clap: `--help` per scenario; exit 64 with the usage when it
//! is bad), runs the scenario, prints its table and writes its JSON.

use std::process::ExitCode;

use clap::Parser as _;

#[tokio::main]
async fn main() -> ExitCode {
    // Internal: the gateway process of the `watch` scenario.
    if std::env::args().nth(1).as_deref() == Some("serve-gateway") {
        return match bench::scenarios::watch::serve_gateway().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("serve-gateway: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = bench::options::Cli::try_parse().unwrap_or_else(|e| checkout_contract::cli::exit(&e));
    let options = cli.flags.options();
    match bench::run(cli.scenario, &options).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("checkout-bench {}: {e:#}", cli.scenario.name());
            ExitCode::FAILURE
        }
    }
}
