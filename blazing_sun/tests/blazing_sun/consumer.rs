//! `checkout.finished` end to end: the real consumer in group
//! `blazing-sun-main` (a unique name per test) on the shared broker.

use std::time::{Duration, Instant};

use blazing_sun::events::consumer::ConsumerError;
use blazing_sun::{Application, Error, Store};
use checkout_contract::kafka::HEADER_DLQ_REASON;

use crate::helpers::{Backend, E2E, World, new_request_id, new_user, read_back, success};

#[tokio::test]
async fn success_is_credited_once_however_often_it_is_delivered() {
    let world = World::new(Backend::Sqlite).await;
    let app = world.spawn().await;
    let (id, user) = (new_request_id(), new_user());

    world.send_finished(&success(&id, user, 500)).await;
    app.wait_balance(user, "eur", 500).await;

    // Four more deliveries of the same event, then another request: credited twice in all.
    for _ in 0..4 {
        world.send_finished(&success(&id, user, 500)).await;
    }
    let second = new_request_id();
    world.send_finished(&success(&second, user, 250)).await;
    app.wait_balance(user, "eur", 750).await;

    assert_eq!(app.store.ledger_for(&id).await.unwrap().len(), 1);
    assert_eq!(app.store.ledger_for(&second).await.unwrap().len(), 1);
    // Same key, same partition, in order: the duplicates were handled with or before `second`.
    app.wait_outcomes("credited", 2).await;
    app.wait_outcomes("duplicate", 4).await;
    app.stop().await.unwrap();
}

/// The consumer dies after the database commit and before storing the
/// offset; a restarted consumer in the same group gets the event again and
/// credits nothing more.
async fn a_crash_between_db_commit_and_offset_commit_credits_once(backend: Backend) {
    let world = World::new(backend).await;
    let (id, user) = (new_request_id(), new_user());

    let crashing = Application::build(world.config())
        .await
        .expect("application builds")
        .crash_after_db_commit();
    let first = crate::helpers::TestApp::start(crashing);
    world.send_finished(&success(&id, user, 500)).await;
    first.wait_balance(user, "eur", 500).await;
    let ended = tokio::time::timeout(E2E, first.task)
        .await
        .expect("the hook stops the app")
        .expect("no panic");
    assert!(
        matches!(ended, Err(Error::Consumer(ConsumerError::CrashHook))),
        "{ended:?}"
    );

    let restarted = world.spawn().await;
    let marker = new_request_id();
    world.send_finished(&success(&marker, user, 1)).await;
    restarted.wait_balance(user, "eur", 501).await;
    // The crashed batch was delivered again, and was a no-op.
    restarted.wait_outcomes("duplicate", 1).await;
    assert_eq!(restarted.store.ledger_for(&id).await.unwrap().len(), 1);
    assert_eq!(restarted.store.balance(user, "eur").await.unwrap(), 501);
    restarted.stop().await.unwrap();
}

