//! `checkout-bench <start|ledger|worker|e2e|watch|tail|scale|stripe-tls|all> [options]`: parses the
//! command line (exit 64 with the usage when it is bad), runs the scenario,
//! prints its table and writes its JSON.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Internal: the gateway process of the `watch` scenario.
    if args.first().map(String::as_str) == Some("serve-gateway") {
        return match bench::scenarios::watch::serve_gateway().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("serve-gateway: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let (scenario, options) = match bench::Options::parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}\n{}", bench::options::USAGE);
            return ExitCode::from(64);
        }
    };
    match bench::run(scenario, &options).await {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("checkout-bench {}: {e:#}", scenario.name());
            ExitCode::FAILURE
        }
    }
}
