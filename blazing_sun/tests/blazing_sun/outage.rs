//! The database failing under the consumer, for longer than any timeout:
//! PostgreSQL stopped (a server of the test's own), the SQLite file
//! write-locked by another connection, PostgreSQL switched to read-only.
//! Success events keep coming meanwhile. Each ends with every event
//! credited exactly once and nothing on the dead-letter topic; while it
//! lasts `/healthz` says the consumer waits, and shutdown still works.

use std::time::Duration;

use sqlx::{Connection as _, Executor as _, PgConnection, SqliteConnection};
use tokio::time::Instant;

use crate::helpers::{Backend, TestApp, TestDb, World, new_request_id, new_user, success};

/// After the database is back, how long the waiting batches may take.
const RECOVERY: Duration = Duration::from_secs(60);

/// The first credit of every test: 50 cents for a new user, once the
/// consumer joined its group.
const FIRST: i64 = 50;

/// The app on `world`, and a new user already credited [`FIRST`].
async fn running_with_a_first_credit(world: &World) -> (TestApp, i64) {
    let app = world.spawn().await;
    let user = new_user();
    world
        .send_finished(&success(&new_request_id(), user, FIRST))
        .await;
    app.wait_balance(user, "eur", FIRST).await;
    (app, user)
}

/// While a fault lasts (until `ends`): pays every 5 s until `quiet_before`
/// the end, and waits for `/healthz` to report the waiting consumer; then
/// waits until the fault's end. Returns the amounts paid.
async fn pay_through_the_fault(
    world: &World,
    app: &TestApp,
    user: i64,
    ends: Instant,
    quiet_before: Duration,
) -> Vec<i64> {
    let paying = keep_paying(world, user, ends - quiet_before);
    let (amounts, ()) = tokio::join!(paying, wait_unhealthy_waiting(app));
    tokio::time::sleep_until(ends).await; // the fault's length, not a synchronisation
    amounts
}

/// Sends one success event for `user` every 5 s until `until`, each twice
/// (a redelivery), and returns their amounts.
async fn keep_paying(world: &World, user: i64, until: Instant) -> Vec<i64> {
    let mut amounts = Vec::new();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    while Instant::now() < until {
        tick.tick().await;
        let amount = 100 + i64::try_from(amounts.len()).unwrap();
        let event = success(&new_request_id(), user, amount);
        world.send_finished(&event).await;
        world.send_finished(&event).await;
        amounts.push(amount);
    }
    amounts
}

/// Waits until `/healthz` answers 503 with the consumer waiting for the database.
async fn wait_unhealthy_waiting(app: &TestApp) {
    let url = app.url("/healthz");
    let body = testkit::eventually(
        "/healthz to say the consumer waits for the database",
        Duration::from_secs(60),
        || {
            let url = url.clone();
            async move {
                let response = reqwest::get(&url).await.ok()?;
                let status = response.status().as_u16();
                let body: serde_json::Value = response.json().await.ok()?;
                let consumer = body["consumer"].as_str()?;
                let waiting = consumer.starts_with("waiting to retry a batch: database error");
                (status == 503 && waiting).then_some(body)
            }
        },
    )
    .await;
    assert_eq!(body["status"], "unavailable", "{body}");
    assert!(
        app.metrics
            .render()
            .contains("blazing_sun_consumer_waiting 1"),
        "the gauge says so too"
    );
}

/// Every one of `amounts` (plus the [`FIRST`] credit) credited exactly
/// once, nothing dead-lettered, and the app healthy again.
async fn assert_all_credited_once(world: &World, app: &TestApp, user: i64, amounts: &[i64]) {
    let expected = FIRST + amounts.iter().sum::<i64>();
    let store = app.store.clone();
    testkit::eventually(
        &format!("balance of user {user} to reach {expected}"),
        RECOVERY,
        || {
            let store = store.clone();
            async move { (store.balance(user, "eur").await.ok()? == expected).then_some(()) }
        },
    )
    .await;
    let ledger = app.store.recent_ledger(user, 1000).await.unwrap();
    assert_eq!(
        ledger.len(),
        amounts.len() + 1,
        "one ledger row per payment"
    );
    assert_eq!(
        testkit::broker::message_count(&world.kafka, &world.topics.finished_dlq).await,
        0,
        "nothing dead-lettered"
    );
    assert_eq!(app.metrics.outcome_count("dead_lettered"), 0);
    let url = app.url("/healthz");
    testkit::eventually("/healthz 200 again", RECOVERY, || {
        let url = url.clone();
        async move { (reqwest::get(&url).await.ok()?.status() == 200).then_some(()) }
    })
    .await;
    assert!(
        app.metrics
            .render()
            .contains("blazing_sun_consumer_waiting 0")
    );
}

