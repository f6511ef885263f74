//! 600 checkouts through 2 gateways, 3 checkout workers and 2 blazing_sun,
//! each a `fault-node` process, on a broker of the suite's own and a fresh
//! database on the shared PostgreSQL, against the Stripe emulator (in
//! process, 300 ms per API call, the account limited to 25 requests/s like
//! Stripe's default). Clients start each checkout on one gateway and watch
//! it on the other. Mid-run one worker, one gateway and one blazing_sun are
//! SIGKILLed and started again. Then: the fault suite's invariants, every
//! watch saw its checkout's terminal status, and the emulator saw at most
//! the limit (plus the replicas' bursts) in every second and at least 90 %
//! of it in every second with a backlog on every partition (`budget`).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use checkout_contract::auth::{JwtIssuer, Role};
use checkout_contract::kafka::ensure_topics;
use checkout_contract::pb::checkout_gateway_client::CheckoutGatewayClient;
use checkout_contract::secret::Secret;
use checkout_contract::shutdown::Stop;
use checkout_contract::topics::{PARTITIONS, Topics};
use faults::balancer::Balancer;
use faults::books::{Books, finished_event};
use faults::client::start_checkout;
use faults::customer::pay_every_session;
use faults::nodes::{Node, NodeSpec, env_with_broker};
use faults::{observe, start_emulator};
use rdkafka::message::Message as _;
use stripe_emulator::Faults;
use testkit::broker::TestBroker;
use testkit::eventually;
use tonic::transport::{Channel, Endpoint};

use crate::FAULT_NODE;
use crate::budget::{self, Budget, Clock, Waiting};
use crate::watch::{Watched, watch_to_end};

const CHECKOUTS: usize = 600;
/// The account's Stripe limit, shared by the workers (Stripe's default).
const STRIPE_RATE_LIMIT: u32 = 25;
/// Per Stripe API call, as `checkout-bench scale` runs it.
const STRIPE_LATENCY: Duration = Duration::from_millis(300);
const GATEWAYS: usize = 2;
const WORKERS: usize = 3;
const BLAZING_SUNS: usize = 2;
/// Checkouts started per second, on a fixed schedule: above the Stripe
/// limit, so a backlog builds on every partition and the budget is used.
const START_RATE: f64 = 40.0;
const CLIENTS: usize = 8;
/// When (checkouts accepted) each process is SIGKILLed and restarted.
const PLAN: [(usize, Kill); 3] = [
    (150, Kill::Worker),
    (300, Kill::Gateway),
    (450, Kill::BlazingSun),
];
/// Which replica of each service is killed.
const KILLED: usize = 1;
/// How long after its create call starts a request's first status may be
/// published (see `budget`): the emulator's latency plus a second.
const CALL_BOUND: Duration = Duration::from_millis(1300);
const JWT_SECRET: &str = "scale-suite-jwt-secret";
const WEBHOOK_SECRET: &str = "whsec_scale_suite_0123456789";
const KEY_PREFIX: &str = "scale-suite";
const SETTLE_WITHIN: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Copy)]
enum Kill {
    Worker,
    Gateway,
    BlazingSun,
}

