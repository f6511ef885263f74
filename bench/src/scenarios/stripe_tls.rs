//! `stripe-tls`: what a new TLS connection per call to Stripe costs, and
//! what keeping connections gives back. Checkout Session creates (the real
//! `CreateCheckoutSession` request type with an idempotency key, as the
//! worker sends it) against the Stripe emulator (no injected latency), at
//! concurrency 1, 16 and 64, through five clients side by side, slice by
//! slice in the order A B C D E E D C B A:
//!
//! - `async-stripe, http`: async-stripe 1.0.0-rc.10's own client (it keeps
//!   no idle connection) over plain HTTP. It cannot be measured over TLS
//!   here: it trusts only the compiled-in webpki roots, and the emulator's
//!   certificate is signed by a CA generated at run time.
//! - `no pool, http`: the service's transport (`checkout::stripe_http`)
//!   with async-stripe's connection settings (no idle connection, Nagle on),
//!   over plain HTTP: equal to the row above if the stand-in is fair.
//! - `no pool, https`: the same over TLS, the emulator behind a
//!   TLS-terminating front ([`testkit::front::Front`]): what every call to
//!   `api.stripe.com` paid before ("before").
//! - `pooled, https`: the service's transport as it runs now, connections
//!   kept 90 s ("after").
//! - `pooled, http`: kept connections without TLS, the floor.
//!
//! Every client runs in this process with the emulator and the fronts, on
//! loopback: a handshake costs CPU only, no network round trip, so the gain
//! against the real API (one TCP and one TLS 1.3 round trip per call saved,
//! tens of milliseconds away from Stripe's region) is larger than this.
//! Reported per client: sessions/s, call latency p50/p99, connections
//! opened per 100 calls (counted by the fronts), CPU of this process per call.

use std::sync::Arc;
use std::time::Duration;

use checkout::stripe::{idempotency_key, session_params};
use checkout::stripe_http::{StripeHttp, Transport};
use checkout_contract::secret::Secret;
use serde_json::json;
use stripe::{ClientBuilder, IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_emulator::Emulator;
use testkit::front::Front;

use crate::Options;
use crate::infra;
use crate::load::{Recorded, Sample, record};
use crate::report::{Report, f};
use crate::scenarios::worker::request;

/// The concurrency levels measured.
pub const CONCURRENCY: [usize; 3] = [1, 16, 64];

const API_KEY: &str = "sk_test_checkout_bench";

/// A client under test.
#[derive(Clone)]
enum Client {
    AsyncStripe(Arc<stripe::Client>),
    Ours(Arc<StripeHttp>),
}

impl Client {
    /// One Checkout Session create, as the worker makes it.
    async fn create(&self) -> Result<(), String> {
        let valid = request()
            .validate()
            .map_err(|e| format!("invalid request: {e:?}"))?;
        let key = IdempotencyKey::new(idempotency_key(&valid, 0)).map_err(|e| e.to_string())?;
        let call = session_params(&valid)
            .customize()
            .request_strategy(RequestStrategy::Idempotent(key));
        match self {
            Client::AsyncStripe(client) => call
                .send(&**client)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
            Client::Ours(client) => call
                .send(&**client)
                .await
                .map(drop)
                .map_err(|e| e.to_string()),
        }
    }
}

/// A client and the front its connections are counted on.
struct Target {
    name: &'static str,
    client: Client,
    front: Arc<Front>,
}

/// One target at one level.
struct Measured {
    sample: Sample,
    connections_per_100: f64,
    cpu_us_per_call: f64,
}

/// # Errors
/// When the emulator, a front or a client cannot start.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let emulator = Emulator::build(stripe_emulator::Config::default()).await?;
    let upstream = emulator.addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(emulator.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let result = measure_all(upstream, options).await;
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
    let (rows, data, verdicts) = result?;
    Ok(Report {
        scenario: "stripe-tls",
        broker: "no broker (the Stripe emulator in process, loopback)",
        machine: infra::machine(),
        cell_secs: options.cell.as_secs_f64(),
        smoke: options.smoke,
        columns: vec![
            "concurrency",
            "client",
            "sessions/s",
            "p50 ms",
            "p99 ms",
            "connections/100 calls",
            "cpu us/call",
            "errors",
        ],
        rows,
        data,
        verdicts,
    })
}

type Table = (Vec<Vec<String>>, serde_json::Value, Vec<String>);

async fn measure_all(upstream: std::net::SocketAddr, options: &Options) -> anyhow::Result<Table> {
    let plain = Arc::new(Front::plain(upstream).await?);
    let tls = Arc::new(Front::tls(upstream).await?);
    let ca = tls
        .ca_der()
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("the TLS front has no CA"))?;
    let config = |front: &Front| {
        checkout::Config::new(
            "127.0.0.1:1",
            front.base_url(),
            Secret::new(API_KEY),
            Secret::new("whsec_bench"),
        )
        .stripe
    };
    let ours = |front: &Arc<Front>, transport: Transport| -> anyhow::Result<Client> {
        let transport = Transport {
            extra_roots: vec![ca.clone()],
            ..transport
        };
        Ok(Client::Ours(Arc::new(StripeHttp::new(
            &config(front),
            &transport,
        )?)))
    };
    let async_stripe = ClientBuilder::new(API_KEY)
        .url(plain.base_url())
        .timeout(Duration::from_secs(10))
        .app_info("checkout-bench", None, None)
        .build()?;
    let targets = [
        Target {
            name: "async-stripe, http",
            client: Client::AsyncStripe(Arc::new(async_stripe)),
            front: Arc::clone(&plain),
        },
        Target {
            name: "no pool, http",
            client: ours(&plain, Transport::like_async_stripe())?,
            front: Arc::clone(&plain),
        },
        Target {
            name: "no pool, https",
            client: ours(&tls, Transport::like_async_stripe())?,
            front: Arc::clone(&tls),
        },
        Target {
            name: "pooled, https",
            client: ours(&tls, Transport::default())?,
            front: Arc::clone(&tls),
        },
        Target {
            name: "pooled, http",
            client: ours(&plain, Transport::default())?,
            front: Arc::clone(&plain),
        },
    ];
    // Each client answers once before anything is measured.
    for target in &targets {
        target
            .client
            .create()
            .await
            .map_err(|e| anyhow::anyhow!("{}: {e}", target.name))?;
    }

    let levels: &[usize] = if options.smoke {
        &CONCURRENCY[..2]
    } else {
        &CONCURRENCY
    };
    let (mut rows, mut data, mut verdicts) = (Vec::new(), Vec::new(), Vec::new());
    for &concurrency in levels {
        let measured = measure_level(&targets, concurrency, options.cell).await;
        for (target, m) in targets.iter().zip(&measured) {
            rows.push(vec![
                concurrency.to_string(),
                target.name.to_owned(),
                f(m.sample.per_sec, 0),
                f(m.sample.p50_ms, 2),
                f(m.sample.p99_ms, 2),
                f(m.connections_per_100, 1),
                f(m.cpu_us_per_call, 0),
                m.sample.errors.to_string(),
            ]);
            data.push(json!({
                "concurrency": concurrency,
                "client": target.name,
                "sample": m.sample,
                "connections_per_100_calls": m.connections_per_100,
                "process_cpu_us_per_call": m.cpu_us_per_call,
            }));
        }
        let [async_stripe, no_pool_http, before, after, _floor] = &measured[..] else {
            unreachable!("five targets")
        };
        let ratio = |a: f64, b: f64| if b > 0.0 { a / b } else { 0.0 };
        verdicts.push(format!(
            "concurrency {concurrency}: over TLS, kept connections make {:.2}x the sessions/s of a connection per call ({:.0} vs {:.0}/s), p50 {:.2} -> {:.2} ms, p99 {:.2} -> {:.2} ms, {:.0} -> {:.0} us CPU per call; \
             async-stripe's own client over plain HTTP does {:.2}x of the no-pool stand-in ({:.0} vs {:.0}/s){}",
            ratio(after.sample.per_sec, before.sample.per_sec),
            after.sample.per_sec,
            before.sample.per_sec,
            before.sample.p50_ms,
            after.sample.p50_ms,
            before.sample.p99_ms,
            after.sample.p99_ms,
            before.cpu_us_per_call,
            after.cpu_us_per_call,
            ratio(async_stripe.sample.per_sec, no_pool_http.sample.per_sec),
            async_stripe.sample.per_sec,
            no_pool_http.sample.per_sec,
            first_error(&measured),
        ));
    }
    Ok((rows, json!(data), verdicts))
}

