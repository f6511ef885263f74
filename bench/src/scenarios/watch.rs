//! `watch`: N concurrent WatchCheckout streams (1k, 10k, 50k), each waiting
//! for its own checkout's events, while `session_created` events are
//! produced at a fixed rate (1,000/s) to `checkout.finished`. Measures the
//! delivery latency from the broker's ack to the client's receipt
//! (p50/p99), the gateway's RSS per idle open stream and its CPU.
//!
//! The gateway runs as a child process (`checkout-bench serve-gateway`, the
//! same library the `gateway` binary runs) so its RSS and CPU are its own,
//! not the clients'. Streams are spread over connections of 1,000 streams
//! each (the gateway's HTTP/2 `max_concurrent_streams` default is 4,096).
//!
//! Baseline, measured on the same events in the same run: a plain rdkafka
//! consumer with the gateway tail's settings (`KafkaConfig::tail_config`,
//! manual assignment of every partition of both topics, like the tail)
//! reading the same broker; its latency is from the same producer ack to
//! its own receipt. The gap between the two is what the gateway adds on
//! top of what any Kafka reader on this broker gets.
//!
//! Targets: p99 ≤ 20 ms at 1,000 events/s with 10k streams open; ≤ 20 KiB
//! of gateway memory per idle stream; 50k streams held without errors.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use checkout_contract::auth::{JwtIssuer, Role};
use checkout_contract::kafka::send_json;
use checkout_contract::pb;
use checkout_contract::pb::checkout_gateway_client::CheckoutGatewayClient;
use checkout_contract::secret::Secret;
use checkout_contract::shutdown::{Stop, Stopping};
use checkout_contract::{CheckoutStatus, RequestId};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::json;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::Options;
use crate::infra::{self, Kafka};
use crate::load::Sample;
use crate::report::{Report, f};
use crate::scenarios::worker::finished;

const JWT_SECRET: &str = "checkout-bench-watch-secret";
const STREAMS_PER_CONNECTION: usize = 1000;

/// # Errors
/// When the broker or the gateway process cannot start.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let kafka = Kafka::start(options.broker).await?;
    let mut gateway = GatewayProcess::spawn(options, &kafka)?;
    let (sizes, rate): (Vec<usize>, f64) = if options.smoke {
        (vec![100], 100.0)
    } else {
        (options.watch_streams.clone(), 1000.0)
    };
    let mut rows = Vec::new();
    let mut data = Vec::new();
    let mut verdicts = Vec::new();
    for n in sizes {
        let cell = measure(&kafka, &gateway, n, rate, options).await;
        match cell {
            Ok(c) => {
                let p99_gap = c.latency.p99_ms - c.baseline.p99_ms;
                let p99_ratio = if c.baseline.p99_ms > 0.0 {
                    c.latency.p99_ms / c.baseline.p99_ms
                } else {
                    0.0
                };
                rows.push(vec![
                    n.to_string(),
                    c.opened.to_string(),
                    f(c.open_secs, 1),
                    f(c.rss_per_stream_kib, 2),
                    f(rate, 0),
                    c.latency.ok.to_string(),
                    percentiles(&c.baseline),
                    percentiles(&c.latency),
                    f(p99_gap, 2),
                    f(p99_ratio, 2),
                    f(c.cpu_cores, 2),
                    f(c.broker_cpu_cores, 2),
                    c.errors.to_string(),
                ]);
                verdicts.push(format!(
                    "{n} streams: {} open in {:.1} s, {:.2} KiB gateway RSS per idle stream (target <= 20), delivery p99 {:.2} ms at {rate:.0} events/s (target <= 20 with 10k open; plain consumer p99 {:.2} ms, gap {p99_gap:+.2} ms), gateway CPU {:.2} cores, {} errors{}",
                    c.opened,
                    c.open_secs,
                    c.rss_per_stream_kib,
                    c.latency.p99_ms,
                    c.baseline.p99_ms,
                    c.cpu_cores,
                    c.errors,
                    c.first_error.as_deref().map(|e| format!("; first error: {e}")).unwrap_or_default()
                ));
                data.push(json!({
                    "streams": n,
                    "opened": c.opened,
                    "open_secs": c.open_secs,
                    "rss_before_kib": c.rss_before_kib,
                    "rss_open_kib": c.rss_open_kib,
                    "rss_per_stream_kib": c.rss_per_stream_kib,
                    "events_per_sec": rate,
                    "delivery": c.latency,
                    "baseline_consumer": c.baseline,
                    "p99_gap_ms": p99_gap,
                    "p99_ratio": p99_ratio,
                    "gateway_cpu_cores": c.cpu_cores,
                    "broker_cpu_cores": c.broker_cpu_cores,
                    "errors": c.errors,
                }));
            }
            Err(e) => {
                verdicts.push(format!("{n} streams: FAILED: {e:#}"));
                data.push(json!({"streams": n, "failed": format!("{e:#}")}));
            }
        }
    }
    gateway.stop();
    anyhow::ensure!(
        !rows.is_empty(),
        "no stream count could be measured: {}",
        verdicts.join("; ")
    );
    Ok(Report {
        scenario: "watch",
        broker: infra::broker_name(options.broker),
        machine: infra::machine(),
        cell_secs: options.cell.as_secs_f64(),
        smoke: options.smoke,
        columns: vec![
            "streams",
            "opened",
            "open s",
            "KiB/stream",
            "events/s",
            "delivered",
            "consumer p50/p99/p99.9 ms",
            "gateway p50/p99/p99.9 ms",
            "p99 gap ms",
            "p99 ratio",
            "gw CPU cores",
            "broker CPU cores",
            "errors",
        ],
        rows,
        data: json!(data),
        verdicts,
    })
}

