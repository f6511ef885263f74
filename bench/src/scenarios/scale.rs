//! `scale`: the whole flow with each service a separate OS process of the
//! project's own binaries (gateway → Kafka → checkout worker → Stripe
//! emulator at 300 ms latency → webhook → Kafka → blazing_sun on
//! PostgreSQL), with 1, 2 and 3 worker processes and 1 and 2 gateways;
//! first with the Stripe limit lifted (what the system itself does as it
//! grows), then at 25/s (`CHECKOUT_STRIPE_RATE_LIMIT`, the account's budget
//! the workers share).
//!
//! Load: a closed loop of customers spread over the gateways; each starts a
//! checkout with `wait_for_session`, pays its session on the emulator (as
//! `e2e` does) and starts the next. A poller reads new ledger rows every
//! 10 ms: a checkout's end-to-end time runs from its StartCheckout call to
//! its credit being visible in the ledger (what `GET /api/v1/balance` lists).
//! Per configuration: a warm-up (rebalance, budget shares), a steady window
//! of sessions/s (the emulator's count), credits/s (ledger rows), the
//! end-to-end p50/p99 of the checkouts started in the window, every
//! process's CPU (`/proc/<pid>/stat` utime+stime over the window), and the
//! most Stripe API requests the emulator saw in one of its one-second
//! windows. Then the customers stop and every paid checkout must be
//! credited before the next configuration starts.
//!
//! Processes are added and removed between configurations (SIGTERM, so a
//! worker leaves its group at once) on one broker, one emulator, one
//! blazing_sun and one database; every worker is restarted for a new
//! Stripe limit. The emulator has one webhook endpoint: the first worker's
//! (production puts a load balancer there).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checkout_contract::auth::{JwtIssuer, Role};
use checkout_contract::secret::Secret;
use checkout_contract::topics::consumer_groups;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::Options;
use crate::infra::{self, Kafka};
use crate::load::Sample;
use crate::report::{Report, f};
use crate::services::{Binaries, Service};

/// The emulator's latency on every API call.
pub const STRIPE_LATENCY: Duration = Duration::from_millis(300);
/// `CHECKOUT_STRIPE_RATE_LIMIT` when the limit is "lifted".
const LIFTED_RATE: u32 = 1_000_000;
const JWT_SECRET: &str = "checkout-bench-scale-jwt-secret";
const WEBHOOK_SECRET: &str = "whsec_checkout_bench_scale";
const STRIPE_KEY: &str = "sk_test_checkout_bench_scale";
/// How often the ledger is read for new credits.
const LEDGER_POLL: Duration = Duration::from_millis(10);

/// The Stripe budget of one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StripeLimit {
    /// A limit no worker reaches.
    Lifted,
    /// `CHECKOUT_STRIPE_RATE_LIMIT` requests per second for the account.
    PerSec(u32),
}

impl StripeLimit {
    /// `lifted` or a positive whole number of requests per second.
    ///
    /// # Errors
    /// Anything else.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.trim() {
            "lifted" => Ok(StripeLimit::Lifted),
            n => match n.parse::<u32>() {
                Ok(n) if n > 0 => Ok(StripeLimit::PerSec(n)),
                _ => Err(format!(
                    "{raw:?}: lifted or a positive number of requests per second"
                )),
            },
        }
    }

    fn rate(self) -> u32 {
        match self {
            StripeLimit::Lifted => LIFTED_RATE,
            StripeLimit::PerSec(n) => n,
        }
    }

    fn label(self) -> String {
        match self {
            StripeLimit::Lifted => "lifted".to_owned(),
            StripeLimit::PerSec(n) => format!("{n}/s"),
        }
    }

    /// The most requests one of the emulator's seconds may see with
    /// `workers` replicas sharing the limit, as `checkout::assignment`
    /// documents it: the limit, plus a fifth of it, plus one call per
    /// replica that owns a partition (the others send nothing).
    fn ceiling(self, workers: usize) -> Option<u32> {
        let StripeLimit::PerSec(n) = self else {
            return None;
        };
        let owners = u32::try_from(workers.min(PARTITIONS)).unwrap_or(u32::MAX);
        Some(n + n / 5 + owners)
    }
}

