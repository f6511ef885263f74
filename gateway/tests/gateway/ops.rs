use std::time::Duration;

use checkout_contract::pb;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::helpers::*;

/// The services a reflection client lists, v1alpha (grpcurl 1.8) and v1.
async fn listed_services(gw: &TestGateway) -> (Vec<String>, Vec<String>) {
    use tonic_reflection::pb::{v1, v1alpha};
    let request = v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
        ),
    };
    let mut client =
        v1alpha::server_reflection_client::ServerReflectionClient::new(gw.channel().await);
    let mut answers = client
        .server_reflection_info(futures::stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let alpha = match answers
        .message()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
    {
        v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(l) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected v1alpha answer {other:?}"),
    };

    let request = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(
            v1::server_reflection_request::MessageRequest::FileContainingSymbol(
                "checkout.v1.CheckoutGateway".into(),
            ),
        ),
    };
    let mut client = v1::server_reflection_client::ServerReflectionClient::new(gw.channel().await);
    let list = v1::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
            String::new(),
        )),
    };
    let mut answers = client
        .server_reflection_info(futures::stream::iter([request, list]))
        .await
        .unwrap()
        .into_inner();
    match answers
        .message()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
    {
        v1::server_reflection_response::MessageResponse::FileDescriptorResponse(f) => {
            assert!(!f.file_descriptor_proto.is_empty())
        }
        other => panic!("unexpected v1 answer {other:?}"),
    }
    let v1 = match answers
        .message()
        .await
        .unwrap()
        .unwrap()
        .message_response
        .unwrap()
    {
        v1::server_reflection_response::MessageResponse::ListServicesResponse(l) => {
            l.service.into_iter().map(|s| s.name).collect()
        }
        other => panic!("unexpected v1 answer {other:?}"),
    };
    (alpha, v1)
}

#[tokio::test]
async fn reflection_v1alpha_and_v1_list_the_service() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let (alpha, v1) = listed_services(&gw).await;
    for services in [&alpha, &v1] {
        for name in ["checkout.v1.CheckoutGateway", "grpc.health.v1.Health"] {
            assert!(
                services.iter().any(|s| s == name),
                "{name} missing from {services:?}"
            );
        }
    }
}

#[tokio::test]
async fn health_follows_the_broker_down_and_up_again() {
    testkit::init_tracing();
    let mut broker = testkit::broker::TestBroker::start().await;
    let kafka = broker.config(&testkit::unique("gateway-health"));
    let topics = testkit::broker::fresh_topics(&kafka).await;
    let gw = TestGateway::start(&kafka, &topics, |c| {
        c.produce_timeout = Duration::from_millis(1500)
    })
    .await;
    let admin = format!("http://{}/healthz", gw.admin);
    assert_eq!(reqwest::get(&admin).await.unwrap().status(), 200);
    let mut client = gw.service_client().await;
    client.start(start_request(51, None)).await.unwrap();

    broker.kill9();
    gw.wait_for_health(ServingStatus::NotServing).await;
    assert_eq!(reqwest::get(&admin).await.unwrap().status(), 503);
    let refused = client
        .start(start_request(51, Some("while-down")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert!(refused.message().contains("retry"), "{}", refused.message());

    broker.restart().await;
    gw.wait_for_health(ServingStatus::Serving).await;
    assert_eq!(reqwest::get(&admin).await.unwrap().status(), 200);
    // The retry the error asked for now goes through.
    testkit::eventually(
        "StartCheckout after the restart",
        Duration::from_secs(15),
        || {
            let mut c = client.clone();
            async move { c.start(start_request(51, Some("while-down"))).await.ok() }
        },
    )
    .await;
    // The status tail reads again too.
    let id = checkout_contract::RequestId::new_random().to_string();
    let producer = worker_producer(&kafka);
    publish(
        &producer,
        &topics,
        &id,
        51,
        checkout_contract::CheckoutStatus::Success,
    )
    .await;
    let (updates, end) = drain(&mut client.watch(&id, None).await.unwrap()).await;
    end.unwrap();
    assert_eq!(statuses(&updates), [pb::CheckoutStatus::Success]);
}

#[tokio::test]
async fn admin_metrics_count_calls_by_method_and_code() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut client = gw.service_client().await;
    client.start(start_request(61, None)).await.unwrap();
    client.start(start_request(0, None)).await.unwrap_err();
    client
        .get(&checkout_contract::RequestId::new_random().to_string())
        .await
        .unwrap_err();
    let mut anonymous = pb::checkout_gateway_client::CheckoutGatewayClient::new(gw.channel().await);
    anonymous
        .start_checkout(start_request(61, None))
        .await
        .unwrap_err();

    // The status tail's lag comes with librdkafka's statistics (every 5 s),
    // labelled with the tail's group and each partition it reads.
    let tail_lag = format!(
        "kafka_consumer_lag_messages{{group=\"{}-tail\",partition=\"2\",topic=\"{}\"}} ",
        kafka.client_id, topics.requests
    );
    let metrics = testkit::eventually(
        "tail partitions and the tail's consumer lag in /metrics",
        Duration::from_secs(20),
        || async {
            let text = reqwest::get(format!("http://{}/metrics", gw.admin))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            // Everything there is read: the lag comes down to 0.
            (text.contains("gateway_tail_lag_messages{partition=\"2\"}")
                && text.contains(&format!("{tail_lag}0\n")))
            .then_some(text)
        },
    )
    .await;
    for line in [
        "gateway_rpc_duration_seconds_count{code=\"OK\",method=\"StartCheckout\"} 1",
        "gateway_rpc_duration_seconds_count{code=\"INVALID_ARGUMENT\",method=\"StartCheckout\"} 1",
        "gateway_rpc_duration_seconds_count{code=\"UNAUTHENTICATED\",method=\"StartCheckout\"} 1",
        "gateway_rpc_duration_seconds_count{code=\"NOT_FOUND\",method=\"GetCheckout\"} 1",
        "gateway_open_streams 0",
        "gateway_broker_up 1",
        "gateway_index_entries 1",
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
    let memory: f64 = metric_value(&metrics, "process_resident_memory_bytes ");
    assert!(memory > 0.0, "{metrics}");
    assert!(metrics.contains("\nprocess_open_fds "), "{metrics}");
    assert!(
        metrics.contains("\nprocess_cpu_seconds_total "),
        "{metrics}"
    );
}

/// The value on the line of a `/metrics` text starting with `prefix`.
fn metric_value<T: std::str::FromStr>(text: &str, prefix: &str) -> T {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{prefix} missing from\n{text}"))
}

#[tokio::test]
async fn health_is_not_serving_while_no_broker_answers() {
    let nowhere = format!("127.0.0.1:{}", testkit::free_port());
    let kafka = checkout_contract::kafka::KafkaConfig::new(nowhere, "gateway-no-broker");
    let topics = checkout_contract::topics::Topics::with_suffix(".absent");
    let gw = TestGateway::start_unready(&kafka, &topics, |c| {
        c.produce_timeout = Duration::from_millis(300);
    })
    .await;
    assert_eq!(gw.health().await, Some(ServingStatus::NotServing));
    let mut client = gw.service_client().await;
    let refused = client.start(start_request(52, None)).await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    assert_eq!(gw.health().await, Some(ServingStatus::NotServing));
    let healthz = reqwest::get(format!("http://{}/healthz", gw.admin))
        .await
        .unwrap();
    assert_eq!(healthz.status(), 503);
}
