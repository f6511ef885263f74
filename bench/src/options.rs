//! The command line: `checkout-bench <start|ledger|worker|e2e|watch|tail|scale|stripe-tls|all> [options]`
//! ([`Cli`], clap): every scenario is a subcommand with its own `--help`;
//! the options go before or after it; bad usage exits 64.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use testkit::broker::{BrokerKind, Storage};

use crate::infra::BrokerChoice;
use crate::load::Rate;
use crate::scenarios::scale::{ScaleOptions, StripeLimit};

/// Measures every hot path of the checkout system against side-by-side
/// baselines, on real parts (docs/benchmarks.md). Prints a table and writes
/// <scenario>.json.
#[derive(Debug, Parser)]
#[command(name = "checkout-bench", version)]
pub struct Cli {
    #[command(subcommand)]
    pub scenario: Scenario,
    #[command(flatten)]
    pub flags: Flags,
}

/// The options, each valid with every scenario, before or after it.
#[derive(Debug, Default, clap::Args)]
pub struct Flags {
    /// A second or so per scenario and fewer load levels: proves it runs, measures nothing.
    #[arg(long, global = true)]
    pub smoke: bool,
    /// How long each measured cell runs, in seconds [default: 3].
    #[arg(long, global = true, value_name = "SECS", value_parser = positive_secs)]
    pub duration: Option<Duration>,
    /// The broker [default: TEST_BROKER, else nisshi].
    #[arg(long, global = true, value_name = "nisshi|tansu", value_parser = broker_kind)]
    pub broker: Option<BrokerKind>,
    /// The broker's storage: sqlite, the durable one the tests use, or memory [default: sqlite].
    #[arg(long, global = true, value_name = "sqlite|memory", value_parser = storage)]
    pub broker_storage: Option<Storage>,
    /// The PostgreSQL admin URL a fresh database is created on [default: TEST_DATABASE_URL].
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// Where <scenario>.json goes [default: target/bench].
    #[arg(long, global = true, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// ledger: the backlog blazing_sun consumes [default: 2000].
    #[arg(long, global = true, value_name = "N", value_parser = positive_count, help_heading = "Scenario options")]
    pub ledger_events: Option<usize>,
    /// watch: the stream counts [default: 1000,10000,50000].
    #[arg(long, global = true, value_name = "N,N", value_delimiter = ',', value_parser = positive_count, help_heading = "Scenario options")]
    pub watch_streams: Vec<usize>,
    /// watch: without its plain consumer, to see what that costs the gateway; start: StartCheckout alone, without the floors (to profile it).
    #[arg(long, global = true, help_heading = "Scenario options")]
    pub no_baseline: bool,
    /// watch: librdkafka settings laid over the plain consumer's.
    #[arg(long, global = true, value_name = "key=value,...", value_delimiter = ',', value_parser = key_value, help_heading = "Scenario options")]
    pub consumer_set: Vec<(String, String)>,
    /// start: the open loop at these rates, calls/s or shares of the closed loop's capacity.
    #[arg(long, global = true, value_name = "N|P%,...", value_delimiter = ',', value_parser = Rate::parse, help_heading = "Scenario options")]
    pub rate: Vec<Rate>,
    /// start: the closed loop's concurrency levels [default: 1,16,64,256].
    #[arg(long, global = true, value_name = "N,N", value_delimiter = ',', value_parser = positive_count, help_heading = "Scenario options")]
    pub concurrency: Vec<usize>,
    /// start: the gateway's GATEWAY_REQUESTS_TAIL_WAIT_MS, one table each on a fresh broker, in turn [default: the gateway's].
    #[arg(long, global = true, value_name = "MS,...", value_delimiter = ',', value_parser = positive_millis, help_heading = "Scenario options")]
    pub requests_tail_wait: Vec<Duration>,
    /// start: the gateway's GATEWAY_PRODUCE_LINGER_MS (also the raw floor's), one table each with every --requests-tail-wait [default: the gateway's].
    #[arg(long, global = true, value_name = "MS,...", value_delimiter = ',', value_parser = millis, help_heading = "Scenario options")]
    pub linger: Vec<Duration>,
    /// scale: worker process counts, 1 to 8.
    #[arg(long, global = true, value_name = "N,N", value_delimiter = ',', value_parser = process_count, help_heading = "Scenario options")]
    pub scale_workers: Vec<usize>,
    /// scale: gateway process counts, 1 to 8.
    #[arg(long, global = true, value_name = "N,N", value_delimiter = ',', value_parser = process_count, help_heading = "Scenario options")]
    pub scale_gateways: Vec<usize>,
    /// scale: Stripe budgets, lifted or requests per second.
    #[arg(long, global = true, value_name = "lifted|N,...", value_delimiter = ',', value_parser = StripeLimit::parse, help_heading = "Scenario options")]
    pub scale_limits: Vec<StripeLimit>,
    /// scale: the measured window of each configuration, in seconds.
    #[arg(long, global = true, value_name = "SECS", value_parser = positive_secs, help_heading = "Scenario options")]
    pub scale_window: Option<Duration>,
}