/// Partitions of the bench's topics (`Kafka::start_seed_names`).
const PARTITIONS: usize = checkout_contract::topics::PARTITIONS as usize;

/// What `scale` runs (`--scale-*`).
#[derive(Debug, Clone)]
pub struct ScaleOptions {
    /// Worker process counts (default 1, 2, 3).
    pub workers: Vec<usize>,
    /// Gateway process counts (default 1, 2).
    pub gateways: Vec<usize>,
    /// One phase per limit, in order (default lifted, then 25/s).
    pub limits: Vec<StripeLimit>,
    /// The measured steady window of each configuration (default 20 s).
    pub window: Duration,
    /// Load before the window, after processes were added or removed (default 5 s).
    pub warmup: Duration,
    /// Customers with the limit lifted (default 128: above what one worker
    /// takes, 64 in flight × 1 / 0.3 s) and with a limit (default 48).
    pub customers_lifted: usize,
    pub customers_limited: usize,
}

impl Default for ScaleOptions {
    fn default() -> Self {
        Self {
            workers: vec![1, 2, 3],
            gateways: vec![1, 2],
            limits: vec![StripeLimit::Lifted, StripeLimit::PerSec(25)],
            window: Duration::from_secs(20),
            warmup: Duration::from_secs(5),
            customers_lifted: 128,
            customers_limited: 48,
        }
    }
}

impl ScaleOptions {
    /// One worker, one gateway, the limit lifted, a few checkouts.
    pub fn smoke() -> Self {
        Self {
            workers: vec![1],
            gateways: vec![1],
            limits: vec![StripeLimit::Lifted],
            window: Duration::from_secs(2),
            warmup: Duration::from_secs(1),
            customers_lifted: 4,
            customers_limited: 4,
        }
    }

    /// Every (workers, gateways) pair, ordered so that each step adds or
    /// removes as few processes as it can (1 gateway: 1, 2, 3 workers;
    /// 2 gateways: 3, 2, 1).
    fn configurations(&self) -> Vec<(usize, usize)> {
        let mut workers = self.workers.clone();
        workers.sort_unstable();
        let mut out = Vec::new();
        for (i, &g) in self.gateways.iter().enumerate() {
            let mut ws = workers.clone();
            if i % 2 == 1 {
                ws.reverse();
            }
            out.extend(ws.into_iter().map(|w| (w, g)));
        }
        out
    }
}

/// The parts every configuration shares.
struct Stage {
    binaries: Binaries,
    kafka: Kafka,
    broker: infra::BrokerChoice,
    emulator: stripe_emulator::Handle,
    /// When the emulator's per-second log starts (its second 0).
    emulator_epoch: Instant,
    blazing_sun: Service,
    credits: Credits,
    bearer: MetadataValue<Ascii>,
    log_dir: tempfile::TempDir,
}

/// Ledger rows as the poller first saw them.
#[derive(Clone, Default)]
struct Credits(Arc<Mutex<CreditLog>>);

#[derive(Default)]
struct CreditLog {
    seen: HashMap<String, Instant>,
    /// When each credit was seen, in order.
    times: Vec<Instant>,
    last_id: i64,
    last_error: Option<String>,
}

impl Credits {
    fn seen(&self, request_id: &str) -> Option<Instant> {
        self.0.lock().expect("lock").seen.get(request_id).copied()
    }

    fn between(&self, from: Instant, to: Instant) -> usize {
        let log = self.0.lock().expect("lock");
        log.times.iter().filter(|t| **t >= from && **t < to).count()
    }

