//! The command line: `checkout-bench <start|ledger|worker|e2e|watch|tail|scale|stripe-tls|all> [options]`
//! (see [`USAGE`]). Hand-parsed: a few options do not need a parser crate.

use std::path::PathBuf;
use std::time::Duration;

use testkit::broker::{BrokerKind, Storage};

use crate::infra::BrokerChoice;
use crate::load::Rate;
use crate::scenarios::scale::{ScaleOptions, StripeLimit};

/// The usage line printed with a bad command line.
pub const USAGE: &str = "usage: checkout-bench <start|ledger|worker|e2e|watch|tail|scale|stripe-tls|all> [--smoke] [--duration SECS] \
[--broker nisshi|tansu] [--broker-storage sqlite|memory] [--database-url URL] [--out DIR] [--ledger-events N] \
[--watch-streams N,N] [--no-baseline] [--consumer-set key=value,...] [--rate N|P%,...] \
[--scale-workers N,N] [--scale-gateways N,N] [--scale-limits lifted|N,...] [--scale-window SECS]";

/// One subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// StartCheckout vs raw produce vs a trivial unary RPC.
    Start,
    /// blazing_sun credits/s on SQLite and PostgreSQL vs plain INSERTs.
    Ledger,
    /// Checkout Sessions/s with 300 ms Stripe latency and a 100/s limit.
    Worker,
    /// StartCheckout -> session_created, pay -> success on the stream.
    E2e,
    /// 1k/10k/50k WatchCheckout streams, events at 1,000/s.
    Watch,
    /// The whole flow with 1-3 worker and 1-2 gateway processes.
    Scale,
    /// Checkout Session creates over TLS: a connection per call vs kept ones.
    StripeTls,
    /// What one gateway replica spends tailing both topics, and its index bytes per entry.
    Tail,
    /// Every scenario above but `scale` (minutes, and the service binaries), in turn.
    All,
}

impl Scenario {
    /// The scenarios this one stands for.
    pub fn expand(self) -> Vec<Scenario> {
        match self {
            Scenario::All => vec![
                Scenario::Start,
                Scenario::Ledger,
                Scenario::Worker,
                Scenario::E2e,
                Scenario::Watch,
                Scenario::StripeTls,
                Scenario::Tail,
            ],
            s => vec![s],
        }
    }

    /// The subcommand name, also the JSON file name.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Start => "start",
            Scenario::Ledger => "ledger",
            Scenario::Worker => "worker",
            Scenario::E2e => "e2e",
            Scenario::Watch => "watch",
            Scenario::Scale => "scale",
            Scenario::StripeTls => "stripe-tls",
            Scenario::Tail => "tail",
            Scenario::All => "all",
        }
    }
}

/// How long and where.
#[derive(Debug, Clone)]
pub struct Options {
    /// How long each measured cell runs (one load level of one target).
    pub cell: Duration,
    /// `--smoke`: a second or so per scenario, fewer load levels; proves it runs, measures nothing.
    pub smoke: bool,
    /// `--database-url`: the PostgreSQL admin URL a fresh database is created on
    /// (default `TEST_DATABASE_URL`).
    pub database_url: Option<String>,
    /// `--out`: where `<scenario>.json` goes (default `target/bench`).
    pub out_dir: PathBuf,
    /// `--watch-streams`: the stream counts of `watch` (default 1000,10000,50000).
    pub watch_streams: Vec<usize>,
    /// `--ledger-events`: the backlog blazing_sun consumes in `ledger` (default 2000).
    pub ledger_events: usize,
    /// The executable that serves the gateway for `watch` (`serve-gateway`);
    /// default this process's own.
    pub exe: Option<PathBuf>,
    /// `--consumer-set key=value,...`: librdkafka settings laid over
    /// `tail_config` for `watch`'s plain consumer only (trying consumer
    /// settings against the gateway's, in the same run).
    pub consumer_set: Vec<(String, String)>,
    /// `--broker nisshi|tansu` (default `TEST_BROKER`, else nisshi, the
    /// tests' broker) and `--broker-storage sqlite|memory` (default sqlite,
    /// the durable one the tests use; memory shows what the sqlite storage
    /// costs).
    pub broker: BrokerChoice,
    /// `--no-baseline`: `watch` without its plain consumer (a second client
    /// fetching from the broker), to see what that costs the gateway.
    pub no_baseline: bool,
    /// `--rate N|P%,...`: `start`'s open loop at these rates (calls/s, or
    /// shares of the closed loop's capacity measured first in the same run).
    pub rates: Vec<Rate>,
    /// `--scale-*`: the configurations of `scale`.
    pub scale: ScaleOptions,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            cell: Duration::from_secs(3),
            smoke: false,
            database_url: None,
            out_dir: PathBuf::from("target/bench"),
            watch_streams: vec![1000, 10_000, 50_000],
            ledger_events: 2000,
            exe: None,
            consumer_set: Vec::new(),
            no_baseline: false,
            broker: BrokerChoice {
                kind: BrokerKind::current(),
                storage: Storage::Sqlite,
            },
            rates: Vec::new(),
            scale: ScaleOptions::default(),
        }
    }
}

impl Options {
    /// What the smoke test uses: each cell a fraction of a second.
    pub fn smoke(out_dir: PathBuf) -> Self {
        Self {
            cell: Duration::from_millis(250),
            smoke: true,
            database_url: None,
            out_dir,
            watch_streams: vec![100],
            ledger_events: 300,
            exe: None,
            consumer_set: Vec::new(),
            no_baseline: false,
            broker: BrokerChoice {
                kind: BrokerKind::current(),
                storage: Storage::Sqlite,
            },
            rates: Vec::new(),
            scale: ScaleOptions::smoke(),
        }
    }