/// Every target at `concurrency`, in slices A B C D E E D C B A (the
/// machine is shared: each target gets early and late slices).
async fn measure_level(targets: &[Target], concurrency: usize, cell: Duration) -> Vec<Measured> {
    let slice = cell / 2;
    let mut recorded: Vec<Recorded> = targets.iter().map(|_| Recorded::default()).collect();
    let mut connections = vec![0u64; targets.len()];
    let mut cpu = vec![0.0f64; targets.len()];
    let order: Vec<usize> = (0..targets.len()).chain((0..targets.len()).rev()).collect();
    for i in order {
        let target = &targets[i];
        let client = target.client.clone();
        let (conns0, cpu0) = (target.front.connections(), process_cpu_secs());
        let slice_recorded = record(concurrency, slice, move || {
            let client = client.clone();
            async move { client.create().await }
        })
        .await;
        // Connections a slice opened and dropped at its end close later;
        // only the opening is counted.
        connections[i] += target.front.connections() - conns0;
        cpu[i] += process_cpu_secs() - cpu0;
        recorded[i].merge(slice_recorded);
    }
    recorded
        .into_iter()
        .zip(connections.into_iter().zip(cpu))
        .map(|(r, (conns, cpu_secs))| {
            let calls = (r.latencies_us.len() as u64 + r.errors).max(1) as f64;
            Measured {
                connections_per_100: conns as f64 / calls * 100.0,
                cpu_us_per_call: cpu_secs / calls * 1e6,
                sample: r.sample(),
            }
        })
        .collect()
}

/// CPU seconds this process (clients, fronts and emulator) has used.
fn process_cpu_secs() -> f64 {
    infra::process_cpu_secs(std::process::id())
}

fn first_error(measured: &[Measured]) -> String {
    measured
        .iter()
        .find_map(|m| m.sample.first_error.as_ref())
        .map(|e| format!("; first error: {e}"))
        .unwrap_or_default()
}