    /// Reads new ledger rows every [`LEDGER_POLL`] until `stop`. Rows are
    /// taken in id order: one blazing_sun process commits its batches one
    /// after another, so ids become visible in order.
    async fn poll(self, database_url: String, stop: Arc<AtomicBool>) {
        let mut pool = None;
        while !stop.load(Ordering::Relaxed) {
            if pool.is_none() {
                pool = sqlx::postgres::PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&database_url)
                    .await
                    .map_err(|e| self.0.lock().expect("lock").last_error = Some(e.to_string()))
                    .ok();
            }
            if let Some(pool) = &pool {
                let last_id = self.0.lock().expect("lock").last_id;
                let rows: Result<Vec<(i64, String)>, _> = sqlx::query_as(
                    "SELECT id, request_id FROM ledger WHERE id > $1 ORDER BY id LIMIT 10000",
                )
                .bind(last_id)
                .fetch_all(pool)
                .await;
                let now = Instant::now();
                let mut log = self.0.lock().expect("lock");
                match rows {
                    Ok(rows) => {
                        for (id, request_id) in rows {
                            log.last_id = id;
                            log.times.push(now);
                            log.seen.insert(request_id, now);
                        }
                    }
                    // The table appears when blazing_sun has migrated.
                    Err(e) => log.last_error = Some(e.to_string()),
                }
            }
            tokio::time::sleep(LEDGER_POLL).await;
        }
    }
}

/// The gateways and workers of the current configuration.
#[derive(Default)]
struct Fleet {
    gateways: Vec<(Service, Channel)>,
    workers: Vec<(Service, SocketAddr)>,
}

impl Fleet {
    async fn stop(&mut self) {
        shrink(&mut self.gateways, 0).await;
        shrink(&mut self.workers, 0).await;
    }
}

/// Stops (SIGTERM) the last processes of `list` until `len` are left.
async fn shrink<T>(list: &mut Vec<(Service, T)>, len: usize) {
    while list.len() > len {
        if let Some((service, _)) = list.pop() {
            service.stop().await;
        }
    }
}

/// One measured configuration.
struct Measured {
    limit: StripeLimit,
    workers: usize,
    gateways: usize,
    customers: usize,
    window: Duration,
    sessions_per_sec: f64,
    credits_per_sec: f64,
    e2e: Sample,
    /// The most API requests in one of the emulator's seconds inside the window.
    max_per_second: u32,
    /// CPU cores (CPU seconds per second of window) per process.
    cpu: Vec<(String, f64)>,
    machine_busy_cores: f64,
    /// Checkouts started in the window that were never credited.
    uncredited: u64,
    errors: u64,
    first_error: Option<String>,
}

/// # Errors
/// When a part cannot start or a configuration fails outright.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let binaries = Binaries::find(options.exe.as_deref())?;
    let admin = infra::postgres_admin_url(options.database_url.as_deref())?;
    let database_url = infra::fresh_postgres(&admin).await?;
    let kafka = Kafka::start_seed_names(options.broker).await?;
    let log_dir = tempfile::tempdir()?;

    let emulator = stripe_emulator::Emulator::build(stripe_emulator::Config::default())
        .await
        .map_err(|e| anyhow::anyhow!("stripe emulator: {e}"))?;
    let emulator_epoch = Instant::now();
    let handle = emulator.handle();
    handle
        .set_faults(stripe_emulator::config::Faults {
            latency_ms: u64::try_from(STRIPE_LATENCY.as_millis())?,
            ..Default::default()
        })
        .map_err(|bad| anyhow::anyhow!("bad faults: {bad:?}"))?;
    let api_base = emulator.api_base();
    let (stop_emulator, emulator_stopped) = tokio::sync::oneshot::channel::<()>();
    let emulator_task = tokio::spawn(emulator.run_until_stopped(async move {
        let _ = emulator_stopped.await;
    }));

    let blazing_sun = Service::spawn(
        &binaries.path("blazing_sun"),
        "blazing_sun",
        &[
            kafka_env(&kafka, options.broker),
            vec![
                ("DATABASE_URL", database_url.clone()),
                ("JWT_SECRET", JWT_SECRET.to_owned()),
                ("BLAZING_SUN_LISTEN", local_addr()),
            ],
        ]
        .concat(),
        log_dir.path(),
    )?;
    let credits = Credits::default();
    let stop_poller = Arc::new(AtomicBool::new(false));
    let poller = tokio::spawn(
        credits
            .clone()
            .poll(database_url.clone(), Arc::clone(&stop_poller)),
    );
    let token = JwtIssuer::new(&Secret::new(JWT_SECRET.to_owned())).issue(
        "checkout-bench",
        Role::Service,
        Duration::from_secs(24 * 3600),
    );
    let mut stage = Stage {
        binaries,
        kafka,
        broker: options.broker,
        emulator: handle,
        emulator_epoch,
        blazing_sun,
        credits,
        bearer: format!("Bearer {token}").parse()?,
        log_dir,
    };

    let mut measured = Vec::new();
    let mut phases = Vec::new();
    let mut result = Ok(());
    'phases: for &limit in &options.scale.limits {
        let mut fleet = Fleet::default();
        let mut marks = Marks::default();
        let phase_from = stage.emulator_epoch.elapsed();
        for (workers, gateways) in options.scale.configurations() {
            let cell = async {
                marks.push(
                    &stage,
                    format!("{workers} workers x {gateways} gateways: processes started/stopped"),
                );
                resize(&mut stage, &mut fleet, limit, workers, gateways, &api_base).await?;
                probe(&stage, &fleet).await?;
                measure(&mut stage, &mut fleet, limit, &options.scale, &mut marks).await
            }
            .await;
            match cell {
                Ok(m) => {
                    println!("{}", summary(&m));
                    measured.push(m);
                }
                Err(e) => {
                    result = Err(e.context(format!(
                        "{} workers, {gateways} gateways, Stripe limit {}",
                        workers,
                        limit.label()
                    )));
                    fleet.stop().await;
                    break 'phases;
                }
            }
        }
        fleet.stop().await;
        phases.push(Phase::of(&stage, limit, phase_from, &marks, options));
    }

    stop_poller.store(true, Ordering::Relaxed);
    let _ = poller.await;
    let Stage { blazing_sun, .. } = stage;
    blazing_sun.stop().await;
    let _ = stop_emulator.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), emulator_task).await;
    result?;
    Ok(report(options, measured, &phases))
}

