//! `checkout-stack`: see the crate docs (`stack/src/lib.rs`).

use std::process::ExitCode;
use std::time::Duration;

use checkout_contract::env::EnvReader;
use checkout_contract::kafka::KafkaConfig;
use stack::{StackConfig, banner, dlq, monitor, system, token};

const USAGE: &str = "usage:
  checkout-stack                                    run the whole system
  checkout-stack topics                             list topics (kafka-topics.sh --list)
  checkout-stack tail TOPIC [--from-beginning] [--max-messages N] [--timeout-ms MS]
                                                    print a topic's events (kafka-console-consumer.sh)
  checkout-stack lag GROUP [--topic TOPIC]...       a group's offsets and lag (kafka-consumer-groups.sh --describe)
  checkout-stack dlq replay DLQ-TOPIC [--dry-run] [--to TOPIC]
                                                    send dead-lettered records back to their topic (dlq --help)
  checkout-stack token --user ID [--role user|service] [--ttl-secs N]
                                                    print a bearer token signed with JWT_SECRET (token --help)
The Kafka subcommands talk to KAFKA_BOOTSTRAP_SERVERS (default 127.0.0.1:9092, the embedded broker).";

/// Not `#[tokio::main]`: its runtime would wait without end for a blocking
/// call into a broker that is gone (see `checkout_contract::shutdown::block_on`).
fn main() -> ExitCode {
    checkout_contract::shutdown::block_on(async_main()).unwrap_or_else(|e| {
        eprintln!("checkout-stack: cannot start the async runtime: {e}");
        ExitCode::FAILURE
    })
}

async fn async_main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // The system logs at info; the monitoring subcommands print only their answer.
    checkout_contract::telemetry::init(if args.is_empty() { "info" } else { "warn" });
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("{msg}\n\n{USAGE}");
            ExitCode::from(64)
        }
        Err(Failure::Config(msg)) => {
            eprintln!("checkout-stack: {msg}");
            ExitCode::from(64)
        }
        Err(Failure::Other(e)) => {
            eprintln!("checkout-stack: {e:#}");
            ExitCode::FAILURE
        }
    }
}

enum Failure {
    /// Bad arguments: the message, then the usage.
    Usage(String),
    /// Bad settings (exit 64 like every binary's bad configuration).
    Config(String),
    Other(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Other(e.into())
    }
}

fn kafka_config() -> Result<KafkaConfig, Failure> {
    let mut env = EnvReader::from_env();
    let mut config = KafkaConfig::from_env(&mut env, "checkout-stack-monitor");
    if env.optional("KAFKA_BOOTSTRAP_SERVERS").is_none() {
        config.bootstrap_servers = "127.0.0.1:9092".into();
    }
    env.finish().map_err(|e| Failure::Usage(e.to_string()))?;
    Ok(config)
}

async fn run(args: &[String]) -> Result<(), Failure> {
    let (command, rest) = args
        .split_first()
        .map_or(("", &[][..]), |(c, r)| (c.as_str(), r));
    match command {
        "topics" => {
            no_more(rest)?;
            for (name, partitions) in monitor::topics(&kafka_config()?).await? {
                println!("{name}\tpartitions={partitions}");
            }
            Ok(())
        }
        "tail" => {
            let (topic, flags) = rest
                .split_first()
                .ok_or_else(|| Failure::Usage("tail needs a TOPIC".into()))?;
            let mut options = monitor::TailOptions::default();
            let mut flags = flags.iter();
            while let Some(flag) = flags.next() {
                match flag.as_str() {
                    "--from-beginning" => options.from_beginning = true,
                    "--max-messages" => options.max_messages = Some(number(flag, flags.next())?),
                    "--timeout-ms" => {
                        options.timeout = Some(Duration::from_millis(number(flag, flags.next())?))
                    }
                    other => return Err(Failure::Usage(format!("unknown flag {other}"))),
                }
            }
            monitor::tail(&kafka_config()?, topic, &options, std::io::stdout()).await?;
            Ok(())
        }
        "lag" => {
            let (group, flags) = rest
                .split_first()
                .ok_or_else(|| Failure::Usage("lag needs a GROUP".into()))?;
            let mut topics = Vec::new();
            let mut flags = flags.iter();
            while let Some(flag) = flags.next() {
                match (flag.as_str(), flags.next()) {
                    ("--topic", Some(t)) => topics.push(t.clone()),
                    _ => return Err(Failure::Usage(format!("unknown flag {flag}"))),
                }
            }
            if topics.is_empty() {
                topics = monitor::default_topics_of(group);
            }
            println!(
                "{:<20} {:<24} {:>9} {:>14} {:>14} {:>8}",
                "GROUP", "TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"
            );
            for row in monitor::lag(&kafka_config()?, group, &topics).await? {
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
        "dlq" => match dlq::parse_args(rest).map_err(Failure::Usage)? {
            dlq::Command::Help => {
                println!("{}", dlq::USAGE);
                Ok(())
            }
            dlq::Command::Replay { dlq_topic, options } => {
                dlq::replay(&kafka_config()?, &dlq_topic, &options, std::io::stdout()).await?;
                Ok(())
            }
        },
        "token" => match token::parse_args(rest).map_err(Failure::Usage)? {
            token::Command::Help => {
                println!("{}", token::USAGE);
                Ok(())
            }
            token::Command::Issue(request) => {
                let secret = EnvReader::from_env().optional("JWT_SECRET");
                let jwt = token::issue(&request, secret).map_err(|e| {
                    Failure::Config(format!(
                        "{e} (the secret the gateway and blazing_sun verify tokens with)"
                    ))
                })?;
                println!("{jwt}");
                Ok(())
            }
        },
        "" => {
            let config = StackConfig::from_env().map_err(|e| Failure::Usage(e.to_string()))?;
            let running = system::start(config).await?;
            println!("{}", banner::banner(&running));
            running
                .run_until_stopped(checkout_contract::shutdown::signal())
                .await?;
            Ok(())
        }
        other => Err(Failure::Usage(format!("unknown command {other:?}"))),
    }
}

fn no_more(rest: &[String]) -> Result<(), Failure> {
    match rest.first() {
        Some(extra) => Err(Failure::Usage(format!("unexpected argument {extra:?}"))),
        None => Ok(()),
    }
}

fn number<T: std::str::FromStr>(flag: &str, value: Option<&String>) -> Result<T, Failure> {
    value
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| Failure::Usage(format!("{flag} needs a number")))
}
