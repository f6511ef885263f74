//! `start`: StartCheckout throughput and latency against two floors
//! measured in the same run, cell by cell: (a) raw produce of the same JSON
//! event with the gateway's producer settings to the same broker and topic
//! (the Kafka floor), (b) `grpc.health.v1.Health/Check` on the same tonic
//! server, answered from memory (the gRPC floor), in the order A B C C B A
//! (slices of 1.5 s or more; a longer `--duration` repeats the pattern).
//!
//! Two loops, each target under the same load: the closed loop at
//! concurrency 1, 16, 64, 256 (each caller waits for its answer, so a slow
//! answer also delays the next call: the queueing delay is hidden), and,
//! with `--rate`, the open loop ([`crate::load::record_open`]: calls on a
//! fixed schedule, latency from the scheduled time). `--rate 25%,50%`
//! runs the closed loop first and takes the shares of its capacity (the
//! highest StartCheckout/s of its levels).
//! Target (issue 15): StartCheckout ≥ 0.9 × min(a, b) calls/s,
//! p99 at most 1 ms above the raw produce p99.

use std::sync::Arc;
use std::time::Duration;

use checkout_contract::auth::{JwtIssuer, Role};
use checkout_contract::kafka::send_json;
use checkout_contract::secret::Secret;
use checkout_contract::{CheckoutRequestEvent, RequestId, pb};
use rdkafka::producer::FutureProducer;
use serde_json::json;
use tonic::metadata::MetadataValue;
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::Options;
use crate::infra::{self, Kafka};
use crate::load::{Load, Rate, Recorded, Sample, closed_loop};
use crate::report::{Report, f};

const SUCCESS_URL: &str = "https://shop.example/checkout/success";
const CANCEL_URL: &str = "https://shop.example/checkout/cancel";

/// The closed loop's concurrency levels by default; the smoke run takes the first two.
pub const CONCURRENCY: [usize; 4] = [1, 16, 64, 256];

/// What every cell calls.
struct Targets {
    producer: Arc<FutureProducer>,
    requests_topic: Arc<str>,
    channel: Channel,
    bearer: MetadataValue<tonic::metadata::Ascii>,
}

/// One measured load level, ready for the table.
struct Cell {
    row: Vec<String>,
    verdict: String,
    data: serde_json::Value,
    start_per_sec: f64,
}

/// # Errors
/// When the broker or the gateway cannot start.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    // One table per gateway setting asked for, each on a fresh broker (the
    // memory storage walks every stored batch per fetch: a broker filled by
    // the table before would slow the next).
    let (mut rows, mut data, mut verdicts) = (Vec::new(), Vec::new(), Vec::new());
    for variant in Variant::all(options) {
        let (cells, capacity) = run_one(options, &variant).await?;
        let label = variant.label();
        for mut cell in cells {
            if let Some(label) = &label {
                cell.row[0] = format!("{} ({label})", cell.row[0]);
                cell.verdict = format!("{label}: {}", cell.verdict);
                cell.data["gateway"] = variant.data();
            }
            rows.push(cell.row);
            verdicts.push(cell.verdict);
            data.push(cell.data);
        }
        if let Some(capacity) = capacity {
            verdicts.push(format!(
                "{}closed-loop capacity (best StartCheckout/s above): {capacity:.0}/s",
                label.map(|l| format!("{l}: ")).unwrap_or_default()
            ));
        }
    }
    Ok(Report {
        scenario: "start",
        broker: infra::broker_name(options.broker),
        machine: infra::machine(),
        cell_secs: options.cell.as_secs_f64(),
        smoke: options.smoke,
        columns: vec![
            "load",
            "raw/s",
            "grpc/s",
            "start/s",
            "ratio",
            "raw p50/p99/p99.9 ms",
            "grpc p50/p99/p99.9 ms",
            "start p50/p99/p99.9 ms",
            "p99 over raw",
            "busy cores raw/grpc/start",
            "cpu us/call raw/grpc/start",
            "dropped/late raw/grpc/start",
            "errors",
            "met",
        ],
        rows,
        data: json!(data),
        verdicts,
    })
}

/// Gateway settings one table runs with (the gateway's defaults where `None`).
struct Variant {
    requests_tail_wait: Option<Duration>,
    linger: Option<Duration>,
}

impl Variant {
    /// Every `--requests-tail-wait` with every `--linger`.
    fn all(options: &Options) -> Vec<Self> {
        let or_default = |given: &[Duration]| -> Vec<Option<Duration>> {
            if given.is_empty() {
                vec![None]
            } else {
                given.iter().copied().map(Some).collect()
            }
        };
        let lingers = or_default(&options.lingers);
        or_default(&options.requests_tail_waits)
            .into_iter()
            .flat_map(|wait| {
                lingers.iter().map(move |&linger| Self {
                    requests_tail_wait: wait,
                    linger,
                })
            })
            .collect()
    }

