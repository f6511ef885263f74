use std::time::Duration;

use checkout_contract::{CheckoutStatus, RequestId, pb};
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn a_watch_started_after_the_events_gets_them_all_and_ends_ok() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut client = gw.service_client().await;
    let producer = worker_producer(&kafka);

    let id = client
        .start(start_request(11, None))
        .await
        .unwrap()
        .request_id;
    let c1 = publish(&producer, &topics, &id, 11, CheckoutStatus::SessionCreated).await;
    let c2 = publish(&producer, &topics, &id, 11, CheckoutStatus::Success).await;
    // The index has both once GetCheckout reports the terminal one.
    testkit::eventually("GetCheckout sees success", Duration::from_secs(10), || {
        let mut c = client.clone();
        let id = id.clone();
        async move {
            (c.get(&id).await.ok()?.event?.status() == pb::CheckoutStatus::Success).then_some(())
        }
    })
    .await;

    let mut stream = client.watch(&id, None).await.unwrap();
    let (updates, end) = drain(&mut stream).await;
    end.expect("ends OK after the terminal status");
    assert_eq!(
        statuses(&updates),
        [
            pb::CheckoutStatus::SessionCreated,
            pb::CheckoutStatus::Success
        ]
    );
    assert_eq!(updates[0].cursor, Some(c1));
    assert_eq!(updates[1].cursor, Some(c2));
    let first = updates[0].event.as_ref().unwrap();
    assert_eq!(first.request_id, id);
    assert_eq!(
        first.session_url.as_deref(),
        Some(testkit::events::SESSION_URL)
    );

    // Resuming after the first cursor gets only the second.
    let mut resumed = client.watch(&id, Some(c1)).await.unwrap();
    let (updates, end) = drain(&mut resumed).await;
    end.unwrap();
    assert_eq!(statuses(&updates), [pb::CheckoutStatus::Success]);
    assert_eq!(updates[0].cursor, Some(c2));
}

#[tokio::test]
async fn a_watch_started_before_the_events_gets_them_live_exactly_once() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut client = gw.service_client().await;
    let producer = worker_producer(&kafka);

    let id = client
        .start(start_request(12, None))
        .await
        .unwrap()
        .request_id;
    let mut stream = client.watch(&id, None).await.unwrap();
    let c1 = publish(&producer, &topics, &id, 12, CheckoutStatus::SessionCreated).await;
    let first = within(
        Duration::from_secs(10),
        "first live update",
        stream.message(),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        first.event.as_ref().unwrap().status(),
        pb::CheckoutStatus::SessionCreated
    );
    assert_eq!(first.cursor, Some(c1));

    // An event of another checkout in between is not this stream's business.
    let other = RequestId::new_random().to_string();
    publish(
        &producer,
        &topics,
        &other,
        12,
        CheckoutStatus::SessionCreated,
    )
    .await;
    let c2 = publish(&producer, &topics, &id, 12, CheckoutStatus::Failed).await;
    let (rest, end) = drain(&mut stream).await;
    end.expect("terminal status closes the stream with OK");
    assert_eq!(statuses(&rest), [pb::CheckoutStatus::Failed]);
    assert_eq!(rest[0].cursor, Some(c2));
    assert_eq!(
        rest[0].event.as_ref().unwrap().error_message.as_deref(),
        Some(testkit::events::ERROR_MESSAGE)
    );
}

#[tokio::test]
async fn a_cursor_from_a_previous_stream_resumes_live_without_repeats() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut client = gw.service_client().await;
    let producer = worker_producer(&kafka);
    let id = RequestId::new_random().to_string();

    let mut stream = client.watch(&id, None).await.unwrap();
    publish(&producer, &topics, &id, 13, CheckoutStatus::SessionCreated).await;
    let first = within(Duration::from_secs(10), "first update", stream.message())
        .await
        .unwrap()
        .unwrap();
    drop(stream); // the client disconnects

    let mut resumed = client.watch(&id, first.cursor).await.unwrap();
    publish(&producer, &topics, &id, 13, CheckoutStatus::Success).await;
    let (updates, end) = drain(&mut resumed).await;
    end.unwrap();
    assert_eq!(statuses(&updates), [pb::CheckoutStatus::Success]);
}

#[tokio::test]
async fn get_checkout_reports_the_latest_status_pending_or_not_found() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut client = gw.service_client().await;
    let producer = worker_producer(&kafka);

    let unknown = client
        .get(&RequestId::new_random().to_string())
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound, "{unknown:?}");
    let bad = client.get("order-17").await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    assert!(bad.message().starts_with("request_id"), "{}", bad.message());

    let id = client
        .start(start_request(14, None))
        .await
        .unwrap()
        .request_id;
    let pending = client.get(&id).await.unwrap();
    let event = pending.event.unwrap();
    assert_eq!(event.status(), pb::CheckoutStatus::Pending);
    assert_eq!((event.user_id, event.amount_cents), (14, 500));
    assert_eq!(pending.cursor, None);

    let cursor = publish(&producer, &topics, &id, 14, CheckoutStatus::SessionCreated).await;
    let latest = testkit::eventually(
        "GetCheckout sees session_created",
        Duration::from_secs(10),
        || {
            let mut c = client.clone();
            let id = id.clone();
            async move { c.get(&id).await.ok().filter(|u| u.cursor.is_some()) }
        },
    )
    .await;
    assert_eq!(latest.cursor, Some(cursor));
    assert_eq!(
        latest.event.unwrap().status(),
        pb::CheckoutStatus::SessionCreated
    );
}

#[tokio::test]
async fn an_unknown_checkout_is_watched_until_the_deadline() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |c| {
        c.watch_max = Duration::from_millis(600)
    })
    .await;
    let mut client = gw.service_client().await;

    // The client's deadline.
    let mut request = client.request(pb::WatchCheckoutRequest {
        request_id: RequestId::new_random().to_string(),
        resume_after: None,
    });
    request.set_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let end = match client.inner.watch_checkout(request).await {
        Ok(r) => drain(&mut r.into_inner()).await.1,
        Err(s) => Err(s),
    };
    assert_eq!(end.unwrap_err().code(), Code::DeadlineExceeded);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );

    // The server's maximum, for a client without a deadline.
    let mut stream = client
        .watch(&RequestId::new_random().to_string(), None)
        .await
        .unwrap();
    let (updates, end) = drain(&mut stream).await;
    assert!(updates.is_empty());
    let status = end.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert!(
        status.message().contains("resume_after"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn shutdown_ends_open_streams_with_unavailable() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut client = gw.service_client().await;
    let mut stream = client
        .watch(&RequestId::new_random().to_string(), None)
        .await
        .unwrap();

    let stopping = tokio::spawn(gw.stop());
    let (updates, end) = drain(&mut stream).await;
    assert!(updates.is_empty());
    let status = end.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable, "{status:?}");
    assert!(
        status.message().contains("shutting down"),
        "{}",
        status.message()
    );
    within(Duration::from_secs(10), "graceful shutdown", stopping)
        .await
        .unwrap()
        .expect("stops cleanly");
}
