//! The launcher starts on free ports and the whole flow runs through it with
//! real clients: tonic StartCheckout -> WatchCheckout -> emulator pay ->
//! `success` -> blazing_sun's balance up by exactly the amount; then the
//! monitoring subcommands see the topics, the events and zero lag.

use std::time::Duration;

use checkout_contract::pb::checkout_gateway_client::CheckoutGatewayClient;
use checkout_contract::pb::{CheckoutStatus, StartCheckoutRequest, WatchCheckoutRequest};
use checkout_contract::topics::{consumer_groups, topic};
use stack::StackConfig;
use stack::system::{self, DEMO_USER_ID};
use tonic::Request;
use tonic::metadata::MetadataValue;

pub(crate) fn authed<T>(message: T, token: &str) -> Request<T> {
    let mut request = Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}").parse().unwrap();
    request.metadata_mut().insert("authorization", value);
    request
}

/// Pays `session_id` through the emulator's control API at `emulator` (a base URL).
pub(crate) async fn pay(http: &reqwest::Client, emulator: &str, session_id: &str) {
    let paid = http
        .post(format!(
            "{emulator}/_emulator/checkout/sessions/{session_id}/pay"
        ))
        .json(&serde_json::json!({"outcome": "paid"}))
        .send()
        .await
        .unwrap();
    assert!(paid.status().is_success(), "{}", paid.text().await.unwrap());
}

/// Starts a top-up of `amount` minor units of `currency` through
/// blazing_sun's API and waits for its Stripe session: `(id, url)`.
pub(crate) async fn start_top_up(
    http: &reqwest::Client,
    bs: &str,
    token: &str,
    amount: i64,
    currency: &str,
) -> (String, String) {
    let accepted = json_of(
        http.post(format!("{bs}/api/v1/balance/checkout"))
            .bearer_auth(token)
            .json(&serde_json::json!({"amount_cents": amount, "currency": currency})),
    )
    .await;
    let status_url = accepted["status_url"].as_str().unwrap();
    testkit::eventually(
        "the checkout's session",
        Duration::from_secs(30),
        || async {
            let c = get_json(http, status_url, token).await;
            Some((
                c["session_id"].as_str()?.to_owned(),
                c["session_url"].as_str()?.to_owned(),
            ))
        },
    )
    .await
}

/// GET `url` with the bearer `token`: its JSON body (a 2xx is required).
pub(crate) async fn get_json(http: &reqwest::Client, url: &str, token: &str) -> serde_json::Value {
    json_of(http.get(url).bearer_auth(token)).await
}