    fn apply(&self, config: &mut gateway::Config) {
        if let Some(wait) = self.requests_tail_wait {
            config.requests_tail_wait = wait;
        }
        if let Some(linger) = self.linger {
            config.produce_linger = linger;
        }
    }

    /// What the rows say about it; `None` for the defaults.
    fn label(&self) -> Option<String> {
        let parts: Vec<String> = [
            self.requests_tail_wait
                .map(|w| format!("requests tail wait {} ms", w.as_millis())),
            self.linger.map(|l| format!("linger {} ms", l.as_millis())),
        ]
        .into_iter()
        .flatten()
        .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    }

    fn data(&self) -> serde_json::Value {
        json!({
            "requests_tail_wait_ms": self.requests_tail_wait.map(|w| w.as_millis()),
            "produce_linger_ms": self.linger.map(|l| l.as_millis()),
        })
    }
}

/// Every load level against one gateway with `variant`'s settings, on a
/// fresh broker; also the closed loop's capacity when both loops ran.
async fn run_one(options: &Options, variant: &Variant) -> anyhow::Result<(Vec<Cell>, Option<f64>)> {
    let kafka = Kafka::start(options.broker).await?;
    let secret = Secret::new("checkout-bench-jwt-secret".to_owned());
    let token = JwtIssuer::new(&secret).issue(
        "checkout-bench",
        Role::Service,
        Duration::from_secs(24 * 3600),
    );
    let mut config = gateway::Config::new(
        kafka.config.clone(),
        kafka.topics.clone(),
        gateway::AuthMode::Jwt(secret),
    );
    variant.apply(&mut config);
    let producer_config = gateway::producer_config(&config);
    let gw = gateway::Gateway::build(config).await?;
    let addr = gw.grpc_addr();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(gw.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));

    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    wait_serving(channel.clone()).await?;

    // The gateway's own producer settings.
    let producer: FutureProducer = producer_config.create()?;
    let targets = Targets {
        producer: Arc::new(producer),
        requests_topic: Arc::from(kafka.topics.requests.as_str()),
        channel,
        bearer: format!("Bearer {token}").parse()?,
    };

    // Warm-up: connections, metadata, partition leaders.
    let _ = closed_loop(
        4,
        Duration::from_millis(300),
        raw_produce(&targets.producer, &targets.requests_topic),
    )
    .await;
    let _ = closed_loop(
        4,
        Duration::from_millis(300),
        start_checkout(&targets.channel, &targets.bearer),
    )
    .await;

    // The closed loop runs unless every --rate is absolute.
    let closed = options.rates.is_empty()
        || options
            .rates
            .iter()
            .any(|r| matches!(r, Rate::OfCapacity(_)));
    let mut cells = Vec::new();
    if closed {
        for &c in &options.concurrency {
            cells.push(measure(Load::Closed(c), None, &targets, options).await);
        }
    }
    // The closed loop's capacity: its best StartCheckout/s.
    let capacity = cells.iter().map(|c| c.start_per_sec).fold(0.0, f64::max);
    for &rate in &options.rates {
        let (per_sec, share) = match rate {
            Rate::PerSec(r) => (r, None),
            Rate::OfCapacity(share) => (share * capacity, Some(share)),
        };
        anyhow::ensure!(
            per_sec >= 1.0,
            "--rate {rate:?} is below 1 call/s (closed-loop capacity {capacity:.0}/s)"
        );
        cells.push(
            measure(
                Load::Open(per_sec),
                share.map(|s| (s, capacity)),
                &targets,
                options,
            )
            .await,
        );
    }

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
    Ok((
        cells,
        (closed && !options.rates.is_empty()).then_some(capacity),
    ))
}

