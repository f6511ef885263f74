use std::time::Duration;

use checkout_contract::{CheckoutStatus, RequestId, pb};
use futures::StreamExt;

use crate::helpers::*;

#[tokio::test]
async fn a_checkout_started_on_one_replica_is_watched_to_completion_on_another() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let a = TestGateway::start(&kafka, &topics, |_| {}).await;
    let b = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut on_a = a.service_client().await;
    let mut on_b = b.service_client().await;
    let producer = worker_producer(&kafka);

    let id = on_a
        .start(start_request(31, Some("replicated")))
        .await
        .unwrap()
        .request_id;
    // Before any status exists, B can only answer GetCheckout (PENDING
    // instead of NOT_FOUND) once it has read A's request from
    // checkout.requests.
    let pending = testkit::eventually(
        "replica B knows the request",
        Duration::from_secs(10),
        || {
            let mut c = on_b.clone();
            let id = id.clone();
            async move { c.get(&id).await.ok() }
        },
    )
    .await;
    assert_eq!(statuses(&[pending]), [pb::CheckoutStatus::Pending]);
    let mut stream = on_b.watch(&id, None).await.unwrap();
    publish(&producer, &topics, &id, 31, CheckoutStatus::SessionCreated).await;
    publish(&producer, &topics, &id, 31, CheckoutStatus::Success).await;
    let (updates, end) = drain(&mut stream).await;
    end.unwrap();
    assert_eq!(
        statuses(&updates),
        [
            pb::CheckoutStatus::SessionCreated,
            pb::CheckoutStatus::Success
        ]
    );

    // B learned A's request: a retry of the same key on B is recognised,
    // with no second event; a changed payload is refused.
    let retry = on_b
        .start(start_request(31, Some("replicated")))
        .await
        .unwrap();
    assert_eq!(retry.request_id, id);
    assert_eq!(retry.status(), pb::CheckoutStatus::Success);
    let mut changed = start_request(31, Some("replicated"));
    changed.success_url = "https://example.com/other".into();
    assert_eq!(
        on_b.start(changed).await.unwrap_err().code(),
        tonic::Code::AlreadyExists
    );
    assert_eq!(read_all(&kafka, &topics.requests).await.len(), 1);
}

/// Another replica learns a request from its lazy tail of
/// `checkout.requests`, at most about `GATEWAY_REQUESTS_TAIL_WAIT_MS` after
/// the broker acknowledged it (the window in which a retry there is not
/// yet recognised). A retry on that replica after the window gets the same
/// request_id and produces no second event.
#[tokio::test]
async fn a_retry_on_another_replica_after_its_requests_tail_wait_is_recognised() {
    const WAIT: Duration = Duration::from_millis(1500);
    let (_broker, kafka, topics) = broker_and_topics().await;
    let a = TestGateway::start(&kafka, &topics, |_| {}).await;
    let b = TestGateway::start(&kafka, &topics, |c| c.requests_tail_wait = WAIT).await;
    let mut on_a = a.service_client().await;
    let mut on_b = b.service_client().await;

    let first = on_a
        .start(start_request(34, Some("lazy-tail")))
        .await
        .unwrap();
    let acked = tokio::time::Instant::now();
    let id = first.request_id;
    testkit::eventually(
        "replica B's requests tail reads A's request",
        WAIT + Duration::from_secs(10),
        || {
            let mut c = on_b.clone();
            let id = id.clone();
            async move { c.get(&id).await.ok() }
        },
    )
    .await;
    let window = acked.elapsed();
    // The broker holds the tail's fetch for WAIT at most; the rest is slack
    // for a busy machine.
    assert!(
        window < WAIT + Duration::from_secs(5),
        "B learned the request {window:?} after its acknowledgement"
    );

    assert_retry_recognised(
        &mut on_b,
        start_request(34, Some("lazy-tail")),
        (&id, pb::CheckoutStatus::Pending),
        (&kafka, &topics),
        "for the retry on B",
    )
    .await;
}