/// Sends `request`: its JSON body (a 2xx is required).
async fn json_of(request: reqwest::RequestBuilder) -> serde_json::Value {
    request
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub(crate) async fn eur_balance(http: &reqwest::Client, base: &str, token: &str) -> i64 {
    let body = get_json(http, &format!("{base}/api/v1/balance"), token).await;
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
    let running = system::start(StackConfig::on_free_ports(data.path().to_path_buf()))
        .await
        .expect("stack starts");
    let banner = stack::banner::banner(&running);
    assert!(
        banner.contains(&running.demo_user_token) && banner.contains(&running.gateway.to_string()),
        "{banner}"
    );

    let emulator = running.emulator.expect("emulator by default");
    let bs = format!("http://{}", running.blazing_sun);
    let http = reqwest::Client::new();
    let token = running.demo_user_token.clone();
    assert_eq!(eur_balance(&http, &bs, &token).await, 0);

    let mut client = CheckoutGatewayClient::connect(format!("http://{}", running.gateway))
        .await
        .unwrap();
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
        .watch_checkout(authed(
            WatchCheckoutRequest {
                request_id: request_id.clone(),
                resume_after: None,
            },
            &token,
        ))
        .await
        .expect("WatchCheckout")
        .into_inner();
    let created: checkout_contract::pb::CheckoutUpdate =
        next(&mut stream).await.unwrap().expect("session_created");
    let event = created.event.unwrap();
    assert_eq!(event.status(), CheckoutStatus::SessionCreated);
    let session_id = event.session_id.expect("session id");
    assert!(event.session_url.unwrap().contains(&session_id));

    pay(&http, &format!("http://{emulator}"), &session_id).await;

    let success: checkout_contract::pb::CheckoutUpdate =
        next(&mut stream).await.unwrap().expect("success");
    let event = success.event.unwrap();
    assert_eq!(event.status(), CheckoutStatus::Success);
    assert!(event.payment_intent_id.is_some());
    assert!(
        next(&mut stream).await.unwrap().is_none(),
        "the stream ends with OK after success"
    );

    testkit::eventually(
        "the balance to rise by exactly 1234",
        Duration::from_secs(30),
        || {
            let (http, bs, token) = (http.clone(), bs.clone(), token.clone());
            async move { (eur_balance(&http, &bs, &token).await == 1234).then_some(()) }
        },
    )
    .await;

    // Monitoring: the three subcommands of the real binary show the topics,
    // the events and zero lag for both groups.
    let bootstrap = running.kafka_bootstrap.clone();
    let topics = stack_cli(&bootstrap, &["topics"]).await;
    for t in [topic::CHECKOUT_REQUESTS, topic::CHECKOUT_FINISHED] {
        assert!(
            topics.lines().any(|l| l == format!("{t}\tpartitions=3")),
            "{topics}"
        );
    }
    let events = stack_cli(
        &bootstrap,
        &[
            "tail",
            topic::CHECKOUT_FINISHED,
            "--from-beginning",
            "--max-messages",
            "2",
            "--timeout-ms",
            "20000",
        ],
    )
    .await;
    let statuses: Vec<String> = events
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["status"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(statuses, ["session_created", "success"], "{events}");
    assert!(events.contains(&request_id), "{events}");

    for group in [consumer_groups::MAIN_APP, consumer_groups::CHECKOUT_SERVICE] {
        testkit::eventually(
            &format!("zero lag for {group}"),
            Duration::from_secs(30),
            || {
                let bootstrap = bootstrap.clone();
                async move {
                    let table = stack_cli(&bootstrap, &["lag", group]).await;
                    let rows: Vec<Vec<&str>> = table
                        .lines()
                        .skip(1)
                        .map(|l| l.split_whitespace().collect())
                        .collect();
                    let all_zero =
                        rows.len() == 3 && rows.iter().all(|r| r[0] == group && r[5] == "0");
                    let consumed = rows.iter().any(|r| r[3] != "-" && r[3] != "0");
                    (all_zero && consumed).then_some(())
                }
            },
        )
        .await;
    }

    running
        .run_until_stopped(async {})
        .await
        .expect("clean shutdown");
}

async fn next(
    stream: &mut tonic::Streaming<checkout_contract::pb::CheckoutUpdate>,
) -> Result<Option<checkout_contract::pb::CheckoutUpdate>, tonic::Status> {
    tokio::time::timeout(Duration::from_secs(30), stream.message())
        .await
        .expect("update within 30 s")
}

/// Runs the `checkout-stack` binary with `args` against `bootstrap` and returns its stdout.
async fn stack_cli(bootstrap: &str, args: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_checkout-stack"))
        .args(args)
        .env("KAFKA_BOOTSTRAP_SERVERS", bootstrap)
        .output()
        .await
        .expect("checkout-stack runs");
    assert!(
        output.status.success(),
        "checkout-stack {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn a_busy_port_is_one_clear_line_and_a_failing_exit() {
    let data = tempfile::tempdir().unwrap();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let busy_addr = busy.local_addr().unwrap().to_string();
    let free = || format!("127.0.0.1:{}", testkit::free_port());
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_checkout-stack"))
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env("STACK_DATA_DIR", data.path())
        .env("STACK_KAFKA_LISTEN", free())
        .env("STRIPE_EMULATOR_LISTEN", free())
        .env("CHECKOUT_WEBHOOK_LISTEN", free())
        .env("BLAZING_SUN_LISTEN", free())
        .env("GATEWAY_ADMIN_LISTEN", free())
        .env("GATEWAY_LISTEN", &busy_addr)
        .env("RUST_LOG", "off")
        .output()
        .await
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(
        lines[0].contains("gateway") && lines[0].contains(&busy_addr),
        "{stderr}"
    );

    let bad = tokio::process::Command::new(env!("CARGO_BIN_EXE_checkout-stack"))
        .env("GATEWAY_LISTEN", "not-an-address")
        .env("RUST_LOG", "off")
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("GATEWAY_LISTEN"));
}

/// A yen top-up through blazing_sun's API, end to end through the launcher:
/// JPY is a zero-decimal currency, so `amount_cents` 1000 is 1,000 yen at
/// every step: Stripe's `unit_amount`, the payment page, the balance.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_jpy_top_up_is_whole_yen_from_request_to_balance() {
    testkit::init_tracing();
    let data = tempfile::tempdir().unwrap();
    let running = system::start(StackConfig::on_free_ports(data.path().to_path_buf()))
        .await
        .expect("stack starts");
    let emulator = format!("http://{}", running.emulator.expect("emulator by default"));
    let bs = format!("http://{}", running.blazing_sun);
    let http = reqwest::Client::new();
    let token = running.demo_user_token.clone();

    let (session_id, session_url) = start_top_up(&http, &bs, &token, 1000, "jpy").await;

    // Stripe's view: one line item of unit_amount 1000 in jpy (whole yen).
    let session = get_json(
        &http,
        &format!("{emulator}/v1/checkout/sessions/{session_id}"),
        "sk_test_jpy_check",
    )
    .await;
    assert_eq!(session["currency"], "jpy");
    assert_eq!(session["amount_total"], 1000, "{session}");
    // The payment page shows the line item's unit_amount and the total as yen.
    let page = http
        .get(&session_url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("— 1,000 JPY</li>"), "{page}");
    assert!(
        page.contains(r#"<strong id="total">1,000 JPY</strong>"#),
        "{page}"
    );
    assert!(!page.contains("10.00"), "{page}");

    pay(&http, &emulator, &session_id).await;

    // Credited as 1000 minor units of jpy, which the API says are whole yen.
    let balance_url = format!("{bs}/api/v1/balance");
    let view = testkit::eventually("the yen balance", Duration::from_secs(30), || async {
        let view = get_json(&http, &balance_url, &token).await;
        let jpy = view["balances"]
            .as_array()?
            .iter()
            .find(|b| b["currency"] == "jpy")?
            .clone();
        (jpy["balance_cents"] == 1000).then_some(view)
    })
    .await;
    let jpy = view["balances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["currency"] == "jpy")
        .unwrap();
    assert_eq!(jpy["currency_exponent"], 0, "{view}");
    assert_eq!(view["recent_ledger"][0]["amount_cents"], 1000, "{view}");
    assert_eq!(view["recent_ledger"][0]["currency_exponent"], 0, "{view}");
    assert_eq!(eur_balance(&http, &bs, &token).await, 0);

    running
        .run_until_stopped(async {})
        .await
        .expect("clean shutdown");
}
