//! `worker`: Checkout Sessions created per second by the checkout worker
//! with 300 ms emulator latency and its Stripe rate limit at 100/s, from a
//! backlog on `checkout.requests`. Target: ≥ 90 % of the limit, zero
//! duplicate sessions (counted per `client_reference_id` = request_id).

use std::sync::Arc;
use std::time::{Duration, Instant};

use checkout_contract::kafka::send_json;
use checkout_contract::{CheckoutFinishedEvent, CheckoutRequestEvent, CheckoutStatus, RequestId};
use futures::StreamExt;
use rdkafka::producer::FutureProducer;
use serde_json::json;

use crate::Options;
use crate::infra;
use crate::report::{Report, f};
use crate::system::{Setup, System};

const LATENCY: Duration = Duration::from_millis(300);
const RATE_LIMIT: f64 = 100.0;

/// # Errors
/// When a part cannot start or the backlog is not worked off in time.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let system = System::start(Setup {
        stripe_latency: LATENCY,
        rate_limit: RATE_LIMIT,
        broker: options.broker,
        with_gateway: false,
    })
    .await?;
    let result = measure(&system, options).await;
    system.stop().await;
    let (rate, created, distinct, window) = result?;
    let duplicates = created.saturating_sub(distinct);
    let share = rate / RATE_LIMIT;
    let met = share >= 0.9 && duplicates == 0;
    Ok(Report {
        scenario: "worker",
        broker: infra::broker_name(options.broker),
        machine: infra::machine(),
        cell_secs: window.as_secs_f64(),
        smoke: options.smoke,
        columns: vec![
            "stripe latency ms",
            "limit/s",
            "sessions/s",
            "of limit",
            "sessions",
            "duplicates",
            "met",
        ],
        rows: vec![vec![
            LATENCY.as_millis().to_string(),
            f(RATE_LIMIT, 0),
            f(rate, 1),
            f(share, 3),
            created.to_string(),
            duplicates.to_string(),
            if met { "yes" } else { "NO" }.to_owned(),
        ]],
        data: json!({
            "stripe_latency_ms": LATENCY.as_millis(),
            "rate_limit_per_sec": RATE_LIMIT,
            "sessions_per_sec": rate,
            "share_of_limit": share,
            "sessions_created": created,
            "distinct_request_ids": distinct,
            "duplicates": duplicates,
            "target_met": met,
        }),
        verdicts: vec![format!(
            "{rate:.1} sessions/s = {:.1} % of the {RATE_LIMIT:.0}/s limit (target >= 90 %), {duplicates} duplicate sessions (target 0)",
            share * 100.0
        )],
    })
}

/// A valid request of its own (a fresh request_id), as a gateway would send it.
pub fn request() -> CheckoutRequestEvent {
    CheckoutRequestEvent {
        request_id: RequestId::new_random().to_string(),
        user_id: 1,
        amount_cents: 500,
        currency: "eur".to_owned(),
        purpose: "balance_topup".to_owned(),
        timestamp: checkout_contract::events::now(),
        success_url: "https://shop.example/checkout/success".to_owned(),
        cancel_url: "https://shop.example/checkout/cancel".to_owned(),
    }
}

/// A `checkout.finished` event of `id` with `status`, as the worker or the
/// webhook writes it (a session of its own).
pub fn finished(id: &str, status: CheckoutStatus) -> CheckoutFinishedEvent {
    CheckoutFinishedEvent {
        request_id: id.to_owned(),
        user_id: 1,
        amount_cents: 500,
        currency: "eur".into(),
        purpose: "balance_topup".into(),
        status,
        session_id: Some(format!(
            "cs_test_{}",
            RequestId::new_random().to_string().replace('-', "")
        )),
        session_url: (status == CheckoutStatus::SessionCreated)
            .then(|| "https://checkout.stripe.com/c/pay/cs_test_bench".into()),
        payment_intent_id: (status == CheckoutStatus::Success).then(|| {
            format!(
                "pi_{}",
                RequestId::new_random().to_string().replace('-', "")
            )
        }),
        error_message: None,
        timestamp: checkout_contract::events::now(),
    }
}

/// (sessions/s in the steady window, sessions created, distinct request ids, window).
async fn measure(
    system: &System,
    options: &Options,
) -> anyhow::Result<(f64, usize, usize, Duration)> {
    let producer: FutureProducer = system.kafka.config.producer_config().create()?;
    let producer = Arc::new(producer);
    let topic = system.kafka.topics.requests.clone();
    let count = || system.emulator.sessions().sessions.len();

    // Warm-up: the worker has joined its group once one session exists.
    let warm = request();
    send_json(&producer, &topic, &warm.request_id, &warm, &[]).await?;
    wait_for(
        || count() >= 1,
        Duration::from_secs(60),
        "the warm-up session",
    )
    .await?;

    let window = if options.smoke {
        Duration::from_secs(1)
    } else {
        options.cell.max(Duration::from_secs(10))
    };
    // A backlog larger than the window can drain, so the worker never idles in it.
    let backlog = (RATE_LIMIT * window.as_secs_f64()) as usize + 100;
    let events: Vec<_> = (0..backlog).map(|_| request()).collect();
    let mut sends: futures::stream::FuturesUnordered<_> = events
        .iter()
        .map(|e| send_json(&producer, &topic, &e.request_id, e, &[]))
        .collect();
    while let Some(sent) = sends.next().await {
        sent?;
    }
    drop(sends);

    // The steady window starts at the first session of the backlog.
    wait_for(
        || count() >= 2,
        Duration::from_secs(60),
        "the first backlog session",
    )
    .await?;
    let c0 = count();
    let t0 = Instant::now();
    tokio::time::sleep(window).await;
    let c1 = count();
    let rate = (c1 - c0) as f64 / t0.elapsed().as_secs_f64();

    let total = backlog + 1;
    let drain = Duration::from_secs_f64(backlog as f64 / RATE_LIMIT * 3.0 + 30.0);
    wait_for(|| count() >= total, drain, "every backlog session").await?;
    // Late duplicates would show up now.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let report = system.emulator.sessions();
    let created = report.sessions.len();
    let distinct = report.created_per_client_reference_id.len();
    Ok((rate, created, distinct, window))
}

async fn wait_for(
    mut check: impl FnMut() -> bool,
    timeout: Duration,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    while !check() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{what} did not appear within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}
