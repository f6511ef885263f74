//! `e2e`: the whole checkout path through real parts, emulator latency 0:
//! (1) StartCheckout with `wait_for_session` until it answers
//! SESSION_CREATED (gateway -> Kafka -> worker -> emulator -> Kafka ->
//! gateway tail), and (2) from `pay` on the emulator until `success` arrives
//! on an open WatchCheckout stream (emulator webhook -> checkout webhook ->
//! Kafka -> gateway tail -> stream). p50/p99 of each, at concurrency 1 and 16.

use std::time::{Duration, Instant};

use checkout_contract::pb;
use checkout_contract::pb::checkout_gateway_client::CheckoutGatewayClient;
use serde_json::json;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::Channel;

use crate::Options;
use crate::infra;
use crate::load::{Sample, closed_loop_timed};
use crate::report::{Report, f};
use crate::system::{Setup, System};

/// # Errors
/// When a part cannot start.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let system = System::start(Setup {
        stripe_latency: Duration::ZERO,
        rate_limit: 1000.0,
        broker: options.broker,
        with_gateway: true,
    })
    .await?;
    let result = measure(&system, options).await;
    system.stop().await;
    let cells = result?;
    let mut rows = Vec::new();
    let mut data = Vec::new();
    let mut verdicts = Vec::new();
    for (c, created, success) in cells {
        rows.push(vec![
            c.to_string(),
            created.ok.to_string(),
            format!("{}/{}", f(created.p50_ms, 1), f(created.p99_ms, 1)),
            success.ok.to_string(),
            format!("{}/{}", f(success.p50_ms, 1), f(success.p99_ms, 1)),
            (created.errors + success.errors).to_string(),
        ]);
        verdicts.push(format!(
            "concurrency {c}: start -> session_created p50 {:.1} ms p99 {:.1} ms; pay -> success on the stream p50 {:.1} ms p99 {:.1} ms{}",
            created.p50_ms,
            created.p99_ms,
            success.p50_ms,
            success.p99_ms,
            created.first_error.as_deref().or(success.first_error.as_deref()).map(|e| format!("; first error: {e}")).unwrap_or_default(),
        ));
        data.push(json!({"concurrency": c, "session_created": created, "pay_to_success": success}));
    }
    Ok(Report {
        scenario: "e2e",
        broker: infra::broker_name(options.broker),
        machine: infra::machine(),
        cell_secs: options.cell.as_secs_f64(),
        smoke: options.smoke,
        columns: vec![
            "conc",
            "sessions",
            "start->session_created p50/p99 ms",
            "payments",
            "pay->success p50/p99 ms",
            "errors",
        ],
        rows,
        data: json!(data),
        verdicts,
    })
}

async fn measure(
    system: &System,
    options: &Options,
) -> anyhow::Result<Vec<(usize, Sample, Sample)>> {
    let addr = system
        .gateway
        .ok_or_else(|| anyhow::anyhow!("no gateway"))?;
    let channel = Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let bearer: MetadataValue<Ascii> = format!("Bearer {}", system.token).parse()?;
    // Warm-up: groups joined, tail assigned; the first call may take a while.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match start(&channel, &bearer).await {
            Ok(_) => break,
            Err(e) if Instant::now() < deadline => tracing::debug!(error = %e, "warming up"),
            Err(e) => anyhow::bail!("no session_created within 60 s: {e}"),
        }
    }
    let levels: &[usize] = if options.smoke { &[1] } else { &[1, 16] };
    let mut cells = Vec::new();
    for &c in levels {
        let created = {
            let (channel, bearer) = (channel.clone(), bearer.clone());
            closed_loop_timed(c, options.cell, move || {
                let (channel, bearer) = (channel.clone(), bearer.clone());
                async move {
                    let t = Instant::now();
                    start(&channel, &bearer).await.map(|_| t.elapsed())
                }
            })
            .await
        };
        let success = {
            let (channel, bearer, emulator) =
                (channel.clone(), bearer.clone(), system.emulator.clone());
            closed_loop_timed(c, options.cell, move || {
                let (channel, bearer, emulator) =
                    (channel.clone(), bearer.clone(), emulator.clone());
                async move { pay_to_success(&channel, &bearer, &emulator).await }
            })
            .await
        };
        cells.push((c, created, success));
    }
    Ok(cells)
}

/// StartCheckout waiting (at most 10 s) for the session; (request_id, session_id).
pub(crate) async fn start(
    channel: &Channel,
    bearer: &MetadataValue<Ascii>,
) -> Result<(String, String), String> {
    let mut client = CheckoutGatewayClient::new(channel.clone());
    let mut request = tonic::Request::new(pb::StartCheckoutRequest {
        user_id: 1,
        amount_cents: 500,
        currency: "eur".to_owned(),
        purpose: String::new(),
        success_url: "https://shop.example/checkout/success".to_owned(),
        cancel_url: "https://shop.example/checkout/cancel".to_owned(),
        idempotency_key: None,
        wait_for_session: Some(prost_types_duration(Duration::from_secs(10))),
    });
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    let answer = client
        .start_checkout(request)
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    if answer.status != pb::CheckoutStatus::SessionCreated as i32 {
        return Err(format!(
            "StartCheckout answered status {} ({:?})",
            answer.status, answer.error_message
        ));
    }
    let session = answer
        .session_id
        .ok_or("SESSION_CREATED without a session_id")?;
    Ok((answer.request_id, session))
}

fn prost_types_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: 0,
    }
}

/// A fresh checkout (not timed), its watch opened and its session_created
/// seen, then timed: pay on the emulator until `success` on the stream.
async fn pay_to_success(
    channel: &Channel,
    bearer: &MetadataValue<Ascii>,
    emulator: &stripe_emulator::Handle,
) -> Result<Duration, String> {
    let (request_id, session_id) = start(channel, bearer).await?;
    let mut client = CheckoutGatewayClient::new(channel.clone());
    let mut request = tonic::Request::new(pb::WatchCheckoutRequest {
        request_id,
        resume_after: None,
    });
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    let mut stream = client
        .watch_checkout(request)
        .await
        .map_err(|s| s.to_string())?
        .into_inner();
    let status = |u: &pb::CheckoutUpdate| u.event.as_ref().map_or(0, |e| e.status);
    // The replay: session_created first.
    loop {
        match stream.message().await.map_err(|s| s.to_string())? {
            Some(u) if status(&u) == pb::CheckoutStatus::SessionCreated as i32 => break,
            Some(_) => {}
            None => return Err("watch ended before session_created".to_owned()),
        }
    }
    let t = Instant::now();
    emulator
        .pay(&session_id, stripe_emulator::Outcome::Paid)
        .map_err(|e| format!("pay: {e:?}"))?;
    loop {
        match tokio::time::timeout(Duration::from_secs(10), stream.message()).await {
            Err(_) => return Err("no success within 10 s of pay".to_owned()),
            Ok(Err(s)) => return Err(s.to_string()),
            Ok(Ok(None)) => return Err("watch ended without success".to_owned()),
            Ok(Ok(Some(u))) if status(&u) == pb::CheckoutStatus::Success as i32 => {
                return Ok(t.elapsed());
            }
            Ok(Ok(Some(_))) => {}
        }
    }
}