/// One load level of all three targets, A B C C B A. `share` is (share,
/// closed-loop capacity) when the rate was asked for as a share.
async fn measure(
    load: Load,
    share: Option<(f64, f64)>,
    targets: &Targets,
    options: &Options,
) -> Cell {
    let raw_call = || raw_produce(&targets.producer, &targets.requests_topic);
    let grpc_call = || health_check(&targets.channel);
    let start_call = || start_checkout(&targets.channel, &targets.bearer);
    // A B C C B A in slices: the broker's state drifts during a run
    // (its sqlite file grows, other work on the machine comes and goes),
    // so each target gets early and late slices. A cell of 6 s or more
    // repeats the pattern (one round per 3 s, slices of 1.5 s or more).
    let rounds = ((options.cell.as_secs_f64() / 3.0).floor() as u32).max(1);
    let slice = options.cell / (2 * rounds);
    let (mut raw, mut grpc, mut start) = (
        Recorded::default(),
        Recorded::default(),
        Recorded::default(),
    );
    // Machine CPU seconds busy while each target ran (all processes:
    // broker, gateway, load generator).
    let (mut raw_cpu, mut grpc_cpu, mut start_cpu) = (0.0, 0.0, 0.0);
    let floors = !options.no_baseline;
    for _ in 0..rounds {
        if floors {
            raw.merge(busy(&mut raw_cpu, load.record(slice, raw_call())).await);
            grpc.merge(busy(&mut grpc_cpu, load.record(slice, grpc_call())).await);
        }
        start.merge(busy(&mut start_cpu, load.record(slice, start_call())).await);
        start.merge(busy(&mut start_cpu, load.record(slice, start_call())).await);
        if floors {
            grpc.merge(busy(&mut grpc_cpu, load.record(slice, grpc_call())).await);
            raw.merge(busy(&mut raw_cpu, load.record(slice, raw_call())).await);
        }
    }
    let sends = |r: &Recorded| (r.scheduled, r.dropped, r.late);
    let (raw_sends, grpc_sends, start_sends) = (sends(&raw), sends(&grpc), sends(&start));
    let (raw, grpc, start) = (raw.sample(), grpc.sample(), start.sample());
    // Busy cores while a target ran, and machine CPU per call.
    let measured = (2 * rounds) as f64 * slice.as_secs_f64();
    let cpu = |busy_secs: f64, per_sec: f64| {
        let cores = busy_secs / measured;
        (
            cores,
            if per_sec > 0.0 {
                cores / per_sec * 1e6
            } else {
                0.0
            },
        )
    };
    let (raw_cpu, grpc_cpu, start_cpu) = (
        cpu(raw_cpu, raw.per_sec),
        cpu(grpc_cpu, grpc.per_sec),
        cpu(start_cpu, start.per_sec),
    );
    let floor = raw.per_sec.min(grpc.per_sec);
    let ratio = if floor > 0.0 {
        start.per_sec / floor
    } else {
        0.0
    };
    let p99_over = start.p99_ms - raw.p99_ms;
    let met = ratio >= 0.9 && p99_over <= 1.0;
    let percentiles =
        |s: &Sample| format!("{}/{}/{}", f(s.p50_ms, 2), f(s.p99_ms, 2), f(s.p999_ms, 2));
    let row = vec![
        load.label(),
        f(raw.per_sec, 0),
        f(grpc.per_sec, 0),
        f(start.per_sec, 0),
        f(ratio, 2),
        percentiles(&raw),
        percentiles(&grpc),
        percentiles(&start),
        f(p99_over, 2),
        format!(
            "{}/{}/{}",
            f(raw_cpu.0, 2),
            f(grpc_cpu.0, 2),
            f(start_cpu.0, 2)
        ),
        format!(
            "{}/{}/{}",
            f(raw_cpu.1, 0),
            f(grpc_cpu.1, 0),
            f(start_cpu.1, 0)
        ),
        match load {
            Load::Closed(_) => "-".to_owned(),
            Load::Open(_) => format!(
                "{}/{} {}/{} {}/{}",
                raw_sends.1, raw_sends.2, grpc_sends.1, grpc_sends.2, start_sends.1, start_sends.2
            ),
        },
        (raw.errors + grpc.errors + start.errors).to_string(),
        if met { "yes" } else { "NO" }.to_owned(),
    ];
    let what = match (load, share) {
        (Load::Closed(c), _) => format!("closed loop, concurrency {c}"),
        (Load::Open(r), None) => format!("open loop at {r:.0}/s"),
        (Load::Open(r), Some((s, capacity))) => format!(
            "open loop at {r:.0}/s ({:.0} % of the closed loop's {capacity:.0}/s)",
            s * 100.0
        ),
    };
    let open_sends = match load {
        Load::Closed(_) => String::new(),
        Load::Open(_) => format!(
            "; sends scheduled/dropped/late: raw {}/{}/{}, gRPC {}/{}/{}, start {}/{}/{}; p50/p99/p99.9 from the scheduled time: start {} ms, raw {} ms",
            raw_sends.0,
            raw_sends.1,
            raw_sends.2,
            grpc_sends.0,
            grpc_sends.1,
            grpc_sends.2,
            start_sends.0,
            start_sends.1,
            start_sends.2,
            percentiles(&start),
            percentiles(&raw),
        ),
    };
    let verdict = format!(
        "{what}: StartCheckout {:.0}/s = {ratio:.2} x min(raw produce {:.0}/s, gRPC floor {:.0}/s) (target >= 0.90); p99 {:+.2} ms vs raw produce (target <= +1.00){open_sends}{}",
        start.per_sec,
        raw.per_sec,
        grpc.per_sec,
        p99_over,
        first_errors(&[&raw, &grpc, &start]),
    );
    let open = |(scheduled, dropped, late): (u64, u64, u64)| json!({"scheduled": scheduled, "dropped": dropped, "late": late});
    let mut data = json!({
        "loop": match load { Load::Closed(_) => "closed", Load::Open(_) => "open" },
        "raw_produce": raw,
        "grpc_floor": grpc,
        "start_checkout": start,
        "throughput_ratio": ratio,
        "p99_over_raw_ms": p99_over,
        "machine_busy_cores": { "raw_produce": raw_cpu.0, "grpc_floor": grpc_cpu.0, "start_checkout": start_cpu.0 },
        "machine_cpu_us_per_call": { "raw_produce": raw_cpu.1, "grpc_floor": grpc_cpu.1, "start_checkout": start_cpu.1 },
        "target_met": met,
    });
    match load {
        Load::Closed(c) => data["concurrency"] = json!(c),
        Load::Open(rate) => {
            data["rate_per_sec"] = json!(rate);
            if let Some((s, capacity)) = share {
                data["share_of_closed_capacity"] = json!(s);
                data["closed_capacity_per_sec"] = json!(capacity);
            }
            data["sends"] = json!({
                "raw_produce": open(raw_sends),
                "grpc_floor": open(grpc_sends),
                "start_checkout": open(start_sends),
            });
        }
    }
    Cell {
        row,
        verdict,
        data,
        start_per_sec: start.per_sec,
    }
}