#[tokio::test]
async fn a_thousand_concurrent_watchers_each_get_exactly_their_own_events() {
    const WATCHERS: usize = 1000;
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let client = gw.service_client().await;
    let producer = worker_producer(&kafka);
    let ids: Vec<String> = (0..WATCHERS)
        .map(|_| RequestId::new_random().to_string())
        .collect();

    // Half the checkouts already have their first status (history), all get
    // the rest live.
    let history = ids
        .iter()
        .step_by(2)
        .map(|id| publish(&producer, &topics, id, 41, CheckoutStatus::SessionCreated));
    futures::stream::iter(history)
        .buffer_unordered(200)
        .collect::<Vec<_>>()
        .await;

    let streams = ids.iter().map(|id| {
        let mut c = client.clone();
        async move { c.watch(id, None).await.unwrap() }
    });
    let streams: Vec<_> = within(
        Duration::from_secs(30),
        "opening 1,000 watches",
        futures::stream::iter(streams).buffered(200).collect(),
    )
    .await;
    testkit::eventually("1,000 open streams", Duration::from_secs(10), || async {
        let metrics = reqwest::get(format!("http://{}/metrics", gw.admin))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        metrics
            .contains(&format!("gateway_open_streams {WATCHERS}\n"))
            .then_some(())
    })
    .await;

    let live = ids.iter().enumerate().map(|(i, id)| {
        let producer = producer.clone();
        let topics = topics.clone();
        async move {
            if i % 2 == 1 {
                publish(&producer, &topics, id, 41, CheckoutStatus::SessionCreated).await;
            }
            publish(&producer, &topics, id, 41, CheckoutStatus::Success).await;
        }
    });
    futures::stream::iter(live)
        .buffer_unordered(200)
        .collect::<Vec<_>>()
        .await;

    let checks = streams
        .into_iter()
        .zip(ids.iter())
        .map(|(mut stream, id)| async move {
            let (updates, end) = drain(&mut stream).await;
            end.unwrap_or_else(|s| panic!("{id}: {s:?}"));
            assert_eq!(
                statuses(&updates),
                [
                    pb::CheckoutStatus::SessionCreated,
                    pb::CheckoutStatus::Success
                ],
                "{id}"
            );
            assert!(
                updates
                    .iter()
                    .all(|u| u.event.as_ref().unwrap().request_id == *id),
                "{id} got another checkout's update"
            );
        });
    within(
        Duration::from_secs(30),
        "1,000 watches to finish",
        futures::future::join_all(checks),
    )
    .await;
}

#[tokio::test]
async fn a_gateway_started_later_reads_back_its_lookback() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let first = TestGateway::start(&kafka, &topics, |_| {}).await;
    let id = first
        .service_client()
        .await
        .start(start_request(33, Some("before-restart")))
        .await
        .unwrap()
        .request_id;
    let producer = worker_producer(&kafka);
    publish(&producer, &topics, &id, 33, CheckoutStatus::SessionCreated).await;
    first.stop().await.unwrap();

    // A fresh gateway (a restart, or a new replica) reads the last hour back.
    let later =
        TestGateway::start(&kafka, &topics, |c| c.lookback = Duration::from_secs(3600)).await;
    let mut client = later.service_client().await;
    let known = testkit::eventually(
        "the restarted gateway knows the checkout",
        Duration::from_secs(10),
        || {
            let mut c = client.clone();
            let id = id.clone();
            async move { c.get(&id).await.ok().filter(|u| u.cursor.is_some()) }
        },
    )
    .await;
    assert_eq!(
        known.event.unwrap().status(),
        pb::CheckoutStatus::SessionCreated
    );
    assert_retry_recognised(
        &mut client,
        start_request(33, Some("before-restart")),
        (&id, pb::CheckoutStatus::SessionCreated),
        (&kafka, &topics),
        "after the restart",
    )
    .await;

    let mut stream = client.watch(&id, None).await.unwrap();
    publish(&producer, &topics, &id, 33, CheckoutStatus::Success).await;
    let (updates, end) = drain(&mut stream).await;
    end.unwrap();
    assert_eq!(
        statuses(&updates),
        [
            pb::CheckoutStatus::SessionCreated,
            pb::CheckoutStatus::Success
        ]
    );
}