    /// Parses `args` (without the program name).
    ///
    /// # Errors
    /// Every problem, one per line.
    pub fn parse(args: &[String]) -> Result<(Scenario, Options), String> {
        let mut options = Options::default();
        let mut scenario = None;
        let mut errors = Vec::new();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.as_str() {
                "start" => scenario = Some(Scenario::Start),
                "ledger" => scenario = Some(Scenario::Ledger),
                "worker" => scenario = Some(Scenario::Worker),
                "e2e" => scenario = Some(Scenario::E2e),
                "watch" => scenario = Some(Scenario::Watch),
                "scale" => scenario = Some(Scenario::Scale),
                "stripe-tls" => scenario = Some(Scenario::StripeTls),
                "tail" => scenario = Some(Scenario::Tail),
                "--rate" => match it
                    .next()
                    .map(|v| v.split(',').map(Rate::parse).collect::<Result<Vec<_>, _>>())
                {
                    Some(Ok(list)) if !list.is_empty() => options.rates = list,
                    Some(Err(e)) => errors.push(format!("--rate {e}")),
                    _ => errors.push("--rate needs N or P% [,...]".to_owned()),
                },
                "--scale-workers" | "--scale-gateways" => match it.next().map(|v| {
                    v.split(',')
                        .map(str::parse::<usize>)
                        .collect::<Result<Vec<_>, _>>()
                }) {
                    Some(Ok(list))
                        if !list.is_empty() && list.iter().all(|&n| (1..=8).contains(&n)) =>
                    {
                        if arg == "--scale-workers" {
                            options.scale.workers = list;
                        } else {
                            options.scale.gateways = list;
                        }
                    }
                    _ => errors.push(format!(
                        "{arg} needs a comma-separated list of counts from 1 to 8"
                    )),
                },
                "--scale-limits" => match it.next().map(|v| {
                    v.split(',')
                        .map(StripeLimit::parse)
                        .collect::<Result<Vec<_>, _>>()
                }) {
                    Some(Ok(list)) if !list.is_empty() => options.scale.limits = list,
                    Some(Err(e)) => errors.push(format!("--scale-limits {e}")),
                    None | Some(Ok(_)) => {
                        errors.push("--scale-limits needs lifted or N [,...]".to_owned())
                    }
                },
                "--scale-window" => match it.next().and_then(|v| v.parse::<f64>().ok()) {
                    Some(secs) if secs > 0.0 => {
                        options.scale.window = Duration::from_secs_f64(secs)
                    }
                    _ => {
                        errors.push("--scale-window needs a positive number of seconds".to_owned())
                    }
                },
                "--ledger-events" => match it.next().and_then(|v| v.parse::<usize>().ok()) {
                    Some(n) if n > 0 => options.ledger_events = n,
                    _ => errors.push("--ledger-events needs a positive count".to_owned()),
                },
                "--watch-streams" => match it.next().map(|v| {
                    v.split(',')
                        .map(str::parse::<usize>)
                        .collect::<Result<Vec<_>, _>>()
                }) {
                    Some(Ok(list)) if !list.is_empty() && list.iter().all(|&n| n > 0) => {
                        options.watch_streams = list
                    }
                    _ => errors.push(
                        "--watch-streams needs a comma-separated list of positive counts"
                            .to_owned(),
                    ),
                },
                "--consumer-set" => match it.next().map(|v| {
                    v.split(',')
                        .map(|kv| {
                            kv.split_once('=')
                                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        })
                        .collect::<Option<Vec<_>>>()
                }) {
                    Some(Some(list)) if !list.is_empty() => options.consumer_set = list,
                    _ => errors.push("--consumer-set needs key=value[,key=value...]".to_owned()),
                },
                "--no-baseline" => options.no_baseline = true,
                "--broker-storage" => match it.next().map(String::as_str) {
                    Some("sqlite") => options.broker.storage = Storage::Sqlite,
                    Some("memory") => options.broker.storage = Storage::Memory,
                    _ => errors.push("--broker-storage needs sqlite or memory".to_owned()),
                },
                "--broker" => match it.next().map(String::as_str) {
                    Some("nisshi") => options.broker.kind = BrokerKind::Nisshi,
                    Some("tansu") => options.broker.kind = BrokerKind::Tansu,
                    _ => errors.push("--broker needs nisshi or tansu".to_owned()),
                },
                "all" => scenario = Some(Scenario::All),
                "--smoke" => {
                    options.smoke = true;
                    options.cell = Duration::from_millis(250);
                    options.scale = ScaleOptions::smoke();
                }
                "--duration" => match it.next().and_then(|v| v.parse::<f64>().ok()) {
                    Some(secs) if secs > 0.0 => options.cell = Duration::from_secs_f64(secs),
                    _ => errors.push("--duration needs a positive number of seconds".to_owned()),
                },
                "--database-url" => match it.next() {
                    Some(url) => options.database_url = Some(url.clone()),
                    None => errors.push("--database-url needs a URL".to_owned()),
                },
                "--out" => match it.next() {
                    Some(dir) => options.out_dir = PathBuf::from(dir),
                    None => errors.push("--out needs a directory".to_owned()),
                },
                other => errors.push(format!("unknown argument {other:?}")),
            }
        }
        if scenario.is_none() {
            errors.push(
                "name a scenario: start | ledger | worker | e2e | watch | tail | scale | stripe-tls | all"
                    .to_owned(),
            );
        }
        match (scenario, errors.is_empty()) {
            (Some(s), true) => Ok((s, options)),
            _ => Err(errors.join("\n")),
        }
    }
}
