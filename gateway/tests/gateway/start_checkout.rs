use std::time::Duration;

use checkout_contract::{CheckoutStatus, pb};
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn produces_exactly_the_seed_json_keyed_by_request_id() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut client = gw.service_client().await;

    let mut request = start_request(123, None);
    request.currency = String::new(); // defaults to eur
    request.purpose = String::new(); // defaults to balance_topup
    let answer = client.start(request).await.unwrap();
    assert_eq!(answer.status(), pb::CheckoutStatus::Pending);
    assert!(
        uuid::Uuid::try_parse(&answer.request_id).is_ok(),
        "{}",
        answer.request_id
    );

    let read = read_all(&kafka, &topics.requests).await;
    assert_eq!(read.len(), 1, "{read:?}");
    let m = &read[0];
    assert_eq!(m.key.as_deref(), Some(answer.request_id.as_str()));
    // Exactly the seed's fields, in the seed's order.
    let json = testkit::events::assert_seed_request_json(&String::from_utf8_lossy(&m.payload));
    assert_eq!(json["request_id"], answer.request_id.as_str());
    assert_eq!(json["user_id"], 123);
    assert_eq!(json["amount_cents"], 500);
    assert_eq!(json["currency"], "eur");
    assert_eq!(json["purpose"], "balance_topup");
    assert_eq!(
        json["success_url"],
        "https://example.com/balance?status=success"
    );
    assert_eq!(
        json["cancel_url"],
        "https://example.com/balance?status=cancel"
    );
    let ts = json["timestamp"].as_str().unwrap();
    assert!(
        ts.ends_with('Z') && checkout_contract::events::iso8601::parse(ts).is_ok(),
        "{ts}"
    );
    assert!(
        m.headers
            .contains(&("request_id".into(), answer.request_id.clone())),
        "{:?}",
        m.headers
    );
    assert!(
        m.headers
            .contains(&("content-type".into(), "application/json".into())),
        "{:?}",
        m.headers
    );
    // It parses as the contract's event and is valid.
    let event: checkout_contract::CheckoutRequestEvent =
        serde_json::from_value(json.clone()).unwrap();
    event.validate().unwrap();
}

#[tokio::test]
async fn every_invalid_field_gets_invalid_argument_naming_it() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut client = gw.service_client().await;

    type Change = fn(&mut pb::StartCheckoutRequest);
    let cases: Vec<(&str, Change)> = vec![
        ("user_id", |r| r.user_id = 0),
        ("user_id", |r| r.user_id = -3),
        ("amount_cents", |r| r.amount_cents = 0),
        ("amount_cents", |r| r.amount_cents = 100_000_000),
        ("amount_cents", |r| r.amount_cents = 10),
        ("currency", |r| r.currency = "EUR".into()),
        ("currency", |r| r.currency = "xyz".into()),
        ("purpose", |r| r.purpose = "Top Up!".into()),
        ("success_url", |r| r.success_url = "/balance".into()),
        ("success_url", |r| r.success_url = String::new()),
        ("cancel_url", |r| {
            r.cancel_url = "javascript:alert(1)".into()
        }),
        // Not in the redirect allowlist (CHECKOUT_REDIRECT_HOSTS): no open redirect.
        ("success_url", |r| {
            r.success_url = "https://evil.test/phish".into()
        }),
        ("cancel_url", |r| {
            r.cancel_url = "https://example.com.evil.test/".into()
        }),
        ("idempotency_key", |r| r.idempotency_key = Some(" ".into())),
        ("idempotency_key", |r| {
            r.idempotency_key = Some("k".repeat(129))
        }),
        ("wait_for_session", |r| {
            r.wait_for_session = Some(prost_types::Duration {
                seconds: -1,
                nanos: 0,
            })
        }),
    ];
    for (field, change) in cases {
        let mut request = start_request(5, Some("valid-key"));
        change(&mut request);
        let status = client.start(request).await.expect_err(field);
        assert_eq!(status.code(), Code::InvalidArgument, "{field}: {status:?}");
        assert!(
            status.message().starts_with(field),
            "{field}: {:?}",
            status.message()
        );
    }
    assert!(
        read_all(&kafka, &topics.requests).await.is_empty(),
        "nothing invalid was produced"
    );
}

