//! `checkout-stack`: see the crate docs (`stack/src/lib.rs`). The command
//! line is clap's: every subcommand has its own `--help`, every setting is
//! an environment variable or its flag (`stack::config`), and bad usage or
//! configuration exits 64.

use std::process::ExitCode;
use std::time::Duration;

use checkout_contract::cli::{self, EXIT_USAGE};
use checkout_contract::env::EnvReader;
use clap::{ArgMatches, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};
use stack::config::{MONITOR_SETTINGS, SETTINGS, TOKEN_SETTINGS, monitor_kafka};
use stack::{StackConfig, banner, dlq, monitor, system, token};

/// The whole checkout system in one process, and the Kafka tools to watch it.
///
/// Without a command it runs everything on local defaults: an embedded
/// broker, the Stripe emulator, the gateway, the checkout worker and
/// webhook, blazing_sun. The Kafka commands talk to KAFKA_BOOTSTRAP_SERVERS
/// (default 127.0.0.1:9092, the embedded broker).
#[derive(Parser)]
#[command(
    name = "checkout-stack",
    version,
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// List topics (kafka-topics.sh --list).
    Topics,
    /// Print a topic's events (kafka-console-consumer.sh).
    Tail {
        /// The topic to read.
        topic: String,
        /// Read from the first offset instead of the end.
        #[arg(long)]
        from_beginning: bool,
        /// Stop after N messages.
        #[arg(long, value_name = "N")]
        max_messages: Option<usize>,
        /// Stop when no message arrived for MS milliseconds.
        #[arg(long, value_name = "MS")]
        timeout_ms: Option<u64>,
    },
    /// A group's offsets and lag per partition (kafka-consumer-groups.sh --describe).
    Lag {
        /// The consumer group.
        group: String,
        /// A topic to describe, repeatable (default: the topics the group reads).
        #[arg(long = "topic", value_name = "TOPIC")]
        topics: Vec<String>,
    },
    /// Dead-letter topics.
    #[command(subcommand_required = true)]
    Dlq {
        #[command(subcommand)]
        action: Dlq,
    },
    /// Print a bearer token signed with JWT_SECRET.
    Token(token::TokenArgs),
}

#[derive(Subcommand)]
enum Dlq {
    /// Send dead-lettered records back to their topic.
    #[command(long_about = dlq::REPLAY_HELP)]
    Replay(dlq::ReplayArgs),
}

/// The command with the settings' flags: the launcher's on the top level,
/// Kafka's on the Kafka commands, `JWT_SECRET` on `token`.
fn command() -> clap::Command {
    let kafka = |c: clap::Command| cli::with_settings(c, MONITOR_SETTINGS);
    cli::with_settings(Cli::command(), SETTINGS)
        .after_help(cli::after_help())
        .mut_subcommand("topics", kafka)
        .mut_subcommand("tail", kafka)
        .mut_subcommand("lag", kafka)
        .mut_subcommand("dlq", |c| c.mut_subcommand("replay", kafka))
        .mut_subcommand("token", |c| cli::with_settings(c, TOKEN_SETTINGS))
}

