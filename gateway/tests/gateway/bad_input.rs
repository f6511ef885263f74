//! Hostile or broken input gets a clear error, crashes nothing and publishes
//! nothing: oversized messages and metadata, invalid UTF-8 in a string field,
//! amounts that overflow, and 10,000 watchers of request_ids that never
//! appear (they end at their deadline; streams and index stay bounded).

use std::time::Duration;

use checkout_contract::pb;
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;

use crate::helpers::*;

/// StartCheckoutRequest with `success_url` (tag 5) as raw bytes, so a test
/// can send what a Rust `String` cannot hold.
#[derive(Clone, PartialEq, prost::Message)]
struct RawStart {
    #[prost(int64, tag = "1")]
    user_id: i64,
    #[prost(int64, tag = "2")]
    amount_cents: i64,
    #[prost(bytes = "vec", tag = "5")]
    success_url: Vec<u8>,
}

async fn metric(gw: &TestGateway, name: &str) -> f64 {
    let text = reqwest::get(format!("http://{}/metrics", gw.admin))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .unwrap_or_else(|| panic!("{name} in /metrics"))
        .parse()
        .unwrap()
}

#[tokio::test]
async fn oversized_invalid_and_overflowing_input_is_refused_and_nothing_is_produced() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut client = gw.service_client().await;

    // A message above GATEWAY_MAX_MESSAGE_BYTES (64 KiB).
    let mut big = start_request(5, None);
    big.purpose = "x".repeat(100 * 1024);
    let status = client.start(big).await.unwrap_err();
    assert!(
        matches!(status.code(), Code::OutOfRange | Code::ResourceExhausted),
        "{status:?}"
    );
    assert!(status.message().contains("too large"), "{status:?}");

    // Metadata far above what a header list may hold.
    let mut request = client.request(start_request(5, None));
    request
        .metadata_mut()
        .insert("x-padding", "p".repeat(256 * 1024).parse().unwrap());
    let status = client.inner.start_checkout(request).await.unwrap_err();
    assert_ne!(status.code(), Code::Ok, "{status:?}");

    // Amounts that overflow any sane range.
    for amount in [i64::MAX, i64::MIN, -1] {
        let mut r = start_request(5, None);
        r.amount_cents = amount;
        let status = client.start(r).await.unwrap_err();
        assert_eq!(status.code(), Code::InvalidArgument, "{amount}: {status:?}");
        assert!(status.message().starts_with("amount_cents"), "{status:?}");
    }

    // Invalid UTF-8 where protobuf wants a string.
    let mut grpc = tonic::client::Grpc::new(gw.channel().await);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(RawStart {
        user_id: 5,
        amount_cents: 500,
        success_url: b"https://example.com/\xff\xfe".to_vec(),
    });
    request.metadata_mut().insert(
        "authorization",
        format!(
            "Bearer {}",
            token("svc", checkout_contract::auth::Role::Service)
        )
        .parse()
        .unwrap(),
    );
    let status = grpc
        .unary::<_, pb::StartCheckoutResponse, _>(
            request,
            PathAndQuery::from_static("/checkout.v1.CheckoutGateway/StartCheckout"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_ne!(status.code(), Code::Ok, "{status:?}");
    assert!(!status.message().is_empty(), "a reason: {status:?}");

    // Still serving, and none of the above reached Kafka.
    let fine = client.start(start_request(5, None)).await.unwrap();
    let read = read_all(&kafka, &topics.requests).await;
    assert_eq!(read.len(), 1, "{read:?}");
    assert_eq!(read[0].key.as_deref(), Some(fine.request_id.as_str()));
}

#[tokio::test]
async fn ten_thousand_watchers_of_unknown_ids_end_at_their_deadline_and_leave_nothing() {
    const WATCHERS: usize = 10_000;
    const CONNECTIONS: usize = 4; // 2,500 streams each, under the 4,096 per connection
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let bearer = format!(
        "Bearer {}",
        token("svc", checkout_contract::auth::Role::Service)
    );

    let mut channels = Vec::new();
    for _ in 0..CONNECTIONS {
        channels.push(gw.channel().await);
    }
    // Long enough for all of them to be open at once on a loaded machine.
    let deadline = Duration::from_secs(40);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..WATCHERS {
        let mut client = pb::checkout_gateway_client::CheckoutGatewayClient::new(
            channels[i % CONNECTIONS].clone(),
        );
        let bearer = bearer.clone();
        tasks.spawn(async move {
            let mut request = tonic::Request::new(pb::WatchCheckoutRequest {
                request_id: uuid::Uuid::new_v4().to_string(),
                resume_after: None,
            });
            request.set_timeout(deadline);
            request
                .metadata_mut()
                .insert("authorization", bearer.parse().unwrap());
            let mut stream = match client.watch_checkout(request).await {
                Ok(s) => s.into_inner(),
                Err(status) => return status.code(),
            };
            match stream.message().await {
                Ok(Some(update)) => panic!("an update for an unknown id: {update:?}"),
                Ok(None) => Code::Ok,
                Err(status) => status.code(),
            }
        });
    }

    // While they wait: all open, none in the index.
    testkit::eventually("10,000 open streams", Duration::from_secs(35), || async {
        (metric(&gw, "gateway_open_streams").await >= WATCHERS as f64).then_some(())
    })
    .await;
    assert_eq!(metric(&gw, "gateway_index_entries").await, 0.0);

    let mut codes = std::collections::BTreeMap::new();
    while let Some(code) = tasks.join_next().await {
        *codes.entry(format!("{:?}", code.unwrap())).or_insert(0) += 1;
    }
    assert_eq!(
        codes.get("DeadlineExceeded"),
        Some(&WATCHERS),
        "every watcher ends at its deadline: {codes:?}"
    );
    testkit::eventually("no open streams", Duration::from_secs(30), || async {
        (metric(&gw, "gateway_open_streams").await == 0.0).then_some(())
    })
    .await;
    assert_eq!(metric(&gw, "gateway_index_entries").await, 0.0);
    // And it still answers.
    let mut client = gw.service_client().await;
    assert_eq!(
        client
            .get(&uuid::Uuid::new_v4().to_string())
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}
