//! `tail`: what one gateway replica spends following both topics, for the
//! scaling model (`docs/scaling.md`). Every replica tails every partition
//! of `checkout.requests` and `checkout.finished`, so this cost is paid once
//! per replica and grows with the topics' rate, whatever the replica serves.
//!
//! For each checkout rate (0: the tail idle; 25/s, Stripe's default account
//! limit; 250/s; 2,500/s), the checkouts' three records (the request, `session_created`,
//! `success`, as the gateway, the worker and the webhook write them) are
//! produced on a fixed schedule while the gateway (a child process,
//! `serve-gateway`, with no client at all) follows them. Reported: records
//! and bytes per second the tail reads (key + payload + header names and
//! values, as produced; Kafka's record and batch framing comes on top), the gateway's CPU (utime + stime over the run), CPU per
//! record, and whether the tail kept up (`gateway_tail_lag_messages` from
//! its `/metrics`). The broker's CPU is measured for the same load twice,
//! with the gateway stopped (SIGSTOP: its tail reads nothing) and running:
//! the difference is what serving one replica's tail costs the broker.
//!
//! Then the index: `--tail-fill` checkouts (default 50,000; request +
//! `session_created`) as fast as the broker takes them, and the gateway's
//! RSS growth divided by the entries its index gained: bytes per entry,
//! allocator and librdkafka buffers included (an upper bound).

use std::time::{Duration, Instant};

use checkout_contract::CheckoutStatus;
use checkout_contract::kafka::{HEADER_TRACEPARENT, event_headers, send_json};
use checkout_contract::topics::Topics;
use checkout_contract::trace::TraceContext;
use futures::future::join_all;
use rdkafka::message::Headers as _;
use rdkafka::producer::FutureProducer;
use serde_json::json;

use crate::Options;
use crate::infra::{self, Kafka};
use crate::report::{Report, f};
use crate::scenarios::watch::GatewayProcess;
use crate::scenarios::worker::{finished, request};

/// Checkouts per second measured: none (what an idle tail costs), today's
/// ceiling (Stripe's 25/s), 10x, 100x.
const RATES: [u32; 4] = [0, 25, 250, 2500];
/// Producer sends per tick of the schedule.
const TICK: Duration = Duration::from_millis(20);

/// # Errors
/// When the broker or the gateway process cannot start.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let kafka = Kafka::start(options.broker).await?;
    let mut gateway = GatewayProcess::spawn(options, &kafka)?;
    let producer: FutureProducer = kafka.config.producer_config().create()?;
    let http = reqwest::Client::builder().no_proxy().build()?;
    let (rates, secs, fill): (Vec<u32>, f64, usize) = if options.smoke {
        (vec![25], 1.0, 500)
    } else {
        (RATES.to_vec(), options.cell.as_secs_f64().max(5.0), 50_000)
    };

    let broker = infra::broker_pid();
    let broker_cpu = || broker.map_or(0.0, infra::process_cpu_secs);
    let length = Duration::from_secs_f64(secs);
    let mut rows = Vec::new();
    let mut data = Vec::new();
    for rate in rates {
        // The broker alone (taking the produces), then with the tail reading.
        gateway.pause();
        let before = broker_cpu();
        let started = Instant::now();
        produce_at(&producer, &kafka, rate, length).await?;
        let broker_alone = (broker_cpu() - before) / started.elapsed().as_secs_f64();
        gateway.resume();
        caught_up(&http, &gateway, Duration::from_secs(60)).await;

        let (cpu_before, broker_before) = (gateway.cpu_secs(), broker_cpu());
        let started = Instant::now();
        let sent = produce_at(&producer, &kafka, rate, length).await?;
        let caught_up = caught_up(&http, &gateway, Duration::from_secs(30)).await;
        let elapsed = started.elapsed().as_secs_f64();
        let cpu = gateway.cpu_secs() - cpu_before;
        let broker_with = (broker_cpu() - broker_before) / elapsed;
        let records_per_sec = sent.records as f64 / secs;
        let bytes_per_sec = sent.bytes as f64 / secs;
        let cores = cpu / elapsed;
        let us_per_record = if sent.records == 0 {
            f64::NAN
        } else {
            cpu * 1e6 / sent.records as f64
        };
        let broker_tail = broker_with - broker_alone;
        rows.push(vec![
            rate.to_string(),
            f(records_per_sec, 0),
            f(bytes_per_sec / 1024.0, 1),
            f(cores, 3),
            f(us_per_record, 1),
            f(broker_alone, 3),
            f(broker_with, 3),
            f(broker_tail, 3),
            if caught_up { "yes" } else { "NO" }.to_owned(),
        ]);
        data.push(json!({
            "checkouts_per_sec": rate, "records_per_sec": records_per_sec,
            "bytes_per_sec": bytes_per_sec, "gateway_cores": cores,
            "gateway_cpu_us_per_record": us_per_record, "caught_up": caught_up,
            "broker_cores_without_tail": broker_alone, "broker_cores_with_tail": broker_with,
        }));
    }

    // Index memory: RSS growth per entry.
    let entries_before = metric(&http, &gateway, "gateway_index_entries").await?;
    let rss_before = gateway.rss_kib();
    fill_index(&producer, &kafka, fill).await?;
    caught_up(&http, &gateway, Duration::from_secs(120)).await;
    let entries = metric(&http, &gateway, "gateway_index_entries").await? - entries_before;
    let rss_growth = gateway.rss_kib().saturating_sub(rss_before);
    let bytes_per_entry = rss_growth as f64 * 1024.0 / entries.max(1.0);
    gateway.stop();

    let verdicts = vec![format!(
        "index: {entries:.0} entries added, RSS +{rss_growth} KiB: {bytes_per_entry:.0} bytes per entry (upper bound)"
    )];
    Ok(Report {
        scenario: "tail",
        broker: infra::broker_name(options.broker),
        machine: infra::machine(),
        cell_secs: secs,
        smoke: options.smoke,
        columns: vec![
            "checkouts/s",
            "records/s",
            "KiB/s read",
            "gateway cores",
            "cpu us/record",
            "broker cores alone",
            "broker cores with tail",
            "tail's broker cores",
            "caught up",
        ],
        rows,
        data: json!({
            "rates": data,
            "index": { "entries": entries, "rss_growth_kib": rss_growth, "bytes_per_entry": bytes_per_entry },
        }),
        verdicts,
    })
}