fn positive_secs(raw: &str) -> Result<Duration, String> {
    match raw.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs > 0.0 => Ok(Duration::from_secs_f64(secs)),
        _ => Err("a positive number of seconds".into()),
    }
}

fn millis(raw: &str) -> Result<Duration, String> {
    raw.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| "a number of milliseconds".into())
}

fn positive_millis(raw: &str) -> Result<Duration, String> {
    match millis(raw) {
        Ok(d) if !d.is_zero() => Ok(d),
        _ => Err("a positive number of milliseconds".into()),
    }
}

fn positive_count(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("a positive count".into()),
    }
}

fn process_count(raw: &str) -> Result<usize, String> {
    match raw.trim().parse::<usize>() {
        Ok(n) if (1..=8).contains(&n) => Ok(n),
        _ => Err("a count from 1 to 8".into()),
    }
}

fn broker_kind(raw: &str) -> Result<BrokerKind, String> {
    match raw {
        "nisshi" => Ok(BrokerKind::Nisshi),
        "tansu" => Ok(BrokerKind::Tansu),
        _ => Err("nisshi or tansu".into()),
    }
}

fn storage(raw: &str) -> Result<Storage, String> {
    match raw {
        "sqlite" => Ok(Storage::Sqlite),
        "memory" => Ok(Storage::Memory),
        _ => Err("sqlite or memory".into()),
    }
}

fn key_value(raw: &str) -> Result<(String, String), String> {
    raw.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| "key=value".into())
}

/// One subcommand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
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
    /// fetching from the broker), to see what that costs the gateway;
    /// `start` without its floors, StartCheckout alone (to profile it).
    pub no_baseline: bool,
    /// `--rate N|P%,...`: `start`'s open loop at these rates (calls/s, or
    /// shares of the closed loop's capacity measured first in the same run).
    pub rates: Vec<Rate>,
    /// `--concurrency N,...`: `start`'s closed-loop levels (default
    /// 1,16,64,256; the smoke run 1,16).
    pub concurrency: Vec<usize>,
    /// `--requests-tail-wait MS,...`: `start` once per value of the
    /// gateway's `requests_tail_wait` (default: once, with the gateway's).
    pub requests_tail_waits: Vec<Duration>,
    /// `--linger MS,...`: `start` once per value of the gateway's
    /// `produce_linger` (and each `--requests-tail-wait`).
    pub lingers: Vec<Duration>,
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
            requests_tail_waits: Vec::new(),
            lingers: Vec::new(),
            concurrency: crate::scenarios::start::CONCURRENCY.to_vec(),
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
            requests_tail_waits: Vec::new(),
            lingers: Vec::new(),
            concurrency: crate::scenarios::start::CONCURRENCY[..2].to_vec(),
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
    /// clap's: what is wrong, the usage, a suggestion for a typo.
    pub fn parse(args: &[String]) -> Result<(Scenario, Options), clap::Error> {
        let cli = Cli::try_parse_from(
            std::iter::once("checkout-bench").chain(args.iter().map(String::as_str)),
        )?;
        Ok((cli.scenario, cli.flags.options()))
    }
}

