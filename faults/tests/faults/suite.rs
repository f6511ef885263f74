//! 500 checkouts through gateway -> checkout worker -> Stripe emulator ->
//! webhook -> blazing_sun (PostgreSQL of the suite's own), on a durable
//! Tansu of the suite's own, while the worker and blazing_sun are each
//! SIGKILLed and restarted 3 times, the broker once (same storage),
//! PostgreSQL is stopped for 20 s once, and the emulator duplicates 20 % of
//! webhooks, reorders 10 %, loses every webhook of 10 % of the sessions
//! (reconciliation finds their outcome) and answers 5 % of API calls with
//! 500; 5 % of the requests are produced twice with different trace
//! headers. Then: one terminal outcome per request, no contradicting ones,
//! one credit per paid checkout, balances equal paid amounts, one Stripe
//! session per request, zero lag, empty dead-letter topics.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use checkout_contract::auth::{JwtIssuer, Role};
use checkout_contract::kafka::{HEADER_TRACEPARENT, ensure_topics, send_json};
use checkout_contract::pb::StartCheckoutRequest;
use checkout_contract::pb::checkout_gateway_client::CheckoutGatewayClient;
use checkout_contract::secret::Secret;
use checkout_contract::topics::{PARTITIONS, Topics, consumer_groups};
use checkout_contract::trace::TraceContext;
use checkout_contract::{CheckoutFinishedEvent, CheckoutRequestEvent, CheckoutStatus};
use stripe_emulator::session::{PaymentStatus, Status};
use stripe_emulator::{Faults, Outcome};
use testkit::broker::TestBroker;
use testkit::eventually;
use tokio::sync::watch;
use tonic::Request;
use tonic::metadata::MetadataValue;

use crate::nodes::{Node, NodeSpec};
use crate::observe;

const CHECKOUTS: usize = 500;
/// Concurrent gateway clients, each pausing between its checkouts, so the
/// checkouts spread over the kills instead of all landing before the first.
const CLIENTS: usize = 4;
const CLIENT_PAUSE: Duration = Duration::from_millis(100);
/// How far past the next kill's threshold the clients may go.
const AHEAD: usize = 30;
/// The worker is a static consumer-group member under this name, as
/// docker-compose.yml runs it: a restarted worker takes its dead
/// predecessor's place in the group at once (see `Kill::Worker`).
const WORKER_INSTANCE_ID: &str = "fault-suite-worker";
const JWT_SECRET: &str = "fault-suite-jwt-secret";
const WEBHOOK_SECRET: &str = "whsec_fault_suite_0123456789";

/// Every this many checkouts, one is produced straight onto
/// `checkout.requests` twice, with different trace headers (what a
/// producer's retry or two racing gateway replicas do): 5 %.
const DUPLICATED_EVERY: usize = 20;
/// How long PostgreSQL stays down.
const POSTGRES_DOWN: Duration = Duration::from_secs(20);

#[derive(Debug, Clone, Copy)]
enum Kill {
    Worker,
    BlazingSun,
    Broker,
    /// Not a SIGKILL of ours: the database stops for [`POSTGRES_DOWN`].
    Postgres,
}

/// When (checkouts accepted by the gateway) each kill happens.
const PLAN: [(usize, Kill); 8] = [
    (40, Kill::Worker),
    (90, Kill::BlazingSun),
    (120, Kill::Postgres),
    (150, Kill::Broker),
    (210, Kill::Worker),
    (270, Kill::BlazingSun),
    (330, Kill::Worker),
    (390, Kill::BlazingSun),
];

/// How the emulator's customer finishes the session of `request_id`: mostly
/// paid, some settle later, some fail later, some expire.
fn outcome_for(request_id: &str) -> Outcome {
    let h = request_id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    match h % 10 {
        0 => Outcome::AsyncFailed,
        1 => Outcome::Expired,
        2 => Outcome::AsyncSucceeded,
        _ => Outcome::Paid,
    }
}

