//! The launcher starts on free ports and the whole flow runs through it with
//! real clients: tonic StartCheckout -> WatchCheckout -> emulator pay ->
//! `success` -> blazing_sun's balance up by exactly the amount; then the
//! monitoring subcommands see the topics, the events and zero lag.

use std::time::Duration;

use checkout_contract::pb::checkout_gateway_client::CheckoutGatewayClient;
use checkout_contract::pb::{CheckoutStatus, StartCheckoutRequest, WatchCheckoutRequest};
use checkout_contract::topics::{consumer_groups, topic};
use stack::monitor::{self, TailOptions};
use stack::system::{self, DEMO_USER_ID};
use stack::StackConfig;
use tonic::Request;
use tonic::metadata::MetadataValue;

fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

async fn eur_balance(http: &reqwest::Client, base: &str, token: &str) -> i64 {
    let body: serde_json::Value = http
        .get(format!("{base}/api/v1/balance"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap();
    body["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["currency"] == "eur")
        .map_or(0, |b| b["balance_cents"].as_i64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_whole_flow_runs_through_the_launcher() {
    testkit::init_tracing();
    let data = tempfile::tempdir().unwrap();
    let running = system::start(StackConfig::on_free_ports(data.path().to_path_buf())).await.expect("stack starts");
    let banner = stack::banner::banner(&running);
    assert!(banner.contains(&running.demo_user_token) && banner.contains(&running.gateway.to_string()), "{banner}");

    let emulator = running.emulator.expect("emulator by default");
    let bs = format!("http://{}", running.blazing_sun);
    let http = reqwest::Client::new();
    let token = running.demo_user_token.clone();
    assert_eq!(eur_balance(&http, &bs, &token).await, 0);

    let mut client = CheckoutGatewayClient::connect(format!("http://{}", running.gateway)).await.unwrap();
    let started = client
        .start_checkout(authed(
            StartCheckoutRequest {
                user_id: DEMO_USER_ID,
                amount_cents: 1234,
                currency: "eur".into(),
                success_url: format!("{bs}/?checkout=success"),
                cancel_url: format!("{bs}/?checkout=cancel"),
                ..Default::default()
            },
            &token,
        ))
        .await
        .expect("StartCheckout")
        .into_inner();
    let request_id = started.request_id;

    let mut stream = client
        .watch_checkout(authed(WatchCheckoutRequest { request_id: request_id.clone(), resume_after: None }, &token))
        .await
        .expect("WatchCheckout")
        .into_inner();
    let created: checkout_contract::pb::CheckoutUpdate = next(&mut stream).await.unwrap().expect("session_created");
    let event = created.event.unwrap();
    assert_eq!(event.status(), CheckoutStatus::SessionCreated);
    let session_id = event.session_id.expect("session id");
    assert!(event.session_url.unwrap().contains(&session_id));

    let paid = http
        .post(format!("http://{emulator}/_emulator/checkout/sessions/{session_id}/pay"))
        .json(&serde_json::json!({"outcome": "paid"}))
        .send()
        .await
        .unwrap();
    assert!(paid.status().is_success(), "{}", paid.text().await.unwrap());

    let success: checkout_contract::pb::CheckoutUpdate = next(&mut stream).await.unwrap().expect("success");
    let event = success.event.unwrap();
    assert_eq!(event.status(), CheckoutStatus::Success);
    assert!(event.payment_intent_id.is_some());
    assert!(next(&mut stream).await.unwrap().is_none(), "the stream ends with OK after success");

    testkit::eventually("the balance to rise by exactly 1234", Duration::from_secs(30), || {
        let (http, bs, token) = (http.clone(), bs.clone(), token.clone());
        async move { (eur_balance(&http, &bs, &token).await == 1234).then_some(()) }
    })
    .await;

    // Monitoring: the topics, the events, zero lag for both groups.
    let kafka = checkout_contract::kafka::KafkaConfig::new(running.kafka_bootstrap.clone(), "stack-test");
    let topics = monitor::topics(&kafka).await.unwrap();
    for t in [topic::CHECKOUT_REQUESTS, topic::CHECKOUT_FINISHED] {
        assert!(topics.contains(&(t.to_owned(), 3)), "{topics:?}");
    }
    let out = std::sync::Arc::new(std::sync::Mutex::new(Vec::<u8>::new()));
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let options = TailOptions { from_beginning: true, max_messages: Some(2), timeout: Some(Duration::from_secs(20)) };
    assert_eq!(monitor::tail(&kafka, topic::CHECKOUT_FINISHED, &options, Sink(out.clone())).await.unwrap(), 2);
    let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
    assert!(text.contains("\"status\":\"session_created\"") && text.contains("\"status\":\"success\""), "{text}");
    assert!(text.contains(&request_id), "{text}");

    for (group, t) in [
        (consumer_groups::MAIN_APP, topic::CHECKOUT_FINISHED),
        (consumer_groups::CHECKOUT_SERVICE, topic::CHECKOUT_REQUESTS),
    ] {
        testkit::eventually(&format!("zero lag for {group}"), Duration::from_secs(30), || {
            let kafka = kafka.clone();
            async move {
                let rows = monitor::lag(&kafka, group, &[t.to_owned()]).await.ok()?;
                (rows.len() == 3 && rows.iter().all(|r| r.lag == 0) && rows.iter().map(|r| r.end).sum::<i64>() > 0)
                    .then_some(())
            }
        })
        .await;
    }

    running.run_until_stopped(async {}).await.expect("clean shutdown");
}

async fn next(
    stream: &mut tonic::Streaming<checkout_contract::pb::CheckoutUpdate>,
) -> Result<Option<checkout_contract::pb::CheckoutUpdate>, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(30), stream.message()).await.expect("update within 30 s")
}
