//! `start`: StartCheckout throughput and latency at concurrency 1, 16, 64,
//! 256 against two floors measured in the same run, cell by cell:
//! (a) raw produce of the same JSON event with the gateway's producer
//! settings to the same broker and topic (the Kafka floor), (b)
//! `grpc.health.v1.Health/Check` on the same tonic server, answered from
//! memory (the gRPC floor), in the order A B C C B A (slices of 1.5 s or
//! more; a longer `--duration` repeats the pattern).
//! Target: StartCheckout ≥ 0.8 × min(a, b) calls/s,
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
use crate::load::{Recorded, Sample, closed_loop, record};
use crate::report::{Report, f};

const SUCCESS_URL: &str = "https://shop.example/checkout/success";
const CANCEL_URL: &str = "https://shop.example/checkout/cancel";

/// The load levels of the issue; the smoke run takes the first two.
pub const CONCURRENCY: [usize; 4] = [1, 16, 64, 256];

/// # Errors
/// When the broker or the gateway cannot start.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let kafka = Kafka::start(options.broker).await?;
    let secret = Secret::new("checkout-bench-jwt-secret".to_owned());
    let token = JwtIssuer::new(&secret).issue(
        "checkout-bench",
        Role::Service,
        Duration::from_secs(24 * 3600),
    );
    let config = gateway::Config::new(
        kafka.config.clone(),
        kafka.topics.clone(),
        gateway::AuthMode::Jwt(secret),
    );
    let produce_timeout = config.produce_timeout;
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

    // The gateway's own producer settings (see gateway::Gateway::build).
    let producer: FutureProducer = kafka
        .config
        .producer_config()
        .set(
            "message.timeout.ms",
            produce_timeout.as_millis().to_string(),
        )
        .create()?;
    let producer = Arc::new(producer);
    let requests_topic: Arc<str> = Arc::from(kafka.topics.requests.as_str());
    let bearer: MetadataValue<_> = format!("Bearer {token}").parse()?;

    // Warm-up: connections, metadata, partition leaders.
    let _ = closed_loop(
        4,
        Duration::from_millis(300),
        raw_produce(&producer, &requests_topic),
    )
    .await;
    let _ = closed_loop(
        4,
        Duration::from_millis(300),
        start_checkout(&channel, &bearer),
    )
    .await;

    let levels: &[usize] = if options.smoke {
        &CONCURRENCY[..2]
    } else {
        &CONCURRENCY
    };
    let mut rows = Vec::new();
    let mut data = Vec::new();
    let mut verdicts = Vec::new();
    for &c in levels {
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
        for _ in 0..rounds {
            raw.merge(
                busy(
                    &mut raw_cpu,
                    record(c, slice, raw_produce(&producer, &requests_topic)),
                )
                .await,
            );
            grpc.merge(busy(&mut grpc_cpu, record(c, slice, health_check(&channel))).await);
            start.merge(
                busy(
                    &mut start_cpu,
                    record(c, slice, start_checkout(&channel, &bearer)),
                )
                .await,
            );
            start.merge(
                busy(
                    &mut start_cpu,
                    record(c, slice, start_checkout(&channel, &bearer)),
                )
                .await,
            );
            grpc.merge(busy(&mut grpc_cpu, record(c, slice, health_check(&channel))).await);
            raw.merge(
                busy(
                    &mut raw_cpu,
                    record(c, slice, raw_produce(&producer, &requests_topic)),
                )
                .await,
            );
        }
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
        let met = ratio >= 0.8 && p99_over <= 1.0;
        rows.push(vec![
            c.to_string(),
            f(raw.per_sec, 0),
            f(grpc.per_sec, 0),
            f(start.per_sec, 0),
            f(ratio, 2),
            format!(
                "{}/{}/{}",
                f(raw.p50_ms, 2),
                f(raw.p99_ms, 2),
                f(raw.p999_ms, 2)
            ),
            format!(
                "{}/{}/{}",
                f(grpc.p50_ms, 2),
                f(grpc.p99_ms, 2),
                f(grpc.p999_ms, 2)
            ),
            format!(
                "{}/{}/{}",
                f(start.p50_ms, 2),
                f(start.p99_ms, 2),
                f(start.p999_ms, 2)
            ),
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
            (raw.errors + grpc.errors + start.errors).to_string(),
            if met { "yes" } else { "NO" }.to_owned(),
        ]);
        verdicts.push(format!(
            "concurrency {c}: StartCheckout {:.0}/s = {ratio:.2} x min(raw produce {:.0}/s, gRPC floor {:.0}/s) (target >= 0.80); p99 {:+.2} ms vs raw produce (target <= +1.00){}",
            start.per_sec,
            raw.per_sec,
            grpc.per_sec,
            p99_over,
            first_errors(&[&raw, &grpc, &start]),
        ));
        data.push(json!({
            "concurrency": c,
            "raw_produce": raw,
            "grpc_floor": grpc,
            "start_checkout": start,
            "throughput_ratio": ratio,
            "p99_over_raw_ms": p99_over,
            "machine_busy_cores": { "raw_produce": raw_cpu.0, "grpc_floor": grpc_cpu.0, "start_checkout": start_cpu.0 },
            "machine_cpu_us_per_call": { "raw_produce": raw_cpu.1, "grpc_floor": grpc_cpu.1, "start_checkout": start_cpu.1 },
            "target_met": met,
        }));
    }

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
    Ok(Report {
        scenario: "start",
        broker: infra::broker_name(options.broker),
        machine: infra::machine(),
        cell_secs: options.cell.as_secs_f64(),
        smoke: options.smoke,
        columns: vec![
            "conc",
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
            "errors",
            "met",
        ],
        rows,
        data: json!(data),
        verdicts,
    })
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
async fn wait_serving(channel: Channel) -> anyhow::Result<()> {
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
