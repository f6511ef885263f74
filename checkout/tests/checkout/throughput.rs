//! Throughput is not bounded by Stripe's latency.

use std::time::{Duration, Instant};

use checkout_contract::CheckoutStatus;
use stripe_emulator::Faults;

use crate::helpers::{Options, request, spawn_app_with};

#[tokio::test]
async fn two_hundred_requests_with_300ms_latency_run_concurrently() {
    const N: usize = 200;
    const LATENCY: Duration = Duration::from_millis(300);
    let app = spawn_app_with(Options {
        faults: Faults {
            latency_ms: 300,
            ..Faults::default()
        },
        max_in_flight: 64,
        rate_limit: 2000.0,
        ..Options::default()
    })
    .await;
    // Warm up: the consumer group is joined before the clock starts.
    let warm = request(500);
    app.send(&warm).await;
    app.wait_for(&warm.request_id, CheckoutStatus::SessionCreated)
        .await;

    let requests: Vec<_> = (0..N).map(|_| request(500)).collect();
    let start = Instant::now();
    futures::future::join_all(requests.iter().map(|r| app.send(r))).await;
    println!("{N} requests produced in {:?}", start.elapsed());
    testkit::eventually("200 sessions created", Duration::from_secs(40), || async {
        // Distinct requests: a publish retried under broker load may repeat an event.
        let created: std::collections::HashSet<String> = app
            .finished_events()
            .into_iter()
            .filter(|e| e.status == CheckoutStatus::SessionCreated)
            .map(|e| e.request_id)
            .collect();
        (created.len() == N + 1).then_some(())
    })
    .await;
    let elapsed = start.elapsed();
    let sequential = LATENCY * u32::try_from(N).unwrap();
    println!(
        "{N} requests with {LATENCY:?} Stripe latency: {elapsed:?} (a sequential worker needs at least {sequential:?}, {:.1}x faster)",
        sequential.as_secs_f64() / elapsed.as_secs_f64()
    );
    // Concurrency, not a wall-clock target: every call takes 300 ms, so a sequential
    // worker creates at most 4 sessions in any one second of the emulator's clock.
    let mut per_second = std::collections::BTreeMap::<i64, usize>::new();
    for session in app.emulator.sessions().sessions {
        *per_second.entry(session.created).or_default() += 1;
    }
    let busiest = per_second.values().copied().max().unwrap_or(0);
    println!("busiest second: {busiest} sessions created (a sequential worker: at most 4)");
    assert!(
        busiest >= 8,
        "no concurrency: at most {busiest} sessions in one second ({per_second:?})"
    );
    assert_eq!(
        app.emulator.stats().sessions_created,
        u64::try_from(N).unwrap() + 1
    );
}

#[tokio::test]
async fn the_client_side_rate_limit_spaces_calls_to_stripe() {
    const N: usize = 20;
    const RATE: f64 = 20.0;
    let app = spawn_app_with(Options {
        rate_limit: RATE,
        ..Options::default()
    })
    .await;
    let requests: Vec<_> = (0..N).map(|_| request(500)).collect();
    let start = Instant::now();
    futures::future::join_all(requests.iter().map(|r| app.send(r))).await;
    for r in &requests {
        app.wait_for(&r.request_id, CheckoutStatus::SessionCreated)
            .await;
    }
    let elapsed = start.elapsed();
    println!("{N} requests at {RATE}/s: {elapsed:?}");
    // A burst of 4 (a fifth of the rate), then one call every 50 ms: at least 16 * 50 ms.
    assert!(
        elapsed >= Duration::from_millis(800),
        "{N} calls in {elapsed:?} exceed {RATE}/s"
    );
    assert_eq!(app.emulator.stats().create_calls, u64::try_from(N).unwrap());
}
