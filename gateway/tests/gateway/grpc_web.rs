use checkout_contract::auth::Role;
use checkout_contract::{CheckoutStatus, pb};
use prost::Message as _;

use crate::helpers::*;

const ORIGIN: &str = "https://app.example";

/// One gRPC-Web frame: flag byte, big-endian length, payload.
fn frame(flag: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![flag];
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// Splits a gRPC-Web response body into (data messages, trailer text).
fn frames(mut body: &[u8]) -> (Vec<Vec<u8>>, String) {
    let (mut data, mut trailers) = (Vec::new(), String::new());
    while body.len() >= 5 {
        let len = u32::from_be_bytes(body[1..5].try_into().unwrap()) as usize;
        let payload = body[5..5 + len].to_vec();
        if body[0] & 0x80 == 0 {
            data.push(payload);
        } else {
            trailers.push_str(&String::from_utf8(payload).unwrap());
        }
        body = &body[5 + len..];
    }
    (data, trailers)
}

#[tokio::test]
async fn an_http1_grpc_web_post_starts_a_checkout() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |c| c.cors_origins = vec![ORIGIN.into()]).await;
    let http = reqwest::Client::new();
    let url = format!("{}/checkout.v1.CheckoutGateway/StartCheckout", gw.url());

    let body = frame(0, &start_request(71, None).encode_to_vec());
    let response = http
        .post(&url)
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header("origin", ORIGIN)
        .header(
            "authorization",
            format!("Bearer {}", token("71", Role::User)),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_11);
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/grpc-web"),
        "{headers:?}"
    );
    assert_eq!(headers["access-control-allow-origin"], ORIGIN);
    let (data, trailers) = frames(&response.bytes().await.unwrap());
    assert!(trailers.contains("grpc-status:0"), "{trailers:?}");
    assert_eq!(data.len(), 1);
    let answer = pb::StartCheckoutResponse::decode(data[0].as_slice()).unwrap();
    assert_eq!(answer.status(), pb::CheckoutStatus::Pending);

    let read = read_all(&kafka, &topics.requests).await;
    assert_eq!(read.len(), 1);
    assert_eq!(read[0].key.as_deref(), Some(answer.request_id.as_str()));
    assert_eq!(read[0].json()["user_id"], 71);

    // Errors travel as gRPC-Web trailers too.
    let response = http
        .post(&url)
        .header("content-type", "application/grpc-web+proto")
        .body(frame(0, &start_request(71, None).encode_to_vec()))
        .send()
        .await
        .unwrap();
    let grpc_status = response
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_owned());
    let (_, trailers) = frames(&response.bytes().await.unwrap());
    assert!(
        grpc_status.as_deref() == Some("16") || trailers.contains("grpc-status:16"),
        "{grpc_status:?} {trailers:?}"
    );
}

#[tokio::test]
async fn cors_preflight_allows_only_the_configured_origins() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |c| c.cors_origins = vec![ORIGIN.into()]).await;
    let http = reqwest::Client::new();
    let url = format!("{}/checkout.v1.CheckoutGateway/WatchCheckout", gw.url());
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "content-type,x-grpc-web,authorization",
            )
            .send()
    };
    let allowed = preflight(ORIGIN).await.unwrap();
    assert!(allowed.status().is_success(), "{allowed:?}");
    assert_eq!(allowed.headers()["access-control-allow-origin"], ORIGIN);
    let headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    assert!(
        headers.contains("authorization") && headers.contains("x-grpc-web"),
        "{headers}"
    );

    let other = preflight("https://evil.example").await.unwrap();
    assert!(
        other.headers().get("access-control-allow-origin").is_none(),
        "{other:?}"
    );
}

#[tokio::test]
async fn an_http1_grpc_web_post_streams_watch_checkout() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut client = gw.service_client().await;
    let id = client
        .start(start_request(72, None))
        .await
        .unwrap()
        .request_id;
    let producer = worker_producer(&kafka);
    publish(&producer, &topics, &id, 72, CheckoutStatus::SessionCreated).await;
    publish(&producer, &topics, &id, 72, CheckoutStatus::Success).await;

    let request = pb::WatchCheckoutRequest {
        request_id: id.clone(),
        resume_after: None,
    };
    let response = reqwest::Client::new()
        .post(format!(
            "{}/checkout.v1.CheckoutGateway/WatchCheckout",
            gw.url()
        ))
        .header("content-type", "application/grpc-web+proto")
        .header("x-grpc-web", "1")
        .header(
            "authorization",
            format!("Bearer {}", token("72", Role::User)),
        )
        .body(frame(0, &request.encode_to_vec()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.version(), http::Version::HTTP_11);
    let body = within(
        std::time::Duration::from_secs(15),
        "the stream",
        response.bytes(),
    )
    .await
    .unwrap();
    let (data, trailers) = frames(&body);
    assert!(trailers.contains("grpc-status:0"), "{trailers:?}");
    let updates: Vec<pb::CheckoutUpdate> = data
        .iter()
        .map(|d| pb::CheckoutUpdate::decode(d.as_slice()).unwrap())
        .collect();
    assert_eq!(
        statuses(&updates),
        [
            pb::CheckoutStatus::SessionCreated,
            pb::CheckoutStatus::Success
        ]
    );
}