/// Not `#[tokio::main]`: its runtime would wait without end for a blocking
/// call into a broker that is gone (see `checkout_contract::shutdown::block_on`).
fn main() -> ExitCode {
    let mut command = command();
    let matches = command
        .try_get_matches_from_mut(std::env::args_os())
        .unwrap_or_else(|e| cli::exit(&e));
    let parsed = Cli::from_arg_matches(&matches).unwrap_or_else(|e| cli::exit(&e));
    let env = settings(&matches, parsed.command.as_ref());
    checkout_contract::shutdown::block_on(async_main(parsed, env, command)).unwrap_or_else(|e| {
        eprintln!("checkout-stack: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

/// The environment with the flags given to the command that runs laid over it.
fn settings(matches: &ArgMatches, command: Option<&Command>) -> EnvReader {
    let vars = std::env::vars();
    match (command, matches.subcommand()) {
        (None, _) | (_, None) => cli::overlay(matches, SETTINGS, vars),
        (Some(Command::Token(_)), Some((_, sub))) => cli::overlay(sub, TOKEN_SETTINGS, vars),
        (Some(Command::Dlq { .. }), Some((_, dlq))) => match dlq.subcommand() {
            Some((_, replay)) => cli::overlay(replay, MONITOR_SETTINGS, vars),
            None => cli::overlay(dlq, &[], vars),
        },
        (Some(_), Some((_, sub))) => cli::overlay(sub, MONITOR_SETTINGS, vars),
    }
}

async fn async_main(cli: Cli, env: EnvReader, mut command: clap::Command) -> ExitCode {
    // The system logs at info; the monitoring subcommands print only their answer.
    let telemetry = checkout_contract::telemetry::init(if cli.command.is_none() {
        "info"
    } else {
        "warn"
    });
    let code = match run(cli.command, env).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(path, msg)) => {
            let mut sub = &mut command;
            for name in path {
                sub = sub.find_subcommand_mut(name).expect("a known subcommand");
            }
            cli::exit(&sub.error(clap::error::ErrorKind::ValueValidation, msg))
        }
        Err(Failure::Config(msg)) => {
            eprintln!("checkout-stack: {msg}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(Failure::Other(e)) => {
            eprintln!("checkout-stack: {e:#}");
            ExitCode::FAILURE
        }
    };
    // The spans still batched go out before the exit.
    telemetry.shutdown().await;
    code
}

enum Failure {
    /// Arguments clap accepted that do not go together: the subcommand
    /// path and the message, shown with that subcommand's usage.
    Usage(&'static [&'static str], String),
    /// Bad settings (exit 64 like every binary's bad configuration).
    Config(String),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Other(e.into())
    }
}

fn kafka(env: EnvReader) -> Result<checkout_contract::kafka::KafkaConfig, Failure> {
    monitor_kafka(env).map_err(|e| Failure::Config(e.to_string()))
}

async fn run(command: Option<Command>, mut env: EnvReader) -> Result<(), Failure> {
    match command {
        Some(Command::Topics) => {
            for (name, partitions) in monitor::topics(&kafka(env)?).await? {
                println!("{name}\tpartitions={partitions}");
            }
            Ok(())
        }
        Some(Command::Tail {
            topic,
            from_beginning,
            max_messages,
            timeout_ms,
        }) => {
            let options = monitor::TailOptions {
                from_beginning,
                max_messages,
                timeout: timeout_ms.map(Duration::from_millis),
            };
            monitor::tail(&kafka(env)?, &topic, &options, std::io::stdout()).await?;
            Ok(())
        }
        Some(Command::Lag { group, topics }) => {
            let topics = if topics.is_empty() {
                monitor::default_topics_of(&group)
            } else {
                topics
            };
            println!(
                "{:<20} {:<24} {:>9} {:>14} {:>14} {:>8}",
                "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"
            );
            for row in monitor::lag(&kafka(env)?, &group, &topics).await? {
                let current = row
                    .committed
                    .map_or_else(|| "-".to_owned(), |c| c.to_string());
                println!(
                    "{group:<20} {:<24} {:>9} {current:>14} {:>14} {:>8}",
                    row.topic, row.partition, row.end, row.lag
                );
            }
            Ok(())
        }
        Some(Command::Dlq {
            action: Dlq::Replay(args),
        }) => {
            dlq::replay(
                &kafka(env)?,
                &args.dlq_topic,
                &args.options(),
                std::io::stdout(),
            )
            .await?;
            Ok(())
        }
        Some(Command::Token(args)) => {
            let request = args
                .request()
                .map_err(|msg| Failure::Usage(&["token"], msg))?;
            let jwt = token::issue(&request, env.optional("JWT_SECRET")).map_err(|e| {
                Failure::Config(format!(
                    "{e} (the secret the gateway and blazing_sun verify tokens with)"
                ))
            })?;
            println!("{jwt}");
            Ok(())
        }
        None => {
            let config =
                StackConfig::from_reader(env).map_err(|e| Failure::Config(e.to_string()))?;
            let running = system::start(config).await?;
            println!("{}", banner::banner(&running));
            running
                .run_until_stopped(checkout_contract::shutdown::signal())
                .await?;
            Ok(())
        }
    }
}