#[tokio::test]
async fn a_crash_between_db_commit_and_offset_commit_credits_once_sqlite() {
    a_crash_between_db_commit_and_offset_commit_credits_once(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_crash_between_db_commit_and_offset_commit_credits_once_postgres() {
    a_crash_between_db_commit_and_offset_commit_credits_once(Backend::Postgres).await;
}

/// A clean stop commits what was applied: the next consumer in the group
/// starts after it (no redelivery).
#[tokio::test]
async fn a_clean_restart_starts_after_the_applied_events() {
    let world = World::new(Backend::Sqlite).await;
    let (id, user) = (new_request_id(), new_user());
    let first = world.spawn().await;
    world.send_finished_to(0, &success(&id, user, 500)).await;
    first.wait_balance(user, "eur", 500).await;
    first.stop().await.unwrap();

    // Same partition: a redelivered first event would come before this one.
    let second = world.spawn().await;
    world
        .send_finished_to(0, &success(&new_request_id(), user, 1))
        .await;
    second.wait_balance(user, "eur", 501).await;
    second.wait_outcomes("credited", 1).await;
    assert_eq!(
        second.metrics.outcome_count("duplicate"),
        0,
        "nothing redelivered"
    );
    second.stop().await.unwrap();
}

#[tokio::test]
async fn a_malformed_event_goes_to_the_dlq_and_the_partition_moves_on() {
    let world = World::new(Backend::Sqlite).await;
    let app = world.spawn().await;
    let (id, user) = (new_request_id(), new_user());
    let bad_key = new_request_id();

    // Both on partition 0: the valid event waits behind the malformed one.
    let malformed = br#"{"request_id": "#;
    world.send_raw_to(0, &bad_key, malformed).await;
    world.send_finished_to(0, &success(&id, user, 500)).await;

    app.wait_balance(user, "eur", 500).await;
    let dead = read_back(&world.kafka, &world.topics.finished_dlq, &bad_key).await;
    assert_eq!(
        &dead.payload[..],
        &malformed[..],
        "the original payload, unchanged"
    );
    let reason = dead.header(HEADER_DLQ_REASON).expect("dlq-reason header");
    assert!(reason.contains("not a checkout.finished event"), "{reason}");
    let source = dead.header("dlq-source").expect("dlq-source header");
    assert!(
        source.starts_with(&format!("{}/0/", world.topics.finished)),
        "{source}"
    );
    app.wait_outcomes("dead_lettered", 1).await;

    // What `/metrics` says about it: the dead letter by reason, the batches'
    // database time, and the group's lag on the partition, which comes with
    // librdkafka's statistics (every 5 s).
    let lag = format!(
        "kafka_consumer_lag_messages{{group=\"{}\",partition=\"0\",topic=\"{}\"}} 0",
        world.group, world.topics.finished
    );
    let url = app.url("/metrics");
    let text = testkit::eventually("the consumer's lag down to 0 in /metrics", E2E, || async {
        let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
        text.lines().any(|l| l == lag).then_some(text)
    })
    .await;
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
    };
    assert_eq!(
        value("blazing_sun_dead_lettered_total{reason=\"invalid_json\"}"),
        1.0
    );
    assert_eq!(
        value("blazing_sun_dead_lettered_total{reason=\"invalid_event\"}"),
        0.0
    );
    assert!(
        value("blazing_sun_credit_duration_seconds_count") >= 1.0,
        "{text}"
    );
    assert!(
        value("blazing_sun_credit_duration_seconds_sum") > 0.0,
        "{text}"
    );
    assert_eq!(value("blazing_sun_credited_cents_total"), 500.0);
    assert!(value("process_resident_memory_bytes") > 0.0, "{text}");
    assert!(value("process_cpu_seconds_total") >= 0.0, "{text}");
    app.stop().await.unwrap();
}

/// An event the database refuses for good (a constraint no retry changes)
/// is dead-lettered; the events around it are credited.
async fn an_event_the_database_refuses_is_dead_lettered_and_the_partition_moves_on(
    backend: Backend,
) {
    let world = World::new(backend).await;
    let app = world.spawn().await;
    let (poison, good, user) = (new_request_id(), new_request_id(), new_user());
    // The database itself refuses this one checkout, as it would a value it cannot store.
    match &app.store {
        Store::Sqlite(pool) => {
            let trigger = format!(
                "CREATE TRIGGER reject_poison BEFORE INSERT ON checkouts WHEN NEW.request_id = '{poison}' \
                 BEGIN SELECT RAISE(ABORT, 'poison checkout'); END"
            );
            sqlx::query(&trigger).execute(pool).await.unwrap();
        }
        Store::Postgres(pool) => {
            let check = format!(
                "ALTER TABLE checkouts ADD CONSTRAINT poison_checkout CHECK (request_id <> '{poison}')"
            );
            sqlx::query(&check).execute(pool).await.unwrap();
        }
    }

    world
        .send_finished_to(0, &success(&poison, user, 500))
        .await;
    world.send_finished_to(0, &success(&good, user, 700)).await;

    app.wait_balance(user, "eur", 700).await;
    let dead = read_back(&world.kafka, &world.topics.finished_dlq, &poison).await;
    let reason = dead.header(HEADER_DLQ_REASON).expect("dlq-reason header");
    assert!(
        reason.contains("database rejects") && reason.contains("poison"),
        "{reason}"
    );
    app.wait_outcomes("dead_lettered", 1).await;
    app.wait_outcomes("credited", 1).await;
    assert!(app.store.ledger_for(&poison).await.unwrap().is_empty());
    let text = app.metrics.render();
    assert!(
        text.contains("blazing_sun_dead_lettered_total{reason=\"rejected_by_database\"} 1\n"),
        "{text}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn an_event_the_database_refuses_is_dead_lettered_and_the_partition_moves_on_sqlite() {
    an_event_the_database_refuses_is_dead_lettered_and_the_partition_moves_on(Backend::Sqlite)
        .await;
}

#[tokio::test]
async fn an_event_the_database_refuses_is_dead_lettered_and_the_partition_moves_on_postgres() {
    an_event_the_database_refuses_is_dead_lettered_and_the_partition_moves_on(Backend::Postgres)
        .await;
}

/// Credits per second through the whole consumer (Kafka fetch, batches of
/// up to 256 per transaction, offsets): the events are on the topic before
/// the app starts; prints the steady rate (first to last credit) and the
/// time from start-up to the first credit (group join, first fetch).
async fn consumer_throughput(backend: Backend) {
    const EVENTS: i64 = 3000;
    let world = World::new(backend).await;
    let user = new_user();
    let events: Vec<_> = (0..EVENTS)
        .map(|_| success(&new_request_id(), user, 1))
        .collect();
    let sends = events.iter().map(|e| {
        checkout_contract::kafka::send_json(
            &world.producer,
            &world.topics.finished,
            &e.request_id,
            e,
            &[],
        )
    });
    for sent in futures::future::join_all(sends).await {
        sent.expect("broker acknowledges the event");
    }

    let started = Instant::now();
    let app = world.spawn().await;
    testkit::eventually("the first credit", E2E, || async {
        (app.store.balance(user, "eur").await.ok()? > 0).then_some(())
    })
    .await;
    let first_credit = Instant::now();
    let already = app.store.balance(user, "eur").await.unwrap();
    testkit::eventually("every credit", Duration::from_secs(120), || async {
        (app.store.balance(user, "eur").await.ok()? == EVENTS).then_some(())
    })
    .await;
    let steady = first_credit.elapsed();
    println!(
        "consumer throughput [{}]: {} credits in {steady:.2?} = {:.0} credits/s after the first credit \
         ({EVENTS} in {:.2?} from start-up, first credit after {:.2?})",
        app.store.backend(),
        EVENTS - already,
        (EVENTS - already) as f64 / steady.as_secs_f64(),
        started.elapsed(),
        first_credit - started,
    );
    app.wait_outcomes("credited", u64::try_from(EVENTS).unwrap())
        .await;
    app.stop().await.unwrap();
}

// Benchmarks, not checks: their time depends on the shared broker's load.
// Run with `cargo nextest run -p blazing_sun --run-ignored only --no-capture throughput`.
#[tokio::test]
#[ignore = "benchmark"]
async fn consumer_throughput_sqlite() {
    consumer_throughput(Backend::Sqlite).await;
}

#[tokio::test]
#[ignore = "benchmark"]
async fn consumer_throughput_postgres() {
    consumer_throughput(Backend::Postgres).await;
}