impl Flags {
    /// The options: the defaults (the smoke ones with `--smoke`), then
    /// every option given.
    pub fn options(&self) -> Options {
        let mut o = Options::default();
        if self.smoke {
            o.smoke = true;
            o.cell = Duration::from_millis(250);
            o.concurrency.truncate(2);
            o.scale = ScaleOptions::smoke();
        }
        o.cell = self.duration.unwrap_or(o.cell);
        o.broker.kind = self.broker.unwrap_or(o.broker.kind);
        o.broker.storage = self.broker_storage.unwrap_or(o.broker.storage);
        o.database_url.clone_from(&self.database_url);
        o.out_dir = self.out.clone().unwrap_or(o.out_dir);
        o.ledger_events = self.ledger_events.unwrap_or(o.ledger_events);
        o.no_baseline = self.no_baseline;
        let given = |list: &[usize], default: Vec<usize>| {
            if list.is_empty() {
                default
            } else {
                list.to_vec()
            }
        };
        o.watch_streams = given(&self.watch_streams, o.watch_streams);
        o.concurrency = given(&self.concurrency, o.concurrency);
        o.scale.workers = given(&self.scale_workers, o.scale.workers);
        o.scale.gateways = given(&self.scale_gateways, o.scale.gateways);
        o.consumer_set.clone_from(&self.consumer_set);
        o.rates.clone_from(&self.rate);
        o.requests_tail_waits.clone_from(&self.requests_tail_wait);
        o.lingers.clone_from(&self.linger);
        if !self.scale_limits.is_empty() {
            o.scale.limits.clone_from(&self.scale_limits);
        }
        o.scale.window = self.scale_window.unwrap_or(o.scale.window);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<(Scenario, Options), String> {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        Options::parse(&args).map_err(|e| e.to_string())
    }

    #[test]
    fn options_go_before_or_after_the_scenario() {
        let (scenario, o) = parse(&[
            "--smoke",
            "scale",
            "--scale-workers",
            "1,3",
            "--scale-limits",
            "lifted,25",
        ])
        .unwrap();
        assert_eq!(scenario, Scenario::Scale);
        assert!(o.smoke);
        assert_eq!(o.cell, Duration::from_millis(250));
        assert_eq!(o.scale.workers, vec![1, 3]);
        assert_eq!(o.scale.gateways, ScaleOptions::smoke().gateways);
        assert_eq!(
            o.scale.limits,
            vec![StripeLimit::Lifted, StripeLimit::PerSec(25)]
        );
        let (scenario, o) =
            parse(&["all", "--broker-storage", "memory", "--duration", "4"]).unwrap();
        assert_eq!(scenario, Scenario::All);
        assert_eq!(o.broker.storage, Storage::Memory);
        assert_eq!(o.cell, Duration::from_secs(4));
        let (scenario, o) = parse(&["start", "--rate", "25%,500"]).unwrap();
        assert_eq!(scenario, Scenario::Start);
        assert_eq!(o.rates, vec![Rate::OfCapacity(0.25), Rate::PerSec(500.0)]);
        let (_, o) = parse(&[
            "watch",
            "--watch-streams",
            "10,20",
            "--consumer-set",
            "fetch.wait.max.ms=5",
            "--no-baseline",
        ])
        .unwrap();
        assert_eq!(o.watch_streams, vec![10, 20]);
        assert_eq!(
            o.consumer_set,
            vec![("fetch.wait.max.ms".to_owned(), "5".to_owned())]
        );
        assert!(o.no_baseline);
        assert_eq!(parse(&["stripe-tls"]).unwrap().0, Scenario::StripeTls);
    }

    #[test]
    fn start_takes_its_levels_and_the_gateway_settings_to_compare() {
        let (_, o) = parse(&[
            "start",
            "--concurrency",
            "64",
            "--requests-tail-wait",
            "10,250",
            "--linger",
            "0,5",
        ])
        .unwrap();
        assert_eq!(o.concurrency, vec![64]);
        let ms = Duration::from_millis;
        assert_eq!(o.requests_tail_waits, vec![ms(10), ms(250)]);
        assert_eq!(o.lingers, vec![ms(0), ms(5)]);
        assert_eq!(parse(&["start"]).unwrap().1.concurrency, [1, 16, 64, 256]);
        assert_eq!(parse(&["--smoke", "start"]).unwrap().1.concurrency, [1, 16]);
    }

    #[test]
    fn bad_arguments_are_explained() {
        for (args, needle) in [
            (&[][..], "Usage: checkout-bench"),
            (&["strat"][..], "'start'"),
            (
                &["start", "--rate", "fast"][..],
                "a rate is calls per second",
            ),
            (
                &["scale", "--scale-workers", "9"][..],
                "a count from 1 to 8",
            ),
            (&["ledger", "--ledger-events", "0"][..], "a positive count"),
            (
                &["e2e", "--duration", "0"][..],
                "a positive number of seconds",
            ),
            (&["e2e", "--broker", "kafka"][..], "nisshi or tansu"),
            (&["e2e", "--consumer-set", "x"][..], "key=value"),
            (
                &["start", "--requests-tail-wait", "0"][..],
                "a positive number of milliseconds",
            ),
            (
                &["start", "--linger", "soon"][..],
                "a number of milliseconds",
            ),
            (&["e2e", "--smok"][..], "similar argument exists: '--smoke'"),
        ] {
            let err = parse(args).unwrap_err();
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
}