fn local(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Waits until the worker's current process logged its first partition
/// assignment (`checkout::worker` at INFO), and returns when it saw it.
async fn first_assignment(worker: &Node) -> SystemTime {
    eventually(
        &format!("{} to be assigned partitions", worker.name()),
        Duration::from_secs(60),
        || async {
            worker
                .log_since_start()
                .contains("partitions assigned")
                .then_some(())
        },
    )
    .await;
    SystemTime::now()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_two_gateways_and_two_blazing_suns_share_the_stripe_budget_through_sigkills()
{
    testkit::init_tracing();
    let t0 = Instant::now();
    let broker = TestBroker::start().await;
    let kafka = broker.config("scale-suite");
    let topics = Topics::default();
    ensure_topics(&kafka, &topics.all(), PARTITIONS)
        .await
        .expect("topics");
    let database_url = testkit::postgres::fresh_database().await;
    let stop = Stop::new();

    // Stripe: the emulator in process, 300 ms per call, the account limited
    // like Stripe's. Its one-second windows start at `build`.
    let mut emulator_config = stripe_emulator::Config {
        rate_limit: Some(STRIPE_RATE_LIMIT),
        ..stripe_emulator::Config::default()
    };
    emulator_config.delivery.max_attempts = 60;
    let clock = Clock::new(SystemTime::now());
    let (stripe, api_base) = start_emulator(emulator_config, &stop).await;
    stripe
        .set_faults(Faults {
            latency_ms: u64::try_from(STRIPE_LATENCY.as_millis()).expect("small"),
            ..Faults::default()
        })
        .expect("faults");

    let env = |pairs: &[(&str, &str)]| env_with_broker(&kafka, pairs);

    // The workers: one consumer group, distinct static members (as compose
    // runs them), the account's limit each; their webhooks behind one balancer.
    let webhook_ports: Vec<u16> = (0..WORKERS).map(|_| testkit::free_port()).collect();
    let balancer = Balancer::start(webhook_ports.iter().copied().map(local).collect()).await;
    stripe.set_webhook(
        Some(format!("http://{}/webhooks/stripe", balancer.addr())),
        Some(WEBHOOK_SECRET.into()),
    );
    let rate_limit = STRIPE_RATE_LIMIT.to_string();
    let mut workers: Vec<Node> = webhook_ports
        .iter()
        .enumerate()
        .map(|(k, port)| {
            let mut spec = NodeSpec::new(
                FAULT_NODE,
                "checkout",
                env(&[
                    ("STRIPE_SECRET_KEY", "sk_test_scale_suite"),
                    ("STRIPE_API_BASE", &api_base),
                    ("STRIPE_WEBHOOK_SECRET", WEBHOOK_SECRET),
                    ("CHECKOUT_WEBHOOK_LISTEN", &local(*port).to_string()),
                    ("CHECKOUT_STRIPE_RATE_LIMIT", &rate_limit),
                    ("CHECKOUT_GROUP_INSTANCE_ID", &format!("scale-worker-{k}")),
                ]),
            );
            spec.name = format!("checkout-{k}");
            // The suite reads each start's first assignment from the log.
            spec.log_directives = "checkout::worker=info";
            Node::start(spec)
        })
        .collect();

    let bs_ports: Vec<u16> = (0..BLAZING_SUNS).map(|_| testkit::free_port()).collect();
    let mut blazing_suns: Vec<Node> = bs_ports
        .iter()
        .enumerate()
        .map(|(k, port)| {
            let mut spec = NodeSpec::new(
                FAULT_NODE,
                "blazing_sun",
                env(&[
                    ("DATABASE_URL", &database_url),
                    ("JWT_SECRET", JWT_SECRET),
                    ("BLAZING_SUN_LISTEN", &local(*port).to_string()),
                    (
                        "BLAZING_SUN_GROUP_INSTANCE_ID",
                        &format!("scale-blazing-sun-{k}"),
                    ),
                ]),
            );
            spec.name = format!("blazing_sun-{k}");
            Node::start(spec)
        })
        .collect();

    let gw_ports: Vec<(u16, u16)> = (0..GATEWAYS)
        .map(|_| (testkit::free_port(), testkit::free_port()))
        .collect();
    let mut gateways: Vec<Node> = gw_ports
        .iter()
        .enumerate()
        .map(|(k, (grpc, admin))| {
            let mut spec = NodeSpec::new(
                FAULT_NODE,
                "gateway",
                env(&[
                    ("GATEWAY_LISTEN", &local(*grpc).to_string()),
                    ("GATEWAY_ADMIN_LISTEN", &local(*admin).to_string()),
                    ("JWT_SECRET", JWT_SECRET),
                ]),
            );
            spec.name = format!("gateway-{k}");
            Node::start(spec)
        })
        .collect();

    for (k, port) in bs_ports.iter().enumerate() {
        observe::healthy(&format!("blazing_sun-{k} healthy"), local(*port)).await;
    }
    for (k, (_, admin)) in gw_ports.iter().enumerate() {
        observe::healthy(&format!("gateway-{k} serving"), local(*admin)).await;
    }
    for worker in &workers {
        first_assignment(worker).await;
    }
    let db = sqlx::PgPool::connect(&database_url)
        .await
        .expect("database");
    println!(
        "scale suite: {GATEWAYS} gateways, {WORKERS} workers, {BLAZING_SUNS} blazing_sun up after {:.1}s",
        t0.elapsed().as_secs_f64()
    );

    let token = JwtIssuer::new(&Secret::new(JWT_SECRET.to_owned())).issue(
        "scale-suite",
        Role::Service,
        Duration::from_secs(3600),
    );
    let channels: Vec<Channel> = gw_ports
        .iter()
        .map(|(grpc, _)| {
            Endpoint::from_shared(format!("http://{}", local(*grpc)))
                .expect("endpoint")
                .connect_lazy()
        })
        .collect();
    let payer = tokio::spawn(pay_every_session(stripe.clone(), stop.stopping()));

    // The clients: checkout i starts on gateway i % 2 at its scheduled time
    // and is watched on the other gateway until its terminal status.
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let schedule = tokio::time::Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (next, accepted, retries) = (next.clone(), accepted.clone(), retries.clone());
            let (channels, token) = (channels.clone(), token.clone());
            tokio::spawn(async move {
                let mut started = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= CHECKOUTS {
                        return started;
                    }
                    tokio::time::sleep_until(
                        schedule + Duration::from_secs_f64(i as f64 / START_RATE),
                    )
                    .await;
                    let mut on = CheckoutGatewayClient::new(channels[i % GATEWAYS].clone());
                    let id = start_checkout(&mut on, &token, KEY_PREFIX, i, &retries).await;
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let watching = tokio::spawn(watch_to_end(
                        channels[(i + 1) % GATEWAYS].clone(),
                        token.clone(),
                        id.clone(),
                        SETTLE_WITHIN * 2,
                    ));
                    started.push((id, watching));
                }
            })
        })
        .collect();

    // The kills.
    let mut workers_down = Vec::new();
    for (threshold, kill) in PLAN {
        eventually(
            &format!("{threshold} checkouts accepted"),
            Duration::from_secs(60),
            || async { (accepted.load(Ordering::SeqCst) >= threshold).then_some(()) },
        )
        .await;
        let killed_at = SystemTime::now();
        match kill {
            Kill::Worker => {
                // Restarted at once under the same group.instance.id: it
                // takes its partitions back without a rebalance; until then
                // they wait (nobody else sends their share to Stripe).
                workers[KILLED].kill9_and_restart();
                let back = first_assignment(&workers[KILLED]).await;
                workers_down.push((clock.at(killed_at), clock.at(back)));
            }
            Kill::Gateway => {
                gateways[KILLED].kill9_and_restart();
                observe::healthy("the restarted gateway serving", local(gw_ports[KILLED].1)).await;
            }
            Kill::BlazingSun => {
                blazing_suns[KILLED].kill9_and_restart();
                observe::healthy("the restarted blazing_sun healthy", local(bs_ports[KILLED]))
                    .await;
            }
        }
        println!(
            "scale suite: {kill:?} {KILLED} SIGKILLed at {:.1}s ({threshold} accepted), back at {:.1}s ({} accepted)",
            clock.at(killed_at),
            clock.at(SystemTime::now()),
            accepted.load(Ordering::SeqCst)
        );
    }

    let mut watches = Vec::new();
    for client in clients {
        watches.extend(client.await.expect("client task"));
    }
    let started_all = clock.at(SystemTime::now());
    let request_ids: BTreeSet<String> = watches.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(request_ids.len(), CHECKOUTS, "one request_id per checkout");

    observe::wait_settled(&kafka, &topics, &db, &stripe, CHECKOUTS, SETTLE_WITHIN).await;
    let mut watched: Vec<Watched> = Vec::new();
    for (_, watching) in watches {
        watched.push(watching.await.expect("watch task"));
    }
    let settled = clock.at(SystemTime::now());
    for node in workers
        .iter_mut()
        .chain(&mut gateways)
        .chain(&mut blazing_suns)
    {
        node.assert_running();
    }
    let per_second = stripe.api_requests_per_second();
    let limited = stripe.rate_limited_per_second();
    stop.stop();
    let paid_by_customer = payer.await.expect("payer task");

    // The books.
    let books = Books::read(&kafka, &topics, &db, &stripe).await;
    books.print("scale suite", CHECKOUTS);

    // The watches.
    let first_terminal: BTreeMap<String, _> = books
        .terminal
        .iter()
        .map(|(id, s)| (id.clone(), s[0]))
        .collect();
    let watch_wrong: Vec<String> = watched
        .iter()
        .filter(|w| {
            w.terminal().is_none() || w.terminal() != first_terminal.get(&w.request_id).copied()
        })
        .map(|w| {
            format!(
                "{}: saw {:?}, topic {:?}",
                w.request_id,
                w.statuses,
                first_terminal.get(&w.request_id)
            )
        })
        .collect();
    let reconnected = watched.iter().filter(|w| w.reconnects > 0).count();
    println!(
        "scale suite figures: watches={} on_the_other_gateway saw_terminal={} reconnected_after_the_gateway_kill={reconnected} \
         start_retries={} customer={paid_by_customer:?}",
        watched.len(),
        watched.len() - watch_wrong.len(),
        retries.load(Ordering::SeqCst),
    );

    // The Stripe budget, second by second.
    let mut first_status: BTreeMap<String, f64> = BTreeMap::new();
    for m in &books.finished {
        let at = clock.at_millis(m.timestamp().to_millis().expect("timestamp"));
        let e = finished_event(m);
        first_status
            .entry(e.request_id)
            .and_modify(|t| *t = t.min(at))
            .or_insert(at);
    }
    let mut waiting: BTreeMap<String, Waiting> = BTreeMap::new();
    for m in &books.requests {
        let id = String::from_utf8_lossy(m.key().expect("keyed by request_id")).into_owned();
        let produced = clock.at_millis(m.timestamp().to_millis().expect("timestamp"));
        let first = first_status.get(&id).copied().unwrap_or(f64::INFINITY);
        waiting
            .entry(id)
            .and_modify(|w| w.produced = w.produced.min(produced))
            .or_insert(Waiting {
                partition: m.partition(),
                produced,
                first_status: first,
            });
    }
    let requests: Vec<Waiting> = waiting.into_values().collect();
    let budget = Budget {
        limit: f64::from(STRIPE_RATE_LIMIT),
        replicas: WORKERS,
        partitions: PARTITIONS,
        call_bound: CALL_BOUND.as_secs_f64(),
        per_second: &per_second,
        requests: &requests,
        workers_down: &workers_down,
    };
    let windows = budget.windows();
    let checked = Budget::after_first(&windows);
    let (over, late_over) = budget.over_ceiling(&windows);
    let backlog: Vec<_> = windows.iter().filter(|w| w.backlog).collect();
    let (under, late_under) = budget.under_floor(&windows);
    let backlog_mean =
        backlog.iter().map(|w| f64::from(w.requests)).sum::<f64>() / backlog.len().max(1) as f64;
    println!("scale suite: Stripe API requests per second (B: backlog window, D: a worker down):");
    print!("{}", budget::render(&windows));
    println!(
        "scale suite figures: stripe_limit={STRIPE_RATE_LIMIT}/s ceiling={:.1} floor={:.1} windows_checked={} \
         max_per_second={} over_ceiling={} backlog_windows={} backlog_mean={backlog_mean:.1}/s under_floor={} \
         excused_as_late_arrivals={:?} \
         rate_limited_by_emulator={} requests_per_partition={:?} worker_down={:?} all_started_at={started_all:.1}s \
         settled_at={settled:.1}s total={:.1}s",
        budget.ceiling(),
        budget.floor(),
        checked.len(),
        checked.iter().map(|w| w.requests).max().unwrap_or(0),
        over.len(),
        backlog.len(),
        under.len(),
        late_over
            .iter()
            .chain(&late_under)
            .map(|w| w.second)
            .collect::<Vec<_>>(),
        limited.iter().sum::<u32>(),
        budget::per_partition(&requests),
        workers_down
            .iter()
            .map(|(a, b)| format!("{a:.1}s..{b:.1}s"))
            .collect::<Vec<_>>(),
        t0.elapsed().as_secs_f64(),
    );

    books.assert_consistent(CHECKOUTS, &request_ids);
    assert_eq!(
        (
            workers[KILLED].kills,
            gateways[KILLED].kills,
            blazing_suns[KILLED].kills
        ),
        (1, 1, 1),
        "one worker, one gateway and one blazing_sun were SIGKILLed"
    );
    assert!(
        watch_wrong.is_empty(),
        "watches on the other gateway without their checkout's terminal status: {watch_wrong:?}"
    );
    assert!(
        reconnected > 0,
        "some watches were on the killed gateway and reconnected"
    );
    assert!(
        over.is_empty(),
        "Stripe saw more than the limit ({STRIPE_RATE_LIMIT}/s) plus the replicas' bursts ({:.1}), \
         not made up by the window before, in {over:?}",
        budget.ceiling()
    );
    assert!(
        backlog.len() >= 10,
        "at least 10 s with a backlog on every partition, to judge the floor on: {}",
        backlog.len()
    );
    assert!(
        under.is_empty(),
        "with a backlog on every partition, Stripe saw less than 90 % of the limit ({:.1}), \
         not made up by the window after, in {under:?}",
        budget.floor()
    );
}