fn percentiles(s: &Sample) -> String {
    format!("{}/{}/{}", f(s.p50_ms, 2), f(s.p99_ms, 2), f(s.p999_ms, 2))
}

struct Cell {
    opened: usize,
    open_secs: f64,
    rss_before_kib: u64,
    rss_open_kib: u64,
    rss_per_stream_kib: f64,
    latency: Sample,
    /// The plain consumer's ack -> receipt latency for the same events.
    baseline: Sample,
    cpu_cores: f64,
    /// The Tansu process's CPU during the event phase.
    broker_cpu_cores: f64,
    errors: u64,
    first_error: Option<String>,
}

type Times = Arc<Mutex<HashMap<String, Instant>>>;

async fn measure(
    kafka: &Kafka,
    gateway: &GatewayProcess,
    n: usize,
    rate: f64,
    options: &Options,
) -> anyhow::Result<Cell> {
    let cell = options.cell;
    let token = JwtIssuer::new(&Secret::new(JWT_SECRET.to_owned())).issue(
        "checkout-bench",
        Role::Service,
        Duration::from_secs(3600),
    );
    let bearer: MetadataValue<Ascii> = format!("Bearer {token}").parse()?;
    let mut channels = Vec::new();
    for _ in 0..n.div_ceil(STREAMS_PER_CONNECTION) {
        channels.push(
            Channel::from_shared(format!("http://{}", gateway.addr))?
                .connect()
                .await?,
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss_before = gateway.rss_kib();

    let received: Times = Arc::default();
    let errors = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let close_all = Stop::new();
    let ids: Vec<String> = (0..n)
        .map(|_| RequestId::new_random().to_string())
        .collect();
    let started = Instant::now();
    let (opened_tx, mut opened_rx) = tokio::sync::mpsc::channel::<bool>(1024);
    // Open with bounded parallelism: a storm of 50k simultaneous RPCs measures the client, not the gateway.
    let open_limit = Arc::new(tokio::sync::Semaphore::new(256));
    let mut tasks = tokio::task::JoinSet::new();
    for (i, id) in ids.iter().enumerate() {
        let channel = channels[i / STREAMS_PER_CONNECTION].clone();
        let (bearer, id, received, errors, first_error) = (
            bearer.clone(),
            id.clone(),
            Arc::clone(&received),
            Arc::clone(&errors),
            Arc::clone(&first_error),
        );
        let mut close = close_all.stopping();
        let opened_tx = opened_tx.clone();
        let open_limit = Arc::clone(&open_limit);
        tasks.spawn(async move {
            let fail = |e: String| {
                errors.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                first_error.lock().expect("lock").get_or_insert(e);
            };
            let permit = open_limit.acquire_owned().await;
            let mut client = CheckoutGatewayClient::new(channel);
            let mut request = tonic::Request::new(pb::WatchCheckoutRequest { request_id: id.clone(), resume_after: None });
            request.metadata_mut().insert("authorization", bearer);
            let mut stream = match client.watch_checkout(request).await {
                Ok(s) => s.into_inner(),
                Err(s) => {
                    fail(s.to_string());
                    let _ = opened_tx.send(false).await;
                    return;
                }
            };
            drop(permit);
            let _ = opened_tx.send(true).await;
            drop(opened_tx);
            loop {
                tokio::select! {
                    m = stream.message() => match m {
                        Ok(Some(_)) => { received.lock().expect("lock").entry(id.clone()).or_insert_with(Instant::now); }
                        Ok(None) => { fail("stream ended".to_owned()); return; }
                        Err(s) => { fail(s.to_string()); return; }
                    },
                    () = close.stopped() => return,
                }
            }
        });
    }
    drop(opened_tx);
    let mut opened = 0;
    let mut answered = 0;
    while answered < n {
        match tokio::time::timeout(Duration::from_secs(60), opened_rx.recv()).await {
            Ok(Some(ok)) => {
                answered += 1;
                opened += usize::from(ok);
            }
            _ => break,
        }
    }
    let open_secs = started.elapsed().as_secs_f64();
    // Let the gateway settle (allocator, buffers) before reading its RSS.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_open = gateway.rss_kib();

    // The baseline reader, positioned at the end before the first event.
    let consumer_received: Times = Arc::default();
    let consumer_stop = Stop::new();
    let consumer_task = if options.no_baseline {
        None
    } else {
        let consumer = plain_consumer(kafka, &options.consumer_set).await?;
        Some(tokio::spawn(read_keys(
            consumer,
            Arc::clone(&consumer_received),
            consumer_stop.stopping(),
        )))
    };

    // Events at a fixed rate, each to a different open stream.
    let producer: FutureProducer = kafka.config.producer_config().create()?;
    let producer = Arc::new(producer);
    let acked: Times = Arc::default();
    let events = ((rate * cell.as_secs_f64()) as usize).clamp(1, n);
    let cpu0 = gateway.cpu_secs();
    let broker = infra::broker_pid();
    let broker_cpu0 = broker.map_or(0.0, infra::process_cpu_secs);
    let t_events = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    let interval = Duration::from_secs_f64(1.0 / rate);
    for (k, id) in ids.iter().take(events).enumerate() {
        let due = t_events + interval.mul_f64(k as f64);
        tokio::time::sleep_until(due.into()).await;
        let (producer, acked, topic, id) = (
            Arc::clone(&producer),
            Arc::clone(&acked),
            kafka.topics.finished.clone(),
            id.clone(),
        );
        sends.spawn(async move {
            let event = finished(&id, CheckoutStatus::SessionCreated);
            if send_json(&producer, &topic, &id, &event, &[]).await.is_ok() {
                acked.lock().expect("lock").insert(id, Instant::now());
            }
        });
    }
    while sends.join_next().await.is_some() {}
    // The last ones need a moment to reach their clients.
    let wait_until = Instant::now() + Duration::from_secs(5);
    while (received.lock().expect("lock").len() < events
        || (consumer_task.is_some() && consumer_received.lock().expect("lock").len() < events))
        && Instant::now() < wait_until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events_elapsed = t_events.elapsed();
    let cpu = gateway.cpu_secs() - cpu0;
    let broker_cpu = broker.map_or(0.0, infra::process_cpu_secs) - broker_cpu0;
    consumer_stop.stop();
    if let Some(task) = consumer_task {
        let _ = task.await;
    }

    close_all.stop();
    while tasks.join_next().await.is_some() {}
    drop(channels);

    let acked = acked.lock().expect("lock");
    let latencies = |received: &Times| {
        let received = received.lock().expect("lock");
        let mut latencies = Vec::new();
        for (id, ack) in acked.iter() {
            if let Some(got) = received.get(id) {
                // A receipt before the ack callback ran counts as 0.
                latencies.push(got.saturating_duration_since(*ack).as_micros() as u64);
            }
        }
        latencies
    };
    let (latencies, consumer_latencies) = (latencies(&received), latencies(&consumer_received));
    let missing = events.saturating_sub(latencies.len()) as u64;
    let latency = Sample::from_latencies(latencies, missing, events_elapsed, None);
    let consumer_missing = events.saturating_sub(consumer_latencies.len()) as u64;
    let baseline = Sample::from_latencies(
        consumer_latencies,
        consumer_missing,
        events_elapsed,
        (consumer_missing > 0).then(|| {
            format!("{consumer_missing} events not read by the plain consumer within 5 s")
        }),
    );
    let errors = errors.load(std::sync::atomic::Ordering::Relaxed) + missing;
    let first_error = first_error
        .lock()
        .expect("lock")
        .clone()
        .or_else(|| (missing > 0).then(|| format!("{missing} events not received within 5 s")));
    Ok(Cell {
        opened,
        open_secs,
        rss_before_kib: rss_before,
        rss_open_kib: rss_open,
        rss_per_stream_kib: rss_open.saturating_sub(rss_before) as f64 / opened.max(1) as f64,
        latency,
        baseline,
        cpu_cores: cpu / events_elapsed.as_secs_f64(),
        broker_cpu_cores: broker_cpu / events_elapsed.as_secs_f64(),
        errors,
        first_error,
    })
}

/// A consumer built like the gateway's tail (`tail_config`, every partition
/// of both topics assigned by hand), positioned at each partition's current
/// end: the floor any Kafka reader on this broker gets.
async fn plain_consumer(
    kafka: &Kafka,
    overrides: &[(String, String)],
) -> anyhow::Result<StreamConsumer> {
    let mut config = kafka.config.clone();
    config.client_id = "checkout-bench-plain-tail".to_owned();
    let mut config = config.tail_config();
    for (key, value) in overrides {
        config.set(key, value);
    }
    let consumer: StreamConsumer = config.create()?;
    let topics = [kafka.topics.finished.clone(), kafka.topics.requests.clone()];
    tokio::task::spawn_blocking(move || -> anyhow::Result<StreamConsumer> {
        let timeout = Duration::from_secs(5);
        let mut tpl = TopicPartitionList::new();
        for topic in &topics {
            let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
            let partitions = metadata
                .topics()
                .iter()
                .find(|t| t.name() == topic)
                .map_or(0, |t| t.partitions().len());
            anyhow::ensure!(partitions > 0, "topic {topic} has no partitions");
            for p in 0..i32::try_from(partitions)? {
                // An explicit offset, not Offset::End: resolving "end" later
                // could skip the first events.
                let (_, high) = consumer.fetch_watermarks(topic, p, timeout)?;
                tpl.add_partition_offset(topic, p, Offset::Offset(high))?;
            }
        }
        consumer.assign(&tpl)?;
        Ok(consumer)
    })
    .await?
}

/// Records when each key is first read, until `stop`.
async fn read_keys(consumer: StreamConsumer, received: Times, mut stop: Stopping) {
    loop {
        tokio::select! {
            () = stop.stopped() => return,
            m = consumer.recv() => if let Ok(m) = m {
                let now = Instant::now();
                if let Some(Ok(key)) = m.key_view::<str>() {
                    received.lock().expect("lock").entry(key.to_owned()).or_insert(now);
                }
            },
        }
    }
}

/// The gateway as a child process of this one.
pub(crate) struct GatewayProcess {
    child: Child,
    addr: String,
    /// Its `/metrics` listener.
    pub(crate) admin_addr: String,
}

impl GatewayProcess {
    pub(crate) fn spawn(options: &Options, kafka: &Kafka) -> anyhow::Result<Self> {
        let exe = match &options.exe {
            Some(p) => p.clone(),
            None => std::env::current_exe()?,
        };
        let mut child = Command::new(exe)
            .arg("serve-gateway")
            .env("BENCH_KAFKA_BOOTSTRAP", &kafka.config.bootstrap_servers)
            .env("BENCH_TOPIC_SUFFIX", &kafka.suffix)
            .env("BENCH_JWT_SECRET", JWT_SECRET)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let addrs = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|rest| rest.split_once(" admin "));
        match addrs {
            Some((addr, admin)) => Ok(Self {
                child,
                addr: addr.to_owned(),
                admin_addr: admin.to_owned(),
            }),
            None => {
                let _ = child.kill();
                anyhow::bail!("serve-gateway did not start: {line:?}")
            }
        }
    }

    pub(crate) fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            })
            .unwrap_or(0)
    }

    pub(crate) fn cpu_secs(&self) -> f64 {
        infra::process_cpu_secs(self.child.id())
    }

    /// SIGSTOP / SIGCONT: the process holds its state and reads nothing.
    pub(crate) fn pause(&self) {
        self.signal("-STOP");
    }

    pub(crate) fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status();
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The `serve-gateway` subcommand: the gateway library on the broker and
/// topics the parent names, printing `listening <addr> admin <addr>` once bound, until
/// its stdin closes (the parent died or is done).
///
/// # Errors
/// When the gateway cannot start.
pub async fn serve_gateway() -> anyhow::Result<()> {
    let var = |name: &str| std::env::var(name).map_err(|_| anyhow::anyhow!("{name} is not set"));
    let mut kafka = checkout_contract::kafka::KafkaConfig::new(
        var("BENCH_KAFKA_BOOTSTRAP")?,
        "checkout-bench-gateway",
    );
    kafka.enable_idempotence = false;
    let topics = checkout_contract::topics::Topics::with_suffix(&var("BENCH_TOPIC_SUFFIX")?);
    let mut config = gateway::Config::new(
        kafka,
        topics,
        gateway::AuthMode::Jwt(Secret::new(var("BENCH_JWT_SECRET")?)),
    );
    config.max_concurrent_streams = u32::try_from(STREAMS_PER_CONNECTION * 2)?;
    config.admin_listen = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
    // `tail` fills the index past the default limit to measure an entry.
    config.index_max_entries = 1_000_000;
    let gw = gateway::Gateway::build(config).await?;
    println!("listening {} admin {}", gw.grpc_addr(), gw.admin_addr());
    gw.run_until_stopped(async {
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin()
                .read_line(&mut sink)
                .map(|n| n > 0)
                .unwrap_or(false)
            {}
        })
        .await;
    })
    .await?;
    Ok(())
}