/// Moments of a phase, in the emulator's seconds, to say when a second was busiest.
#[derive(Default)]
struct Marks(Vec<(f64, String)>);

impl Marks {
    fn push(&mut self, stage: &Stage, what: String) {
        self.0
            .push((stage.emulator_epoch.elapsed().as_secs_f64(), what));
    }

    /// What was going on during second `second`.
    fn during(&self, second: usize) -> String {
        self.0
            .iter()
            .rev()
            .find(|(at, _)| *at <= second as f64 + 1.0)
            .map_or_else(
                || "before the first configuration".to_owned(),
                |(_, w)| w.clone(),
            )
    }
}

/// The Stripe requests of one phase, second by second.
struct Phase {
    limit: StripeLimit,
    /// The emulator's second the phase began in.
    first_second: usize,
    /// Requests in each of the phase's whole seconds after its first (a new
    /// limiter may open with a burst).
    per_second: Vec<u32>,
    max: u32,
    /// What was going on in the busiest second.
    max_during: String,
    /// The most any configuration of the phase may send in one second.
    ceiling: Option<u32>,
}

impl Phase {
    fn of(
        stage: &Stage,
        limit: StripeLimit,
        from: Duration,
        marks: &Marks,
        options: &Options,
    ) -> Self {
        let seconds = stage.emulator.api_requests_per_second();
        let first_second = from.as_secs() as usize;
        let to = (stage.emulator_epoch.elapsed().as_secs() as usize).min(seconds.len());
        let per_second = seconds
            .get((first_second + 1).min(to)..to)
            .unwrap_or_default()
            .to_vec();
        let (busiest, max) = per_second
            .iter()
            .copied()
            .enumerate()
            .max_by_key(|&(_, n)| n)
            .unwrap_or_default();
        Self {
            limit,
            first_second,
            max,
            max_during: marks.during(first_second + 1 + busiest),
            per_second,
            ceiling: options
                .scale
                .workers
                .iter()
                .filter_map(|&w| limit.ceiling(w))
                .max(),
        }
    }
}

