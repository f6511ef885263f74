//! Several replicas of the service in one consumer group: the Stripe
//! account's rate limit is shared by partition (the sum of the replicas'
//! calls stays within it, and a replica keeps to its share while it has a
//! backlog), and each open session is reconciled by one replica only.

use checkout_contract::CheckoutStatus;
use stripe_emulator::Outcome;

use crate::helpers::{Options, Replica, TestApp, WAIT, metric, request, spawn_app, spawn_app_with};
use crate::reconcile::{lose_webhooks, reconciling};

const RATE_LINE: &str = "checkout_stripe_rate_limit_per_second";

/// Waits until every replica owns partitions and their shares add up to
/// `limit`; returns the shares.
async fn shares_settled(app: &TestApp, replica: &Replica, limit: f64) -> [f64; 2] {
    testkit::eventually("both replicas hold a share of the budget", WAIT, || async {
        let shares: [f64; 2] = [
            metric(&app.metrics().await, RATE_LINE),
            metric(&replica.metrics().await, RATE_LINE),
        ];
        (shares.iter().all(|s| *s > 0.0) && (shares.iter().sum::<f64>() - limit).abs() < 1e-6)
            .then_some(shares)
    })
    .await
}

/// Sends `n` requests spread evenly over the partitions; returns their ids.
async fn send_spread(app: &TestApp, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let r = request(500);
        let partition = i32::try_from(i).unwrap() % app.topics.partitions;
        app.send_raw(partition, &r.request_id, &serde_json::to_vec(&r).unwrap())
            .await;
        ids.push(r.request_id);
    }
    ids
}

#[tokio::test]
async fn two_replicas_keep_to_the_accounts_stripe_rate_limit_together() {
    const LIMIT: f64 = 20.0;
    const N: usize = 120;
    let app = spawn_app_with(Options {
        rate_limit: LIMIT,
        ..Options::default()
    })
    .await;
    let replica = app.start_replica().await;
    let shares = shares_settled(&app, &replica, LIMIT).await;
    println!("shares of {LIMIT}/s: {shares:?}");

    let from = app.emulator.api_requests_per_second().len();
    let ids = send_spread(&app, N).await;
    for id in &ids {
        app.wait_for(id, CheckoutStatus::SessionCreated).await;
    }
    let per_second = app.emulator.api_requests_per_second()[from..].to_vec();
    println!("Stripe calls per second: {per_second:?}");
    // One session each (a rebalance mid-run redelivers some requests: their
    // second create is answered from Stripe's idempotency store).
    let stats = app.emulator.stats();
    println!("creates: {} for {N} requests", stats.create_calls);
    assert_eq!(stats.sessions_created, u64::try_from(N).unwrap());

    // Every second: at most the limit plus the replicas' bursts, a fifth of
    // the limit plus one per replica (`checkout::assignment`). Two replicas
    // each at the whole limit would make about 40.
    let ceiling = (LIMIT * 1.2) as u32 + 2;
    assert!(
        per_second.iter().all(|n| *n <= ceiling),
        "over {LIMIT}/s + its burst ({ceiling} in all): {per_second:?}"
    );
    // While both had a backlog (the whole seconds between the first and the
    // last, the requests being spread evenly over the partitions), they used
    // at least 90 % of it.
    let busy: Vec<u32> = per_second.iter().copied().skip_while(|n| *n == 0).collect();
    let inner = &busy[1..busy.len().saturating_sub(2).max(1)];
    assert!(!inner.is_empty(), "{per_second:?}");
    let mean = f64::from(inner.iter().sum::<u32>()) / inner.len() as f64;
    assert!(
        mean >= 0.9 * LIMIT,
        "{mean:.1} calls/s with a backlog, below 90 % of {LIMIT}: {per_second:?}"
    );
}

#[tokio::test]
async fn a_replica_alone_takes_the_whole_budget_and_its_probe_says_so() {
    let app = spawn_app().await;
    let limit = Options::default().rate_limit;
    testkit::eventually("the only replica holds the whole limit", WAIT, || async {
        let share: f64 = metric(&app.metrics().await, RATE_LINE);
        ((share - limit).abs() < 1e-6).then_some(())
    })
    .await;
    // Its probe says so too, once the open-session tail caught up.
    let healthz = app.webhook_url.replace("/webhooks/stripe", "/healthz");
    let body: serde_json::Value = testkit::eventually("healthz answers 200", WAIT, || async {
        let response = app.http.get(&healthz).send().await.ok()?;
        (response.status() == 200).then_some(response.json().await.ok()?)
    })
    .await;
    assert_eq!(body["status"], "ok", "{body}");
    assert_eq!(
        body["owned_partitions"],
        serde_json::json!([0, 1, 2]),
        "{body}"
    );
    assert_eq!(body["stripe_rate_limit_per_second"], limit, "{body}");
}

/// The partitions a replica's `/metrics` says it owns.
fn owned(metrics: &str) -> Vec<i32> {
    metrics
        .lines()
        .filter_map(|l| {
            l.strip_prefix("checkout_partition_owned{partition=\"")?
                .split('"')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

#[tokio::test]
async fn each_open_session_is_reconciled_by_one_replica_the_owner_of_its_partition() {
    const N: usize = 9;
    let app = spawn_app_with(reconciling(1)).await;
    let replica = app.start_replica().await;
    shares_settled(&app, &replica, Options::default().rate_limit).await;
    let owned = [owned(&app.metrics().await), owned(&replica.metrics().await)];
    println!("partitions owned: {owned:?}");

    // Sessions opened through the usual path (requests keyed by request_id).
    let mut sessions = Vec::new();
    for _ in 0..N {
        let r = request(700);
        app.send(&r).await;
        let created = app
            .wait_for(&r.request_id, CheckoutStatus::SessionCreated)
            .await;
        sessions.push((r.request_id, created.session_id.expect("a session id")));
    }
    lose_webhooks(&app);
    for (_, session_id) in &sessions {
        app.emulator.pay(session_id, Outcome::Paid).unwrap();
    }
    for (request_id, _) in &sessions {
        app.wait_for(request_id, CheckoutStatus::Success).await;
    }

    // Which replica should have found each: the owner of the partition its
    // session_created is on.
    let records = app.finished.records();
    let expected: Vec<u64> = owned
        .iter()
        .map(|mine| {
            sessions
                .iter()
                .filter(|(request_id, _)| {
                    records.iter().any(|r| {
                        r.key.as_deref() == Some(request_id.as_str())
                            && mine.contains(&(r.partition % app.topics.partitions))
                            && serde_json::from_slice::<checkout_contract::CheckoutFinishedEvent>(
                                &r.payload,
                            )
                            .is_ok_and(|e| e.status == CheckoutStatus::SessionCreated)
                    })
                })
                .count() as u64
        })
        .collect();
    assert_eq!(expected.iter().sum::<u64>(), N as u64, "{owned:?}");
    let success = "checkout_reconciled_total{outcome=\"success\"}";
    let found = testkit::eventually("each owner found its sessions paid", WAIT, || async {
        let found = [
            metric::<u64>(&app.metrics().await, success),
            metric::<u64>(&replica.metrics().await, success),
        ];
        (found.iter().sum::<u64>() >= N as u64).then_some(found)
    })
    .await;
    println!("successes found: {found:?}, expected {expected:?}");
    assert_eq!(
        found.to_vec(),
        expected,
        "a replica reconciled sessions it does not own"
    );
}