#[tokio::test]
async fn postgres_stopped_for_60_s_while_success_events_keep_coming_credits_each_once() {
    let cluster = testkit::postgres::Cluster::start().await;
    let world = World::with_db(TestDb::at(cluster.fresh_database().await)).await;
    let (app, user) = running_with_a_first_credit(&world).await;

    cluster.stop().await;
    let ends = Instant::now() + Duration::from_secs(60);
    let amounts = pay_through_the_fault(&world, &app, user, ends, Duration::from_secs(5)).await;
    assert_eq!(
        app.store.balance(user, "eur").await.ok(),
        None,
        "the database is still down"
    );
    cluster.start_again().await;

    assert_all_credited_once(&world, &app, user, &amounts).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn the_sqlite_file_write_locked_for_75_s_credits_each_once() {
    let world = World::new(Backend::Sqlite).await;
    let (app, user) = running_with_a_first_credit(&world).await;

    // Another connection holds the write lock: reads (and so a ping) still work.
    let mut lock = SqliteConnection::connect(&world.db.url).await.unwrap();
    lock.execute("BEGIN EXCLUSIVE").await.unwrap();
    let ends = Instant::now() + Duration::from_secs(75);
    let amounts = pay_through_the_fault(&world, &app, user, ends, Duration::from_secs(10)).await;
    assert_eq!(
        app.store.balance(user, "eur").await.unwrap(),
        FIRST,
        "nothing written under the lock"
    );
    lock.execute("ROLLBACK").await.unwrap();
    lock.close().await.unwrap();

    assert_all_credited_once(&world, &app, user, &amounts).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn postgres_read_only_for_30_s_credits_each_once_and_shutdown_still_works_meanwhile() {
    let world = World::new(Backend::Postgres).await;
    let name = world.db.url.rsplit('/').next().unwrap().to_owned();
    let admin_url = std::env::var("TEST_DATABASE_URL").expect("TEST_DATABASE_URL");
    let mut admin = PgConnection::connect(&admin_url).await.unwrap();
    // New sessions of the database are read-only; existing ones are ended so
    // the pool reconnects into it (as after a failover to a replica).
    let switch = |on: bool| {
        [
            format!("ALTER DATABASE {name} SET default_transaction_read_only = {on}"),
            format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{name}' AND pid <> pg_backend_pid()"
            ),
        ]
    };
    let (app, user) = running_with_a_first_credit(&world).await;

    for statement in switch(true) {
        admin.execute(statement.as_str()).await.unwrap();
    }
    let read_only_ends = Instant::now() + Duration::from_secs(30);
    let paying = keep_paying(&world, user, read_only_ends - Duration::from_secs(10));
    let (amounts, ()) = tokio::join!(paying, wait_unhealthy_waiting(&app));

    // Shutdown while the batch waits: prompt, and nothing is stored.
    let stopping = Instant::now();
    app.stop().await.unwrap();
    assert!(
        stopping.elapsed() < Duration::from_secs(20),
        "stopped in {:?} while waiting for the database",
        stopping.elapsed()
    );

    tokio::time::sleep_until(read_only_ends).await; // the fault's length, not a synchronisation
    for statement in switch(false) {
        admin.execute(statement.as_str()).await.unwrap();
    }
    let app = world.spawn().await;
    assert_all_credited_once(&world, &app, user, &amounts).await;
    app.stop().await.unwrap();
}