async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn five_hundred_checkouts_survive_sigkills_a_broker_crash_and_a_misbehaving_stripe() {
    testkit::init_tracing();
    let t0 = Instant::now();
    let mut broker = TestBroker::start().await;
    let bootstrap = broker.bootstrap();
    // Idempotent producers, as in production, unless the broker is Tansu 0.6.0
    // (it panics on the epoch bump librdkafka does after an outage).
    let kafka = broker.config("fault-suite");
    let idempotence = kafka.enable_idempotence.to_string();
    let topics = Topics::default();
    ensure_topics(&kafka, &topics.all(), PARTITIONS)
        .await
        .expect("topics");
    let postgres = testkit::postgres::Cluster::start().await;
    let database_url = postgres.fresh_database().await;
    let (stop, stop_rx) = watch::channel(false);

    // Stripe: the emulator, in process, with the faults of the issue.
    let mut emulator_config = stripe_emulator::Config::default();
    // Webhooks outlast a worker restart after a broker crash (Stripe retries for days).
    emulator_config.delivery.max_attempts = 60;
    let emulator = stripe_emulator::Emulator::build(emulator_config)
        .await
        .expect("emulator");
    let stripe = emulator.handle();
    let api_base = emulator.api_base();
    tokio::spawn(emulator.run_until_stopped(stopped(stop_rx.clone())));
    let webhook_addr = format!("127.0.0.1:{}", testkit::free_port());
    stripe.set_webhook(
        Some(format!("http://{webhook_addr}/webhooks/stripe")),
        Some(WEBHOOK_SECRET.into()),
    );
    stripe
        .set_faults(Faults {
            rate_500: 0.05,
            webhook_duplicate_rate: 0.20,
            webhook_out_of_order_rate: 0.10,
            webhook_lost_rate: 0.10,
            ..Faults::default()
        })
        .expect("fault rates");

    // The checkout worker and blazing_sun: real processes, configured like their binaries.
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        [
            ("KAFKA_BOOTSTRAP_SERVERS", bootstrap.as_str()),
            ("KAFKA_ENABLE_IDEMPOTENCE", idempotence.as_str()),
        ]
        .iter()
        .chain(pairs)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    };
    let mut worker = Node::start(NodeSpec {
        service: "checkout",
        env: env(&[
            ("STRIPE_SECRET_KEY", "sk_test_fault_suite"),
            ("STRIPE_API_BASE", &api_base),
            ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("CHECKOUT_WEBHOOK_LISTEN", &webhook_addr),
            ("CHECKOUT_STRIPE_RATE_LIMIT", "500"),
            ("CHECKOUT_STRIPE_RETRY_BASE_MS", "20"),
            ("CHECKOUT_STRIPE_RETRY_MAX_MS", "200"),
            ("CHECKOUT_GROUP_INSTANCE_ID", WORKER_INSTANCE_ID),
            // Sessions whose webhooks are all lost are found by reconciliation.
            ("CHECKOUT_RECONCILE_INTERVAL_SECS", "2"),
            ("CHECKOUT_RECONCILE_AFTER_SECS", "5"),
        ]),
    });
    let bs_addr = format!("127.0.0.1:{}", testkit::free_port());
    let mut blazing_sun = Node::start(NodeSpec {
        service: "blazing_sun",
        env: env(&[
            ("DATABASE_URL", &database_url),
            ("JWT_SECRET", JWT_SECRET),
            ("BLAZING_SUN_LISTEN", &bs_addr),
            // Small batches: many commits, so the kills land between some of them.
            ("BLAZING_SUN_BATCH_SIZE", "20"),
            // A dynamic member (the default), unlike the worker: a killed
            // member's partitions move on after 3 s, when its session ends.
            ("BLAZING_SUN_SESSION_TIMEOUT_MS", "3000"),
        ]),
    });

    // The gateway, in process, with JWT auth on: the suite calls it as a service.
    let jwt = Secret::new(JWT_SECRET.to_owned());
    let mut gw_kafka = kafka.clone();
    gw_kafka.client_id = "gateway".into();
    let gw = gateway::Gateway::build(gateway::Config::new(
        gw_kafka,
        topics.clone(),
        gateway::AuthMode::Jwt(jwt.clone()),
    ))
    .await
    .expect("gateway");
    let grpc = format!("http://{}", gw.grpc_addr());
    tokio::spawn(gw.run_until_stopped(stopped(stop_rx.clone())));
    let token = JwtIssuer::new(&jwt).issue("fault-suite", Role::Service, Duration::from_secs(3600));

    let http = reqwest::Client::new();
    eventually("blazing_sun healthy", Duration::from_secs(60), || {
        let url = format!("http://{bs_addr}/healthz");
        let http = http.clone();
        async move {
            http.get(url)
                .send()
                .await
                .ok()
                .filter(|r| r.status().is_success())
                .map(|_| ())
        }
    })
    .await;
    let db = sqlx::PgPool::connect(&database_url)
        .await
        .expect("database");
    println!(
        "fault suite: system up after {:.1}s",
        t0.elapsed().as_secs_f64()
    );

    // The customer: finishes every open session as `outcome_for` says.
    let payer = tokio::spawn(pay_every_session(stripe.clone(), stop_rx.clone()));

    // The clients: 500 StartCheckouts, each retried with its idempotency key
    // until the gateway accepts it (it answers UNAVAILABLE while the broker is down).
    // The clients stay at most AHEAD checkouts past the next kill, so every
    // restarted process has work waiting for it.
    let (allowed, allowed_rx) = watch::channel(PLAN[0].0 + AHEAD);
    let producer = kafka.producer().expect("producer");
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, accepted, retries) = (next.clone(), accepted.clone(), retries.clone());
            let (grpc, token, mut allowed) = (grpc.clone(), token.clone(), allowed_rx.clone());
            let (producer, requests) = (producer.clone(), topics.requests.clone());
            tokio::spawn(async move {
                let mut client = CheckoutGatewayClient::connect(grpc)
                    .await
                    .expect("gateway reachable");
                let mut ids = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= CHECKOUTS {
                        return ids;
                    }
                    allowed.wait_for(|a| i < *a).await.expect("the plan runs");
                    let id = if i % DUPLICATED_EVERY == 7 {
                        produce_twice(&producer, &requests, i, &retries).await
                    } else {
                        start_checkout(&mut client, &token, i, &retries).await
                    };
                    ids.push(id);
                    accepted.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(CLIENT_PAUSE).await;
                }
            })
        })
        .collect();

    // The faults.
    for (step, (threshold, kill)) in PLAN.into_iter().enumerate() {
        eventually(
            &format!("{threshold} checkouts accepted"),
            Duration::from_secs(90),
            || {
                let accepted = accepted.clone();
                async move { (accepted.load(Ordering::SeqCst) >= threshold).then_some(()) }
            },
        )
        .await;
        let at = t0.elapsed().as_secs_f64();
        match kill {
            Kill::Worker => {
                // Restarted at once under the same group.instance.id: the new
                // process takes the dead one's member id and partitions
                // without waiting for its 10 s session to expire (Tansu 0.6.0
                // holds a static member's JoinGroup and SyncGroup 3 s each;
                // Kafka answers at once). As a dynamic member it would join
                // as a follower of its own ghost; when the ghost's session
                // ends during its SyncGroup, Tansu completes the generation
                // with the follower's empty assignment list and never
                // rebalances again: no partitions for good (3 of 5 immediate
                // restarts, `cargo run -p faults --example rejoin`).
                worker.kill9_and_restart();
                // The new process owns every partition: the group's commits
                // reach, on each one, the end it had at the kill (only a
                // live owner commits; the old process is dead).
                let group = consumer_groups::CHECKOUT_SERVICE;
                let ends = observe::end_offsets(&kafka, group, &topics.requests).await;
                let caught_up = tokio::time::timeout(
                    Duration::from_secs(60),
                    eventually("", Duration::from_secs(3600), || {
                        let (kafka, topic, ends) = (kafka.clone(), topics.requests.clone(), &ends);
                        async move {
                            observe::committed_at_least(&kafka, group, &topic, ends)
                                .await
                                .then_some(())
                        }
                    }),
                )
                .await;
                if caught_up.is_err() {
                    let rows =
                        stack::monitor::lag(&kafka, group, std::slice::from_ref(&topics.requests))
                            .await;
                    panic!(
                        "the restarted worker did not commit up to {ends:?} within 60 s; accepted {}, stats {:?}, {group} lag: {rows:?}",
                        accepted.load(Ordering::SeqCst),
                        stripe.stats()
                    );
                }
            }
            Kill::BlazingSun => {
                blazing_sun.kill9_and_restart();
                let before = observe::terminal_checkouts(&db).await;
                eventually(
                    "the restarted blazing_sun to apply events",
                    Duration::from_secs(60),
                    || {
                        let db = db.clone();
                        async move {
                            (observe::terminal_checkouts(&db).await >= before + 5).then_some(())
                        }
                    },
                )
                .await;
            }
            Kill::Postgres => {
                postgres.stop().await;
                // The outage's length, not a synchronisation.
                tokio::time::sleep(POSTGRES_DOWN).await;
                postgres.start_again().await;
                let terminal = observe::terminal_checkouts(&db).await;
                eventually(
                    "blazing_sun to apply events after the database came back",
                    Duration::from_secs(60),
                    || {
                        let db = db.clone();
                        async move {
                            (observe::terminal_checkouts(&db).await >= terminal + 5).then_some(())
                        }
                    },
                )
                .await;
            }
            Kill::Broker => {
                broker.kill9();
                broker.restart().await;
                let (calls, terminal) = (
                    stripe.stats().create_calls,
                    observe::terminal_checkouts(&db).await,
                );
                eventually(
                    "the system to work again after the broker restart",
                    Duration::from_secs(90),
                    || {
                        let (stripe, db) = (stripe.clone(), db.clone());
                        async move {
                            (stripe.stats().create_calls >= calls + 5
                                && observe::terminal_checkouts(&db).await >= terminal + 5)
                                .then_some(())
                        }
                    },
                )
                .await;
            }
        }
        println!(
            "fault suite: {kill:?} {} at {at:.1}s ({threshold} accepted), working again at {:.1}s ({} accepted)",
            if matches!(kill, Kill::Postgres) {
                "stopped for 20 s"
            } else {
                "SIGKILLed"
            },
            t0.elapsed().as_secs_f64(),
            accepted.load(Ordering::SeqCst)
        );
        worker.assert_running();
        blazing_sun.assert_running();
        let _ = allowed.send(
            PLAN.get(step + 1)
                .map_or(CHECKOUTS, |(next, _)| next + AHEAD),
        );
    }

    let mut request_ids = BTreeSet::new();
    for client in clients {
        request_ids.extend(client.await.expect("client task"));
    }
    assert_eq!(request_ids.len(), CHECKOUTS, "one request_id per checkout");

    // Settle: every checkout terminal in blazing_sun, every paid session credited, no lag.
    let settle = Instant::now();
    eventually(
        "every checkout terminal and every paid session credited",
        Duration::from_secs(90),
        || {
            let (db, stripe) = (db.clone(), stripe.clone());
            async move {
                let paid = stripe
                    .sessions()
                    .sessions
                    .iter()
                    .filter(|s| s.payment_status == PaymentStatus::Paid)
                    .count();
                let terminal = usize::try_from(observe::terminal_checkouts(&db).await).ok()?;
                let credited = observe::ledger_rows(&db).await.len();
                (terminal >= CHECKOUTS && credited >= paid).then_some(())
            }
        },
    )
    .await;
    for (group, topic) in [
        (consumer_groups::CHECKOUT_SERVICE, topics.requests.clone()),
        (consumer_groups::MAIN_APP, topics.finished.clone()),
    ] {
        eventually(
            &format!("zero lag for {group}"),
            Duration::from_secs(30),
            || {
                let (kafka, topic) = (kafka.clone(), topic.clone());
                async move { (observe::lag(&kafka, group, &topic).await == Some(0)).then_some(()) }
            },
        )
        .await;
    }
    println!(
        "fault suite: settled {:.1}s after the last checkout was accepted",
        settle.elapsed().as_secs_f64()
    );
    worker.assert_running();
    blazing_sun.assert_running();
    let _ = stop.send(true);
    let paid_by_customer = payer.await.expect("payer task");

    // The books.
    let requested: BTreeSet<String> = observe::read_topic(&kafka, &topics.requests)
        .await
        .iter()
        .map(|v| {
            serde_json::from_slice::<CheckoutRequestEvent>(v)
                .expect("request event")
                .request_id
        })
        .collect();
    let finished: Vec<CheckoutFinishedEvent> = observe::read_topic(&kafka, &topics.finished)
        .await
        .iter()
        .map(|v| serde_json::from_slice(v).expect("finished event"))
        .collect();
    let mut terminal: BTreeMap<&str, Vec<CheckoutStatus>> = BTreeMap::new();
    for e in finished.iter().filter(|e| e.status.is_terminal()) {
        terminal.entry(&e.request_id).or_default().push(e.status);
    }
    let sessions = stripe.sessions();
    let paid: BTreeMap<String, i64> = sessions
        .sessions
        .iter()
        .filter(|s| s.payment_status == PaymentStatus::Paid)
        .map(|s| {
            (
                s.client_reference_id.clone().expect("client_reference_id"),
                s.amount_total,
            )
        })
        .collect();
    let ledger = observe::ledger_rows(&db).await;
    let mut dead_lettered = Vec::new();
    for topic in [&topics.requests_dlq, &topics.finished_dlq] {
        let count = testkit::broker::message_count(&kafka, topic).await;
        dead_lettered.push((topic.clone(), count));
    }
    let lost_webhooks = sessions
        .sessions
        .iter()
        .filter(|s| stripe.webhooks_lost(&s.id))
        .count();
    let balances = observe::balance_sum(&db).await;
    let stats = stripe.stats();

    let success = terminal
        .values()
        .filter(|s| s[0] == CheckoutStatus::Success)
        .count();
    let repeated = terminal.values().map(|s| s.len() - 1).sum::<usize>();
    let contradicting: Vec<_> = terminal
        .iter()
        .filter(|(_, s)| s.iter().any(|x| *x != s[0]))
        .map(|(id, s)| format!("{id}: {s:?}"))
        .collect();
    let without_terminal: Vec<_> = requested
        .iter()
        .filter(|id| !terminal.contains_key(id.as_str()))
        .collect();
    let credited_twice: Vec<_> = ledger.iter().filter(|(_, (n, _))| *n != 1).collect();
    let credit_mismatch: Vec<_> = paid
        .iter()
        .filter(|(id, amount)| ledger.get(*id).map(|(_, a)| a) != Some(amount))
        .collect();
    let credited_unpaid: Vec<_> = ledger.keys().filter(|id| !paid.contains_key(*id)).collect();
    let success_unpaid: Vec<_> = terminal
        .iter()
        .filter(|(id, s)| (s[0] == CheckoutStatus::Success) != paid.contains_key(**id))
        .map(|(id, _)| *id)
        .collect();
    let double_sessions: Vec<_> = sessions
        .created_per_client_reference_id
        .iter()
        .filter(|(_, n)| **n > 1)
        .collect();
    let paid_sum: i64 = paid.values().sum();

    println!(
        "fault suite figures: checkouts={CHECKOUTS} requested={} terminal={} success={success} failed={} \
         repeated_identical_terminal={repeated} contradicting={} without_terminal={}",
        requested.len(),
        terminal.len(),
        terminal.len() - success,
        contradicting.len(),
        without_terminal.len(),
    );
    println!(
        "fault suite figures: paid_sessions={} ledger_rows={} credited_twice={} credit_mismatch={} credited_unpaid={} \
         balance_sum={balances} paid_sum={paid_sum}",
        paid.len(),
        ledger.len(),
        credited_twice.len(),
        credit_mismatch.len(),
        credited_unpaid.len(),
    );
    println!(
        "fault suite figures: stripe sessions={} create_calls={} injected_500={} idempotent_replays={} \
         max_sessions_per_request={} sessions_with_every_webhook_lost={lost_webhooks} webhooks_lost={} \
         customer={paid_by_customer:?} dead_lettered={dead_lettered:?}",
        sessions.sessions.len(),
        stats.create_calls,
        stats.injected_500,
        stats.idempotent_replays,
        sessions
            .created_per_client_reference_id
            .values()
            .max()
            .copied()
            .unwrap_or(0),
        stats.webhooks_lost,
    );
    println!(
        "fault suite figures: kills worker={} blazing_sun={} broker=1 postgres_down={}s \
         requests_produced_twice={} gateway_retries={} lag=0/0 total={:.1}s",
        worker.kills,
        blazing_sun.kills,
        POSTGRES_DOWN.as_secs(),
        CHECKOUTS.div_ceil(DUPLICATED_EVERY),
        retries.load(Ordering::SeqCst),
        t0.elapsed().as_secs_f64()
    );

    assert_eq!(worker.kills, 3);
    assert_eq!(blazing_sun.kills, 3);
    assert!(
        request_ids.is_subset(&requested),
        "every accepted checkout is on checkout.requests"
    );
    assert_eq!(
        requested.len(),
        CHECKOUTS,
        "no request the clients did not make"
    );
    assert!(
        without_terminal.is_empty(),
        "requests without a terminal outcome: {without_terminal:?}"
    );
    assert!(
        contradicting.is_empty(),
        "contradicting terminal outcomes: {contradicting:?}"
    );
    assert!(
        success_unpaid.is_empty(),
        "success without a paid session, or a paid session without success: {success_unpaid:?}"
    );
    assert!(
        credited_twice.is_empty(),
        "credited more than once: {credited_twice:?}"
    );
    assert!(
        credit_mismatch.is_empty(),
        "paid but not credited (or a wrong amount): {credit_mismatch:?}"
    );
    assert!(
        credited_unpaid.is_empty(),
        "credited without a paid session: {credited_unpaid:?}"
    );
    assert_eq!(
        balances, paid_sum,
        "the sum of balances equals the sum of paid amounts"
    );
    assert!(
        double_sessions.is_empty(),
        "Stripe sessions created twice: {double_sessions:?}"
    );
    assert!(
        dead_lettered.iter().all(|(_, n)| *n == 0),
        "nothing dead-lettered: {dead_lettered:?}"
    );
    assert!(stats.injected_500 > 0, "the 500 fault fired");
    assert!(
        lost_webhooks > 0 && stats.webhooks_lost > 0,
        "the lost-webhook fault fired"
    );
    assert!(
        paid.len() > CHECKOUTS / 2 && success < CHECKOUTS,
        "a mix of outcomes"
    );
}