#[tokio::test]
async fn idempotent_retries_give_one_event_and_a_changed_payload_is_refused() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut client = gw.service_client().await;

    let first = client
        .start(start_request(42, Some("order-1")))
        .await
        .unwrap();
    let again = client
        .start(start_request(42, Some("order-1")))
        .await
        .unwrap();
    assert_eq!(first.request_id, again.request_id);
    assert_eq!(again.status(), pb::CheckoutStatus::Pending);

    let mut changed = start_request(42, Some("order-1"));
    changed.amount_cents = 900;
    let refused = client.start(changed).await.unwrap_err();
    assert_eq!(refused.code(), Code::AlreadyExists, "{refused:?}");
    assert!(
        refused.message().contains("idempotency_key")
            && refused.message().contains("different payload"),
        "{}",
        refused.message()
    );

    // Concurrent duplicates of a new key: one event between them.
    let calls = (0..8).map(|_| {
        let mut c = client.clone();
        async move {
            c.start(start_request(42, Some("order-2")))
                .await
                .unwrap()
                .request_id
        }
    });
    let ids = futures::future::join_all(calls).await;
    assert!(ids.windows(2).all(|w| w[0] == w[1]), "{ids:?}");
    assert_ne!(ids[0], first.request_id);

    // The same key from another caller is another checkout.
    let other = gw
        .client(&token("shop", checkout_contract::auth::Role::Service))
        .await
        .start(start_request(42, Some("order-1")))
        .await
        .unwrap();
    assert_ne!(other.request_id, first.request_id);

    let read = read_all(&kafka, &topics.requests).await;
    let mut keys: Vec<&str> = read.iter().filter_map(|r| r.key.as_deref()).collect();
    keys.sort_unstable();
    let mut expected = vec![
        first.request_id.as_str(),
        ids[0].as_str(),
        other.request_id.as_str(),
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected, "one event per checkout");

    // A retry after the worker answered reports the latest status.
    let producer = worker_producer(&kafka);
    publish(
        &producer,
        &topics,
        &first.request_id,
        42,
        CheckoutStatus::SessionCreated,
    )
    .await;
    testkit::eventually(
        "retry reports SESSION_CREATED",
        Duration::from_secs(10),
        || {
            let mut c = client.clone();
            async move {
                let r = c.start(start_request(42, Some("order-1"))).await.unwrap();
                (r.status() == pb::CheckoutStatus::SessionCreated).then_some(r)
            }
        },
    )
    .await;
    assert_eq!(read_all(&kafka, &topics.requests).await.len(), 3);
}

#[tokio::test]
async fn wait_for_session_answers_with_the_workers_session_or_pending() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut client = gw.service_client().await;
    let producer = worker_producer(&kafka);

    // No worker: PENDING once the wait is over.
    let mut request = start_request(8, None);
    request.wait_for_session = Some(prost_types::Duration {
        seconds: 0,
        nanos: 300_000_000,
    });
    let answer = client.start(request).await.unwrap();
    assert_eq!(answer.status(), pb::CheckoutStatus::Pending);

    // A "worker" answering each request it sees.
    let worker = {
        let (kafka, topics, producer) = (kafka.clone(), topics.clone(), producer.clone());
        let first = answer.request_id.clone();
        tokio::spawn(async move {
            let seen = testkit::eventually(
                "second request on checkout.requests",
                Duration::from_secs(10),
                || async {
                    let read = read_all(&kafka, &topics.requests).await;
                    read.into_iter().filter_map(|r| r.key).find(|k| *k != first)
                },
            )
            .await;
            publish(&producer, &topics, &seen, 8, CheckoutStatus::SessionCreated).await;
        })
    };
    let mut request = start_request(8, None);
    request.wait_for_session = Some(prost_types::Duration {
        seconds: 10,
        nanos: 0,
    });
    let mut call = client.request(request);
    call.set_timeout(Duration::from_secs(15));
    let answer = client
        .inner
        .start_checkout(call)
        .await
        .unwrap()
        .into_inner();
    worker.await.unwrap();
    assert_eq!(
        answer.status(),
        pb::CheckoutStatus::SessionCreated,
        "{answer:?}"
    );
    assert_eq!(
        answer.session_url.as_deref(),
        Some(testkit::events::SESSION_URL)
    );
    assert!(answer.session_id.is_some());

    // The call's own deadline caps the wait: an answer, not DEADLINE_EXCEEDED.
    let mut request = start_request(8, None);
    request.wait_for_session = Some(prost_types::Duration {
        seconds: 60,
        nanos: 0,
    });
    let mut call = client.request(request);
    call.set_timeout(Duration::from_secs(5));
    let started = std::time::Instant::now();
    let answer = client
        .inner
        .start_checkout(call)
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answer.status(), pb::CheckoutStatus::Pending);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_secs(4) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
}
