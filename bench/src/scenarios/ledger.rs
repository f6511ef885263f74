//! `ledger`: `success` events applied per second by blazing_sun, on SQLite
//! and on PostgreSQL, with exactly-once checked, against plain single-row
//! INSERTs (autocommit, one connection) into the same database in the same
//! run. The figures per database:
//! - `insert/s`: the baseline, one durable commit per row;
//! - `store/s`: blazing_sun's `Store::apply_finished` in the consumer's
//!   batches of 256 (the database-bound part, no Kafka);
//! - `consumer/s`: the real service: a backlog of events (plus 10 %
//!   duplicates) produced to `checkout.finished` on a Tansu of its own first,
//!   then blazing_sun started on a new group; credits/s from its first
//!   credit to the balance being complete (group join not counted).
//! - `produce/s`: how fast Tansu took the backlog (for scale).
//! - `fetch/s`: the broker's ceiling for `consumer/s`: a bare consumer with
//!   blazing_sun's consumer settings reading the same backlog on a new
//!   group right after it (no database), messages/s from its first message
//!   to its last.
//! - `events/batch`: messages per database transaction in the consumer run
//!   (its batches are at most 256; small ones mean the fetch, not the
//!   database, paces it).
//!
//! Target: consumer ≥ 5,000 credits/s on PostgreSQL.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use blazing_sun::Store;
use checkout_contract::kafka::send_json;
use checkout_contract::secret::Secret;
use checkout_contract::{CheckoutFinishedEvent, CheckoutStatus};
use rdkafka::producer::FutureProducer;
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Executor};

use crate::Options;
use crate::infra::{self, Kafka};
use crate::report::{Report, f};

const AMOUNT: i64 = 100;

/// # Errors
/// When the broker, a database or blazing_sun cannot start, or a credit is
/// missing after the deadline.
pub async fn run(options: &Options) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let sqlite_url = format!("sqlite://{}", dir.path().join("blazing_sun.db").display());
    let pg_url =
        infra::fresh_postgres(&infra::postgres_admin_url(options.database_url.as_deref())?).await?;
    // Events per consumer run: enough for a few seconds at the target rate.
    let events = if options.smoke {
        300
    } else {
        options.ledger_events
    };

    let mut rows = Vec::new();
    let mut data = Vec::new();
    let mut verdicts = Vec::new();
    for (backend, url) in [
        ("sqlite", sqlite_url.as_str()),
        ("postgres", pg_url.as_str()),
    ] {
        let store = Store::connect(url).await?;
        let insert = plain_inserts(url, options.cell).await?;
        let store_rate = store_apply(&store, options.cell).await?;
        store.close().await;
        // A broker of this backend's own: Tansu 0.6.0 scans every header it
        // holds for each record it serves, so a broker that already served
        // the other backend's backlog would serve this one slower.
        let kafka = Kafka::start(options.broker).await?;
        let consumer = consume(&kafka, url, backend, events).await?;
        drop(kafka);
        let ratio = consumer.per_sec / insert.max(1e-9);
        rows.push(vec![
            backend.to_owned(),
            f(insert, 0),
            f(store_rate, 0),
            f(consumer.per_sec, 0),
            f(ratio, 2),
            f(consumer.produce_per_sec, 0),
            f(consumer.fetch_per_sec, 0),
            f(consumer.events_per_batch, 1),
            format!("{}+{}", consumer.events, consumer.duplicates),
            if consumer.exactly_once { "yes" } else { "NO" }.to_owned(),
        ]);
        if backend == "postgres" {
            verdicts.push(format!(
                "postgres: {:.0} credits/s through Kafka (target >= 5000: {}), {ratio:.2} x plain single-row INSERTs ({insert:.0}/s); store alone {store_rate:.0}/s",
                consumer.per_sec,
                if consumer.per_sec >= 5000.0 { "met" } else { "NOT met" },
            ));
        }
        verdicts.push(format!(
            "{backend}: exactly-once {} ({} credits expected, balance {} cents, expected {})",
            if consumer.exactly_once {
                "kept"
            } else {
                "BROKEN"
            },
            consumer.events,
            consumer.balance,
            consumer.expected_balance,
        ));
        data.push(json!({
            "backend": backend,
            "plain_insert_per_sec": insert,
            "store_apply_per_sec": store_rate,
            "consumer_credits_per_sec": consumer.per_sec,
            "consumer_vs_insert": ratio,
            "produce_per_sec": consumer.produce_per_sec,
            "bare_fetch_per_sec": consumer.fetch_per_sec,
            "consumer_batches": consumer.batches,
            "events_per_batch": consumer.events_per_batch,
            "events": consumer.events,
            "duplicates": consumer.duplicates,
            "exactly_once": consumer.exactly_once,
        }));
    }
    Ok(Report {
        scenario: "ledger",
        broker: infra::broker_name(options.broker),
        machine: infra::machine(),
        cell_secs: options.cell.as_secs_f64(),
        smoke: options.smoke,
        columns: vec![
            "database",
            "insert/s",
            "store/s",
            "consumer/s",
            "consumer/insert",
            "produce/s",
            "fetch/s",
            "events/batch",
            "events+dups",
            "exactly-once",
        ],
        rows,
        data: json!(data),
        verdicts,
    })
}