/// One StartCheckout, retried with the same idempotency key until accepted.
async fn start_checkout(
    client: &mut CheckoutGatewayClient<tonic::transport::Channel>,
    token: &str,
    i: usize,
    retries: &AtomicUsize,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    let n = i64::try_from(i).expect("small");
    loop {
        let mut request = Request::new(StartCheckoutRequest {
            user_id: 1 + n % 25,
            amount_cents: 100 + (n * 37) % 900,
            currency: "eur".into(),
            success_url: "https://example.com/checkout/success".into(),
            cancel_url: "https://example.com/checkout/cancel".into(),
            idempotency_key: Some(format!("fault-suite-{i}")),
            ..Default::default()
        });
        let bearer: MetadataValue<_> = format!("Bearer {token}").parse().expect("header");
        request.metadata_mut().insert("authorization", bearer);
        request.set_timeout(Duration::from_secs(15));
        match client.start_checkout(request).await {
            Ok(response) => return response.into_inner().request_id,
            Err(status) => {
                assert!(
                    matches!(
                        status.code(),
                        tonic::Code::Unavailable
                            | tonic::Code::DeadlineExceeded
                            | tonic::Code::Cancelled
                    ),
                    "checkout {i}: unexpected {status:?}"
                );
                assert!(
                    Instant::now() < deadline,
                    "checkout {i} not accepted within 120 s: {status:?}"
                );
                retries.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// Produces checkout `i`'s request event straight onto `topic` twice, each
/// time with a new trace (retried while the broker is down).
async fn produce_twice(
    producer: &rdkafka::producer::FutureProducer,
    topic: &str,
    i: usize,
    retries: &AtomicUsize,
) -> String {
    let n = i64::try_from(i).expect("small");
    let event = CheckoutRequestEvent {
        request_id: checkout_contract::RequestId::new_random().to_string(),
        user_id: 1 + n % 25,
        amount_cents: 100 + (n * 37) % 900,
        currency: "eur".into(),
        purpose: "balance_topup".into(),
        timestamp: checkout_contract::events::now(),
        success_url: "https://example.com/checkout/success".into(),
        cancel_url: "https://example.com/checkout/cancel".into(),
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    for _ in 0..2 {
        let trace = TraceContext::new_root().header();
        while let Err(e) = send_json(
            producer,
            topic,
            &event.request_id,
            &event,
            &[(HEADER_TRACEPARENT, &trace)],
        )
        .await
        {
            assert!(
                Instant::now() < deadline,
                "checkout {i} not produced within 120 s: {e}"
            );
            retries.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    event.request_id
}

/// Finishes each open session the way [`outcome_for`] says, until stopped.
/// Returns how many sessions got each outcome.
async fn pay_every_session(
    stripe: stripe_emulator::Handle,
    mut stop: watch::Receiver<bool>,
) -> BTreeMap<String, u64> {
    let mut acted = HashSet::new();
    let mut counts = BTreeMap::new();
    loop {
        for s in stripe.sessions().sessions {
            if s.status != Status::Open || !acted.insert(s.id.clone()) {
                continue;
            }
            let mut outcome = outcome_for(s.client_reference_id.as_deref().unwrap_or_default());
            // An async failure leaves the session complete and unpaid; only
            // its PaymentIntent tells it failed, and reconciliation reads
            // sessions only: such a session needs its webhook.
            if outcome == Outcome::AsyncFailed && stripe.webhooks_lost(&s.id) {
                outcome = Outcome::Paid;
            }
            stripe
                .pay(&s.id, outcome)
                .unwrap_or_else(|e| panic!("paying {}: {e:?}", s.id));
            *counts.entry(format!("{outcome:?}")).or_insert(0) += 1;
        }
        tokio::select! {
            _ = stop.changed() => return counts,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}