/// One checkout through each gateway, start to credit, before the load:
/// a new gateway's tail has caught up, the workers own their partitions,
/// blazing_sun credits (at most 60 s).
async fn probe(stage: &Stage, fleet: &Fleet) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for (gateway, channel) in &fleet.gateways {
        let (request_id, session_id) = loop {
            match super::e2e::start(channel, &stage.bearer).await {
                Ok(ids) => break ids,
                Err(e) if Instant::now() > deadline => {
                    anyhow::bail!("{} answered no session within 60 s: {e}", gateway.name)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        };
        stage
            .emulator
            .pay(&session_id, stripe_emulator::Outcome::Paid)
            .map_err(|e| anyhow::anyhow!("pay: {e:?}"))?;
        while stage.credits.seen(&request_id).is_none() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the probe checkout through {} was not credited within 60 s",
                gateway.name
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// `KAFKA_*` for a service on the bench's broker.
fn kafka_env(kafka: &Kafka, broker: infra::BrokerChoice) -> Vec<(&'static str, String)> {
    vec![
        (
            "KAFKA_BOOTSTRAP_SERVERS",
            kafka.config.bootstrap_servers.clone(),
        ),
        (
            "KAFKA_ENABLE_IDEMPOTENCE",
            broker.kind.supports_idempotence().to_string(),
        ),
    ]
}

fn local_addr() -> String {
    format!("127.0.0.1:{}", testkit::free_port())
}

/// Adds or removes (SIGTERM) gateways and workers until there are
/// `workers` and `gateways`; a new limit restarts every worker.
async fn resize(
    stage: &mut Stage,
    fleet: &mut Fleet,
    limit: StripeLimit,
    workers: usize,
    gateways: usize,
    api_base: &str,
) -> anyhow::Result<()> {
    shrink(&mut fleet.workers, workers).await;
    while fleet.workers.len() < workers {
        let n = fleet.workers.len() + 1;
        let listen = local_addr();
        let worker = Service::spawn(
            &stage.binaries.path("checkout"),
            &format!("checkout {n}"),
            &[
                kafka_env(&stage.kafka, stage.broker),
                vec![
                    ("STRIPE_SECRET_KEY", STRIPE_KEY.to_owned()),
                    ("STRIPE_API_BASE", api_base.to_owned()),
                    ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
                    ("CHECKOUT_WEBHOOK_LISTEN", listen.clone()),
                    ("CHECKOUT_STRIPE_RATE_LIMIT", limit.rate().to_string()),
                ],
            ]
            .concat(),
            stage.log_dir.path(),
        )?;
        fleet.workers.push((worker, listen.parse()?));
    }
    let webhook = fleet.workers[0].1;
    stage.emulator.set_webhook(
        Some(format!("http://{webhook}/webhooks/stripe")),
        Some(WEBHOOK_SECRET.to_owned()),
    );
    shrink(&mut fleet.gateways, gateways).await;
    while fleet.gateways.len() < gateways {
        let n = fleet.gateways.len() + 1;
        let listen = local_addr();
        let mut gateway = Service::spawn(
            &stage.binaries.path("gateway"),
            &format!("gateway {n}"),
            &[
                kafka_env(&stage.kafka, stage.broker),
                vec![
                    ("GATEWAY_LISTEN", listen.clone()),
                    ("GATEWAY_ADMIN_LISTEN", local_addr()),
                    ("JWT_SECRET", JWT_SECRET.to_owned()),
                ],
            ]
            .concat(),
            stage.log_dir.path(),
        )?;
        let channel = connect(&mut gateway, &listen).await?;
        super::start::wait_serving(channel.clone()).await?;
        fleet.gateways.push((gateway, channel));
    }
    wait_for_group(&stage.kafka, workers).await
}

/// A channel to a gateway that was just started, once it listens.
async fn connect(gateway: &mut Service, addr: &str) -> anyhow::Result<Channel> {
    let endpoint = Channel::from_shared(format!("http://{addr}"))?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        gateway.ensure_running()?;
        match endpoint.connect().await {
            Ok(channel) => return Ok(channel),
            Err(e) if Instant::now() > deadline => {
                anyhow::bail!("{} does not listen on {addr} after 30 s: {e}", gateway.name)
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// Waits (at most 60 s) until the checkout group is stable with `members`
/// members, so the window does not start in a rebalance.
async fn wait_for_group(kafka: &Kafka, members: usize) -> anyhow::Result<()> {
    let consumer: BaseConsumer = kafka
        .config
        .consumer_config("checkout-bench-scale-probe")
        .create()?;
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::new();
        while Instant::now() < deadline {
            match consumer.fetch_group_list(
                Some(consumer_groups::CHECKOUT_SERVICE),
                Duration::from_secs(5),
            ) {
                Ok(list) => {
                    if let Some(group) = list.groups().first() {
                        if group.state() == "Stable" && group.members().len() == members {
                            return Ok(());
                        }
                        last = format!("{} with {} members", group.state(), group.members().len());
                    }
                }
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("the checkout group did not become stable with {members} members within 60 s (last: {last})")
    })
    .await?
}

/// Customers' shared record.
#[derive(Default)]
struct Started {
    /// request_id -> when its StartCheckout was called.
    at: Mutex<HashMap<String, Instant>>,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Started {
    fn fail(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().expect("lock").get_or_insert(e);
    }
}

/// Warm-up, the measured window, then every paid checkout credited.
async fn measure(
    stage: &mut Stage,
    fleet: &mut Fleet,
    limit: StripeLimit,
    options: &ScaleOptions,
    marks: &mut Marks,
) -> anyhow::Result<Measured> {
    let customers = match limit {
        StripeLimit::Lifted => options.customers_lifted,
        StripeLimit::PerSec(_) => options.customers_limited,
    };
    let started = Arc::new(Started::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..customers {
        let channel = fleet.gateways[k % fleet.gateways.len()].1.clone();
        let (bearer, emulator) = (stage.bearer.clone(), stage.emulator.clone());
        let (started, stop) = (Arc::clone(&started), Arc::clone(&stop));
        tasks.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let t0 = Instant::now();
                match super::e2e::start(&channel, &bearer).await {
                    Ok((request_id, session_id)) => {
                        started.at.lock().expect("lock").insert(request_id, t0);
                        if let Err(e) = emulator.pay(&session_id, stripe_emulator::Outcome::Paid) {
                            started.fail(format!("pay: {e:?}"));
                        }
                    }
                    Err(e) => {
                        started.fail(e);
                        // Not a hot loop against a failing gateway.
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
        });
    }

    marks.push(
        stage,
        format!(
            "{} workers x {} gateways: warm-up",
            fleet.workers.len(),
            fleet.gateways.len()
        ),
    );
    tokio::time::sleep(options.warmup).await;
    let pids: Vec<(String, u32)> = fleet
        .gateways
        .iter()
        .map(|(s, _)| s)
        .chain(fleet.workers.iter().map(|(s, _)| s))
        .chain(std::iter::once(&stage.blazing_sun))
        .map(|s| (s.name.clone(), s.pid()))
        .chain(infra::broker_pid().map(|p| ("broker".to_owned(), p)))
        .chain(std::iter::once(("bench".to_owned(), std::process::id())))
        .collect();
    let cpu_now = || -> Vec<f64> {
        pids.iter()
            .map(|(_, p)| infra::process_cpu_secs(*p))
            .collect()
    };
    let (cpu0, busy0) = (cpu_now(), infra::machine_busy_secs().unwrap_or(0.0));
    let sessions0 = stage.emulator.stats().sessions_created;
    marks.push(
        stage,
        format!(
            "{} workers x {} gateways: window",
            fleet.workers.len(),
            fleet.gateways.len()
        ),
    );
    let w0 = Instant::now();
    tokio::time::sleep(options.window).await;
    let w1 = Instant::now();
    marks.push(
        stage,
        format!(
            "{} workers x {} gateways: drain",
            fleet.workers.len(),
            fleet.gateways.len()
        ),
    );
    let sessions1 = stage.emulator.stats().sessions_created;
    let (cpu1, busy1) = (cpu_now(), infra::machine_busy_secs().unwrap_or(0.0));
    let window = w1 - w0;

    stop.store(true, Ordering::Relaxed);
    while tasks.join_next().await.is_some() {}
    for (service, _) in fleet.gateways.iter_mut() {
        service.ensure_running()?;
    }
    for (service, _) in fleet.workers.iter_mut() {
        service.ensure_running()?;
    }
    stage.blazing_sun.ensure_running()?;

    // Every paid checkout credited before the next configuration.
    let ids: Vec<(String, Instant)> = started
        .at
        .lock()
        .expect("lock")
        .iter()
        .map(|(id, t)| (id.clone(), *t))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(60);
    while ids.iter().any(|(id, _)| stage.credits.seen(id).is_none()) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut latencies = Vec::new();
    let mut uncredited = 0u64;
    for (id, t0) in &ids {
        if *t0 < w0 || *t0 >= w1 {
            continue;
        }
        match stage.credits.seen(id) {
            Some(seen) => latencies.push(seen.saturating_duration_since(*t0).as_micros() as u64),
            None => uncredited += 1,
        }
    }
    let uncredited_all = ids
        .iter()
        .filter(|(id, _)| stage.credits.seen(id).is_none())
        .count();
    let mut first_error = started.first_error.lock().expect("lock").clone();
    if uncredited_all > 0 {
        first_error.get_or_insert(format!(
            "{uncredited_all} paid checkouts not credited within 60 s (ledger poller: {:?})",
            stage.credits.0.lock().expect("lock").last_error
        ));
    }

    // The emulator's seconds wholly inside the window.
    let from = (w0 - stage.emulator_epoch).as_secs_f64().ceil() as usize;
    let to = (w1 - stage.emulator_epoch).as_secs_f64().floor() as usize;
    let seconds = stage.emulator.api_requests_per_second();
    let max_per_second = seconds
        .get(from.min(seconds.len())..to.min(seconds.len()))
        .and_then(|s| s.iter().max().copied())
        .unwrap_or(0);

    let secs = window.as_secs_f64();
    Ok(Measured {
        limit,
        workers: fleet.workers.len(),
        gateways: fleet.gateways.len(),
        customers,
        window,
        sessions_per_sec: (sessions1 - sessions0) as f64 / secs,
        credits_per_sec: stage.credits.between(w0, w1) as f64 / secs,
        e2e: Sample::from_latencies(latencies, uncredited, window, None),
        max_per_second,
        cpu: pids
            .iter()
            .zip(cpu0.iter().zip(&cpu1))
            .map(|((name, _), (a, b))| (name.clone(), (b - a) / secs))
            .collect(),
        machine_busy_cores: (busy1 - busy0) / secs,
        uncredited,
        errors: started.errors.load(Ordering::Relaxed) + uncredited_all as u64,
        first_error,
    })
}

/// CPU cores of the processes whose name starts with `prefix`, joined by `+`.
fn cores(m: &Measured, prefix: &str) -> String {
    let list: Vec<String> = m
        .cpu
        .iter()
        .filter(|(name, _)| name.starts_with(prefix))
        .map(|(_, c)| f(*c, 2))
        .collect();
    if list.is_empty() {
        "-".to_owned()
    } else {
        list.join("+")
    }
}

fn summary(m: &Measured) -> String {
    format!(
        "scale: limit {}, {} workers, {} gateways: {:.1} sessions/s, {:.1} credits/s, e2e p50 {:.0} ms p99 {:.0} ms, max {} Stripe requests in one second, CPU gateways {} workers {} blazing_sun {} broker {} bench {}, machine {:.2} cores, {} errors{}",
        m.limit.label(),
        m.workers,
        m.gateways,
        m.sessions_per_sec,
        m.credits_per_sec,
        m.e2e.p50_ms,
        m.e2e.p99_ms,
        m.max_per_second,
        cores(m, "gateway"),
        cores(m, "checkout"),
        cores(m, "blazing_sun"),
        cores(m, "broker"),
        cores(m, "bench"),
        m.machine_busy_cores,
        m.errors,
        m.first_error
            .as_deref()
            .map(|e| format!("; first error: {e}"))
            .unwrap_or_default(),
    )
}

fn report(options: &Options, measured: Vec<Measured>, phases: &[Phase]) -> Report {
    let mut rows = Vec::new();
    let mut data = Vec::new();
    let mut verdicts = Vec::new();
    for m in &measured {
        let ceiling = m.limit.ceiling(m.workers);
        rows.push(vec![
            m.limit.label(),
            m.workers.to_string(),
            m.gateways.to_string(),
            m.customers.to_string(),
            f(m.sessions_per_sec, 1),
            f(m.credits_per_sec, 1),
            format!("{}/{}", f(m.e2e.p50_ms, 0), f(m.e2e.p99_ms, 0)),
            match ceiling {
                Some(c) => format!("{} (<= {c})", m.max_per_second),
                None => m.max_per_second.to_string(),
            },
            cores(m, "gateway"),
            cores(m, "checkout"),
            cores(m, "blazing_sun"),
            cores(m, "broker"),
            cores(m, "bench"),
            f(m.machine_busy_cores, 2),
            m.errors.to_string(),
        ]);
        data.push(json!({
            "stripe_limit": match m.limit { StripeLimit::Lifted => json!("lifted"), StripeLimit::PerSec(n) => json!(n) },
            "workers": m.workers,
            "gateways": m.gateways,
            "customers": m.customers,
            "window_secs": m.window.as_secs_f64(),
            "sessions_per_sec": m.sessions_per_sec,
            "credits_per_sec": m.credits_per_sec,
            "start_to_credit": m.e2e,
            "max_stripe_requests_in_one_second": m.max_per_second,
            "stripe_requests_ceiling": ceiling,
            "cpu_cores": m.cpu.iter().map(|(n, c)| (n.clone(), json!(c))).collect::<serde_json::Map<_, _>>(),
            "machine_busy_cores": m.machine_busy_cores,
            "uncredited_in_window": m.uncredited,
            "errors": m.errors,
            "first_error": m.first_error,
        }));
        if m.errors > 0 {
            verdicts.push(format!(
                "limit {}, {} workers, {} gateways: {} errors; first: {}",
                m.limit.label(),
                m.workers,
                m.gateways,
                m.errors,
                m.first_error.as_deref().unwrap_or("?")
            ));
        }
        if let (Some(c), StripeLimit::PerSec(n)) = (ceiling, m.limit) {
            let full = m.sessions_per_sec >= 0.9 * f64::from(n);
            verdicts.push(format!(
                "limit {n}/s, {} workers, {} gateways: {:.1} sessions/s (target >= 90 % of {n}: {}); at most {} Stripe requests in one second of the window (target <= {n} + a fifth + one per replica = {c}: {})",
                m.workers,
                m.gateways,
                m.sessions_per_sec,
                if full { "met" } else { "NOT MET" },
                m.max_per_second,
                if m.max_per_second <= c { "met" } else { "NOT MET" },
            ));
        }
    }
    let mut phase_data = Vec::new();
    for phase in phases {
        if let (Some(ceiling), StripeLimit::PerSec(n)) = (phase.ceiling, phase.limit) {
            verdicts.push(format!(
                "limit {n}/s, the whole phase (every second after its first, transitions included): at most {} Stripe requests in one second, during \"{}\" (target <= {ceiling}: {})",
                phase.max,
                phase.max_during,
                if phase.max <= ceiling { "met" } else { "NOT MET" },
            ));
        }
        phase_data.push(json!({
            "stripe_limit": phase.limit.label(),
            "first_emulator_second": phase.first_second,
            "stripe_requests_per_second": phase.per_second,
            "max_in_one_second": phase.max,
            "max_during": phase.max_during,
            "ceiling": phase.ceiling,
        }));
    }
    Report {
        scenario: "scale",
        broker: infra::broker_name(options.broker),
        machine: infra::machine(),
        cell_secs: options.scale.window.as_secs_f64(),
        smoke: options.smoke,
        columns: vec![
            "stripe limit",
            "workers",
            "gateways",
            "customers",
            "sessions/s",
            "credits/s",
            "start->credit p50/p99 ms",
            "max Stripe req in 1 s",
            "gateway CPU",
            "worker CPU",
            "blazing_sun CPU",
            "broker CPU",
            "bench CPU",
            "machine busy",
            "errors",
        ],
        rows,
        data: json!({"configurations": data, "phases": phase_data}),
        verdicts,
    }
}