/// A `success` event for a fresh request_id.
fn success(user_id: i64) -> CheckoutFinishedEvent {
    CheckoutFinishedEvent {
        request_id: uuid::Uuid::new_v4().to_string(),
        user_id,
        amount_cents: AMOUNT,
        currency: "eur".into(),
        purpose: "balance_topup".into(),
        status: CheckoutStatus::Success,
        session_id: Some(format!("cs_test_{}", uuid::Uuid::new_v4().simple())),
        session_url: None,
        payment_intent_id: Some(format!("pi_test_{}", uuid::Uuid::new_v4().simple())),
        error_message: None,
        timestamp: checkout_contract::events::now(),
    }
}

fn new_user() -> i64 {
    i64::from(rand_u31()) + 1
}

fn rand_u31() -> u32 {
    (uuid::Uuid::new_v4().as_u128() as u32) >> 1
}

/// Plain single-row INSERTs, autocommit, one connection, for `cell`; rows/s.
/// SQLite gets blazing_sun's own settings (WAL, synchronous=FULL).
async fn plain_inserts(url: &str, cell: Duration) -> anyhow::Result<f64> {
    const CREATE: &str = "CREATE TABLE IF NOT EXISTS bench_plain_insert (id TEXT PRIMARY KEY, user_id BIGINT NOT NULL, amount_cents BIGINT NOT NULL)";
    let started;
    let mut n = 0u64;
    if url.starts_with("sqlite:") {
        let opts = SqliteConnectOptions::from_str(url)?
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let mut conn = sqlx::SqliteConnection::connect_with(&opts).await?;
        conn.execute(CREATE).await?;
        started = Instant::now();
        while started.elapsed() < cell {
            sqlx::query(
                "INSERT INTO bench_plain_insert (id, user_id, amount_cents) VALUES (?, ?, ?)",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(1_i64)
            .bind(AMOUNT)
            .execute(&mut conn)
            .await?;
            n += 1;
        }
    } else {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        conn.execute(CREATE).await?;
        started = Instant::now();
        while started.elapsed() < cell {
            sqlx::query(
                "INSERT INTO bench_plain_insert (id, user_id, amount_cents) VALUES ($1, $2, $3)",
            )
            .bind(uuid::Uuid::new_v4().to_string())
            .bind(1_i64)
            .bind(AMOUNT)
            .execute(&mut conn)
            .await?;
            n += 1;
        }
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}

/// `Store::apply_finished` in batches of blazing_sun's default size, for `cell`; credits/s.
async fn store_apply(store: &Store, cell: Duration) -> anyhow::Result<f64> {
    let user = new_user();
    let batch = blazing_sun::config::DEFAULT_BATCH_SIZE;
    let mut n = 0u64;
    let started = Instant::now();
    while started.elapsed() < cell {
        let events: Vec<_> = (0..batch).map(|_| success(user)).collect();
        store.apply_finished(&events).await?;
        n += batch as u64;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let expected = AMOUNT * i64::try_from(n)?;
    anyhow::ensure!(
        store.balance(user, "eur").await? == expected,
        "store credits are off"
    );
    Ok(rate)
}

struct Consumed {
    per_sec: f64,
    produce_per_sec: f64,
    /// Messages/s of a bare consumer on the same backlog (the broker's ceiling).
    fetch_per_sec: f64,
    /// Database transactions the consumer committed, and messages per one.
    batches: u64,
    events_per_batch: f64,
    events: usize,
    duplicates: usize,
    exactly_once: bool,
    balance: i64,
    expected_balance: i64,
}

/// The real blazing_sun on `url`, consuming `events` successes (and 10 %
/// duplicates of them) produced to the bench's broker.
async fn consume(
    kafka: &Kafka,
    url: &str,
    backend: &str,
    events: usize,
) -> anyhow::Result<Consumed> {
    // The backlog first, so the figure is blazing_sun's, not Tansu's ingest
    // rate: the events (plus 10 % duplicates) with a generous timeout, since
    // Tansu on sqlite acknowledges only about a thousand a second.
    let producer: FutureProducer = kafka
        .config
        .producer_config()
        .set("message.timeout.ms", "300000")
        .set("linger.ms", "5")
        .create()?;
    let producer = Arc::new(producer);
    // Topics of this backend's own: a new group must not wade through the other backend's backlog.
    let topics = kafka.more_topics().await?;
    let topic = topics.finished.clone();
    let user = new_user();
    let all: Vec<_> = (0..events).map(|_| success(user)).collect();
    let duplicates = events / 10;
    let started = Instant::now();
    let mut sends = futures::stream::FuturesUnordered::new();
    for event in all.iter().chain(all.iter().take(duplicates)) {
        let producer = Arc::clone(&producer);
        let topic = topic.clone();
        sends
            .push(async move { send_json(&producer, &topic, &event.request_id, event, &[]).await });
    }
    use futures::StreamExt;
    while let Some(sent) = sends.next().await {
        sent?;
    }
    drop(sends);
    let produced = started.elapsed();

    let mut config = blazing_sun::Config::new(
        url,
        kafka.config.clone(),
        Secret::new("checkout-bench".to_owned()),
    );
    config.topics = topics;
    config.consumer_group = format!(
        "bench-blazing-sun-{backend}-{}",
        uuid::Uuid::new_v4().simple()
    );
    config.listen = "127.0.0.1:0".parse()?;
    let app = blazing_sun::Application::build(config).await?;
    let store = app.store().clone();
    let metrics = app.metrics();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async move {
        let _ = stop_rx.await;
    }));

    // The rate from the first credit (the group has joined) to the last one.
    let expected = AMOUNT * i64::try_from(events)?;
    let app_started = Instant::now();
    let deadline = app_started + Duration::from_secs(300);
    let mut first: Option<(Instant, i64)> = None;
    let done = loop {
        let balance = store.balance(user, "eur").await?;
        let now = Instant::now();
        if balance > 0 && first.is_none() {
            first = Some((now, balance));
        }
        if balance >= expected {
            break now;
        }
        if server.is_finished() {
            let outcome = server.await;
            anyhow::bail!(
                "{backend}: blazing_sun stopped after {balance} of {expected} cents: {outcome:?}"
            );
        }
        anyhow::ensure!(
            now < deadline,
            "{backend}: balance {balance} of {expected} after 300 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let per_sec = match first {
        Some((t, b)) if done > t => ((expected - b) / AMOUNT) as f64 / (done - t).as_secs_f64(),
        _ => events as f64 / (done - app_started).as_secs_f64(),
    };
    // Duplicates may still be in flight: give them a moment to (not) count.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let balance = store.balance(user, "eur").await?;
    let batches = batches_committed(&metrics);

    let _ = stop_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(15), server).await;
    let fetch_per_sec = bare_fetch(kafka, &topic, events + duplicates).await?;
    Ok(Consumed {
        fetch_per_sec,
        per_sec,
        produce_per_sec: (events + duplicates) as f64 / produced.as_secs_f64(),
        batches,
        events_per_batch: (events + duplicates) as f64 / batches.max(1) as f64,
        events,
        duplicates,
        exactly_once: balance == expected,
        balance,
        expected_balance: expected,
    })
}

/// `blazing_sun_consumer_batches_total` from the service's own metrics.
fn batches_committed(metrics: &blazing_sun::Metrics) -> u64 {
    metrics
        .render()
        .lines()
        .find_map(|line| line.strip_prefix("blazing_sun_consumer_batches_total "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Reads `count` messages of `topic` on a new group with blazing_sun's
/// consumer settings and nothing else; messages/s from the first to the last.
async fn bare_fetch(kafka: &Kafka, topic: &str, count: usize) -> anyhow::Result<f64> {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    let group = format!("bench-bare-fetch-{}", uuid::Uuid::new_v4().simple());
    let consumer: StreamConsumer = kafka.config.consumer_config(&group).create()?;
    consumer.subscribe(&[topic])?;
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut first = None;
    let mut received = 0;
    while received < count {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, consumer.recv()).await {
            Ok(Ok(_)) => {
                first.get_or_insert_with(Instant::now);
                received += 1;
            }
            Ok(Err(e)) => anyhow::bail!("bare fetch: {e}"),
            Err(_) => anyhow::bail!("bare fetch: {received} of {count} messages after 300 s"),
        }
    }
    let elapsed = first.map_or(Duration::ZERO, |t| t.elapsed());
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    Ok((count - 1) as f64 / elapsed.as_secs_f64().max(1e-9))
}
