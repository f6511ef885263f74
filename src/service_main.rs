//! The `main` every service binary shares (gateway, checkout, blazing_sun,
//! stripe-emulator): the command line and environment through
//! [`crate::cli::parse`] (`--help`, `--version`, exit 64 on bad usage), the
//! typed configuration (exit 64 listing every bad variable), tracing
//! ([`crate::telemetry::init`]), the service until it returns (it waits for
//! SIGINT/SIGTERM, [`crate::shutdown::signal`]), then the last spans flushed.
//! Each binary's `main.rs` says only what is its own: its name, its
//! settings, how to read its config and how to serve it.

use std::fmt::Display;
use std::process::ExitCode;

use crate::cli::{self, EXIT_USAGE, Group};
use crate::env::EnvReader;

/// What `--help` and `--version` say of a binary.
#[derive(Debug, Clone, Copy)]
pub struct Binary {
    /// The binary's name, also the prefix of its error lines.
    pub name: &'static str,
    /// One line on what it is.
    pub about: &'static str,
    /// `env!("CARGO_PKG_VERSION")` of the binary's crate.
    pub version: &'static str,
    /// Its settings, as `--help` lists them.
    pub settings: &'static [Group],
}

/// An error a service stops with: printed as `<name>: <error>` with its causes.
pub type ServeError = Box<dyn std::error::Error + Send + Sync>;

/// Runs a service binary: reads its configuration with `config`, then
/// `serve`s it on a multi-threaded runtime ([`crate::shutdown::block_on`],
/// not `#[tokio::main]`, whose runtime would wait without end for a blocking
/// call into a broker that is gone).
///
/// Exit codes: 0 when `serve` returns `Ok`, 64 for bad usage or
/// configuration, 1 when the service cannot start or fails.
pub fn run<C, E, F>(
    binary: Binary,
    config: impl FnOnce(EnvReader) -> Result<C, E>,
    serve: impl FnOnce(C) -> F,
) -> ExitCode
where
    E: Display,
    F: Future<Output = Result<(), ServeError>>,
{
    let env = cli::parse(binary.name, binary.about, binary.version, binary.settings);
    serve_with(binary.name, config(env), serve)
}

/// [`run`] once the configuration is read (`fault-node`, which picks the
/// service by its first argument, comes in here): exit 64 on a bad
/// `config`, else tracing, `serve`, the last spans flushed. `name` prefixes
/// the error lines.
pub fn serve_with<C, E, F>(name: &str, config: Result<C, E>, serve: impl FnOnce(C) -> F) -> ExitCode
where
    E: Display,
    F: Future<Output = Result<(), ServeError>>,
{
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let served = crate::shutdown::block_on(async {
        let telemetry = crate::telemetry::init("info");
        let served = serve(config).await;
        // The spans still batched go out before the exit.
        telemetry.shutdown().await;
        served
    });
    match served {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("{name}: {}", chain(e.as_ref()));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("{name}: cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line: `outer: inner: ...`.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        // Many errors already end with their cause's text.
        if !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("cannot bind 127.0.0.1:1: {0}")]
    struct Bind(#[source] std::io::Error);

    #[test]
    fn an_error_line_names_each_cause_once() {
        let io = || std::io::Error::from(std::io::ErrorKind::AddrInUse);
        let repeating: ServeError = Box::new(Bind(io()));
        assert_eq!(
            chain(repeating.as_ref()),
            format!("cannot bind 127.0.0.1:1: {}", io())
        );
        let wrapped: ServeError = anyhow::Error::from(Bind(io()))
            .context("cannot start the gateway")
            .into();
        assert_eq!(
            chain(wrapped.as_ref()),
            format!(
                "cannot start the gateway: cannot bind 127.0.0.1:1: {}",
                io()
            )
        );
    }
}
