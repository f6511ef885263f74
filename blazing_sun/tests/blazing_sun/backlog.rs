//! A new consumer group on a big backlog: every event is credited.
//!
//! On Tansu 0.6.0 a fetch costs (records fetched) x (headers on the broker)
//! and holds the broker's storage, heartbeats included, while it runs (see
//! `checkout_contract::kafka::FETCH_MAX_BYTES`). With librdkafka's default
//! fetch size the group's first fetch asked for the whole backlog, outlasted
//! the session, lost the assignment and the fetched messages, and started
//! over: nothing was ever credited. The test runs on a broker of its own
//! (the backlog's fetches would stall the shared one, and the headers other
//! tests left there would change the timing) with the shortest session
//! blazing_sun accepts (2 s), so that a backlog of 8,000 events is enough to
//! trigger it on a 2-core machine: without the fix, 0 credits in 60 s; with
//! it, about 10 s.

use std::time::Duration;

use blazing_sun::Config;
use checkout_contract::kafka::send_json;
use checkout_contract::secret::Secret;
use futures::StreamExt as _;
use rdkafka::producer::FutureProducer;
use testkit::broker::TestBroker;

use crate::helpers::{Backend, JWT_SECRET, TestApp, TestDb, new_request_id, new_user, success};

const EVENTS: usize = 8_000;
const AMOUNT: i64 = 100;

#[tokio::test(flavor = "multi_thread")]
async fn a_new_group_credits_a_backlog_bigger_than_one_fetch_can_serve_within_the_session() {
    testkit::init_tracing();
    let broker = TestBroker::start().await;
    let kafka = broker.config(&testkit::unique("blazing-sun-backlog"));
    let topics = testkit::broker::fresh_topics(&kafka).await;

    // The backlog, before blazing_sun starts (an outage, a new group).
    let producer: FutureProducer = kafka
        .producer_config()
        .set("message.timeout.ms", "60000")
        .create()
        .expect("producer");
    let user = new_user();
    let mut sends = futures::stream::iter(0..EVENTS)
        .map(|_| {
            let (producer, topic) = (&producer, &topics.finished);
            async move {
                let event = success(&new_request_id(), user, AMOUNT);
                send_json(producer, topic, &event.request_id, &event, &[]).await
            }
        })
        .buffer_unordered(1000);
    while let Some(sent) = sends.next().await {
        sent.expect("broker acknowledges the event");
    }

    let db = TestDb::new(Backend::Sqlite).await;
    let mut config = Config::new(&db.url, kafka.clone(), Secret::new(JWT_SECRET));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.topics = topics.clone();
    config.consumer_group = testkit::unique("blazing-sun-main");
    config.create_topics = false;
    config.session_timeout = Duration::from_secs(2);
    let app = TestApp::spawn(config).await;

    let expected = AMOUNT * i64::try_from(EVENTS).unwrap();
    let store = app.store.clone();
    // About 10 s here with the fix; the rest is headroom for a loaded machine.
    testkit::eventually(
        &format!("all {EVENTS} events of the backlog credited"),
        Duration::from_secs(60),
        || {
            let store = store.clone();
            async move {
                let balance = store.balance(user, "eur").await.ok()?;
                assert!(balance <= expected, "credited more than once: {balance}");
                (balance == expected).then_some(())
            }
        },
    )
    .await;
    app.stop().await.expect("blazing_sun stops cleanly");
}