/// Records and bytes (key + payload + headers, as produced) sent.
#[derive(Default)]
struct Sent {
    records: usize,
    bytes: usize,
}

/// One checkout's records: its request, then `session_created`, and
/// `success` when `paid`.
async fn checkout(producer: &FutureProducer, topics: &Topics, paid: bool) -> anyhow::Result<Sent> {
    let request = request();
    let id = request.request_id.clone();
    // Every event carries the checkout's trace, as the services write them.
    let traceparent = TraceContext::new_root().header();
    let extra = [(HEADER_TRACEPARENT, traceparent.as_str())];
    let mut sent = Sent::default();
    let mut events = vec![serde_json::to_vec(&request)?];
    let delivered = vec![send_json(producer, &topics.requests, &id, &request, &extra)];
    let mut finished_events = vec![finished(&id, CheckoutStatus::SessionCreated)];
    if paid {
        finished_events.push(finished(&id, CheckoutStatus::Success));
    }
    join_all(delivered)
        .await
        .into_iter()
        .collect::<Result<Vec<_>, _>>()?;
    for event in &finished_events {
        send_json(producer, &topics.finished, &id, event, &extra).await?;
        events.push(serde_json::to_vec(event)?);
    }
    // The headers every event carries (`event_headers`), names and values.
    let headers = event_headers(&id);
    let header_bytes: usize = headers
        .iter()
        .map(|h| h.key.len() + h.value.map_or(0, <[u8]>::len))
        .sum::<usize>()
        + HEADER_TRACEPARENT.len()
        + traceparent.len();
    for payload in events {
        sent.records += 1;
        sent.bytes += id.len() + payload.len() + header_bytes;
    }
    Ok(sent)
}

/// `rate` checkouts per second for `length`, on a fixed schedule (each
/// checkout's records are sent by a task of its own, so a slow
/// acknowledgement does not hold the schedule back).
async fn produce_at(
    producer: &FutureProducer,
    kafka: &Kafka,
    rate: u32,
    length: Duration,
) -> anyhow::Result<Sent> {
    let start = tokio::time::Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut due = 0_u64;
    let mut tick = tokio::time::interval(TICK);
    while start.elapsed() < length {
        tick.tick().await;
        let should = (start.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        for _ in due..should {
            let (producer, topics) = (producer.clone(), kafka.topics.clone());
            tasks.spawn(async move { checkout(&producer, &topics, true).await });
        }
        due = should;
    }
    let mut total = Sent::default();
    while let Some(sent) = tasks.join_next().await {
        let sent = sent??;
        total.records += sent.records;
        total.bytes += sent.bytes;
    }
    Ok(total)
}

/// `n` checkouts (request + `session_created`), 500 at a time.
async fn fill_index(producer: &FutureProducer, kafka: &Kafka, n: usize) -> anyhow::Result<()> {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        for sent in join_all(
            chunk
                .iter()
                .map(|_| checkout(producer, &kafka.topics, false)),
        )
        .await
        {
            sent?;
        }
    }
    Ok(())
}

/// A metric from the gateway's `/metrics`, summed over its labelled series
/// (`gateway_tail_lag_messages{partition=...}`); an error when it has none.
async fn metric(
    http: &reqwest::Client,
    gateway: &GatewayProcess,
    name: &str,
) -> anyhow::Result<f64> {
    let text = http
        .get(format!("http://{}/metrics", gateway.admin_addr))
        .send()
        .await?
        .text()
        .await?;
    let values: Vec<f64> = text
        .lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(['{', ' ']))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    anyhow::ensure!(
        !values.is_empty(),
        "{name} missing from the gateway's /metrics"
    );
    Ok(values.iter().sum())
}

/// Whether the tail's lag on `checkout.finished` (every partition) reached
/// 0 within `within`.
async fn caught_up(http: &reqwest::Client, gateway: &GatewayProcess, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if metric(http, gateway, "gateway_tail_lag_messages")
            .await
            .is_ok_and(|lag| lag == 0.0)
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}