fn first_errors(samples: &[&Sample]) -> String {
    samples
        .iter()
        .filter_map(|s| s.first_error.as_deref())
        .next()
        .map(|e| format!("; first error: {e}"))
        .unwrap_or_default()
}

/// Waits until the gateway reports SERVING (broker reachable, tail assigned).
pub(crate) async fn wait_serving(channel: Channel) -> anyhow::Result<()> {
    let mut client = HealthClient::new(channel);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let status = client
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .map(|r| r.into_inner().status);
        if status.ok() == Some(ServingStatus::Serving as i32) {
            return Ok(());
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "the gateway did not become SERVING within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The event StartCheckout would produce, built the same way.
fn request_event() -> CheckoutRequestEvent {
    CheckoutRequestEvent {
        request_id: RequestId::new_random().to_string(),
        user_id: 1,
        amount_cents: 500,
        currency: "eur".to_owned(),
        purpose: "balance_topup".to_owned(),
        timestamp: checkout_contract::events::now(),
        success_url: SUCCESS_URL.to_owned(),
        cancel_url: CANCEL_URL.to_owned(),
    }
}

fn raw_produce(
    producer: &Arc<FutureProducer>,
    topic: &Arc<str>,
) -> impl Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync + 'static {
    let producer = Arc::clone(producer);
    let topic = Arc::clone(topic);
    move || {
        let producer = Arc::clone(&producer);
        let topic = Arc::clone(&topic);
        Box::pin(async move {
            let event = request_event();
            send_json(&producer, &topic, &event.request_id, &event, &[])
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    }
}

fn health_check(
    channel: &Channel,
) -> impl Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync + 'static {
    let channel = channel.clone();
    move || {
        let mut client = HealthClient::new(channel.clone());
        Box::pin(async move {
            client
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .map(|_| ())
                .map_err(|s| s.to_string())
        })
    }
}

fn start_checkout(
    channel: &Channel,
    bearer: &MetadataValue<tonic::metadata::Ascii>,
) -> impl Fn() -> futures::future::BoxFuture<'static, Result<(), String>> + Send + Sync + 'static {
    let channel = channel.clone();
    let bearer = bearer.clone();
    move || {
        let mut client = pb::checkout_gateway_client::CheckoutGatewayClient::new(channel.clone());
        let mut request = tonic::Request::new(pb::StartCheckoutRequest {
            user_id: 1,
            amount_cents: 500,
            currency: "eur".to_owned(),
            purpose: String::new(),
            success_url: SUCCESS_URL.to_owned(),
            cancel_url: CANCEL_URL.to_owned(),
            idempotency_key: None,
            wait_for_session: None,
        });
        request
            .metadata_mut()
            .insert("authorization", bearer.clone());
        Box::pin(async move {
            client
                .start_checkout(request)
                .await
                .map(|_| ())
                .map_err(|s| s.to_string())
        })
    }
}

/// Runs `measured`, adding the machine's busy CPU seconds meanwhile to `total`.
async fn busy<T>(total: &mut f64, measured: impl Future<Output = T>) -> T {
    let before = infra::machine_busy_secs();
    let out = measured.await;
    if let (Some(before), Some(after)) = (before, infra::machine_busy_secs()) {
        *total += after - before;
    }
    out
}
