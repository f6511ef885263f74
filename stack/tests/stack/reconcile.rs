//! Through the launcher: a paid checkout whose every webhook is lost is
//! credited anyway (reconciliation with Stripe), exactly once, and the
//! webhook arriving late is a harmless duplicate for blazing_sun.

use std::time::Duration;

use checkout::config::ReconcileConfig;
use checkout_contract::pb::checkout_gateway_client::CheckoutGatewayClient;
use checkout_contract::pb::{CheckoutStatus, StartCheckoutRequest, WatchCheckoutRequest};
use stack::StackConfig;
use stack::system::{self, DEMO_USER_ID};

use crate::launcher::{authed, eur_balance};

const WAIT: Duration = Duration::from_secs(60);

/// The value of the metric line starting with `name` on `url`.
async fn metric(http: &reqwest::Client, url: &str, name: &str) -> u64 {
    let text = http.get(url).send().await.unwrap().text().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} missing from {url}:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paid_checkout_whose_webhooks_are_lost_is_credited_once_and_the_late_webhook_changes_nothing()
 {
    testkit::init_tracing();
    let data = tempfile::tempdir().unwrap();
    let mut config = StackConfig::on_free_ports(data.path().to_path_buf());
    config.reconcile = ReconcileConfig {
        interval: Duration::from_secs(1),
        after: Duration::from_secs(2),
    };
    let running = system::start(config).await.expect("stack starts");
    let emulator = format!("http://{}", running.emulator.expect("emulator by default"));
    let bs = format!("http://{}", running.blazing_sun);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let token = running.demo_user_token.clone();

    // Every webhook from now on goes nowhere.
    let endpoint: serde_json::Value = http
        .get(format!("{emulator}/_emulator/webhook"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let webhook_url = endpoint["url"]
        .as_str()
        .expect("the launcher set it")
        .to_owned();
    let set_webhook = |url: String| {
        let http = http.clone();
        let emulator = emulator.clone();
        async move {
            let answer = http
                .put(format!("{emulator}/_emulator/webhook"))
                .json(&serde_json::json!({ "url": url }))
                .send()
                .await
                .unwrap();
            assert!(
                answer.status().is_success(),
                "{}",
                answer.text().await.unwrap()
            );
        }
    };
    set_webhook("http://127.0.0.1:9/webhooks/stripe".to_owned()).await;

    let mut client = CheckoutGatewayClient::connect(format!("http://{}", running.gateway))
        .await
        .unwrap();
    let request = StartCheckoutRequest {
        user_id: DEMO_USER_ID,
        amount_cents: 700,
        currency: "eur".into(),
        success_url: format!("{bs}/?checkout=success"),
        cancel_url: format!("{bs}/?checkout=cancel"),
        ..Default::default()
    };
    let request_id = client
        .start_checkout(authed(request, &token))
        .await
        .expect("StartCheckout")
        .into_inner()
        .request_id;
    let mut stream = client
        .watch_checkout(authed(
            WatchCheckoutRequest {
                request_id,
                resume_after: None,
            },
            &token,
        ))
        .await
        .expect("WatchCheckout")
        .into_inner();
    let mut next = async || {
        tokio::time::timeout(WAIT, stream.message())
            .await
            .expect("an update in time")
            .expect("the stream goes on")
            .expect("an update")
            .event
            .expect("an event")
    };
    let created = next().await;
    assert_eq!(created.status(), CheckoutStatus::SessionCreated);
    let session_id = created.session_id.expect("a session id");

    crate::launcher::pay(&http, &emulator, &session_id).await;

    // No webhook got through, yet the checkout succeeds and is credited.
    let success = next().await;
    assert_eq!(success.status(), CheckoutStatus::Success);
    assert!(success.payment_intent_id.is_some());
    let bs_metrics = format!("{bs}/metrics");
    testkit::eventually("the balance to rise by exactly 700", WAIT, || async {
        (eur_balance(&http, &bs, &token).await == 700).then_some(())
    })
    .await;
    let webhook_metrics = format!("http://{}/metrics", running.webhook);
    assert_eq!(
        metric(
            &http,
            &webhook_metrics,
            "checkout_reconciled_total{outcome=\"success\"}"
        )
        .await,
        1
    );

    // The webhook arrives after all: a duplicate, credited nothing.
    let duplicate = "blazing_sun_checkout_finished_total{outcome=\"duplicate\"}";
    let before = metric(&http, &bs_metrics, duplicate).await;
    set_webhook(webhook_url).await;
    testkit::eventually("the late webhook handled as a duplicate", WAIT, || async {
        (metric(&http, &bs_metrics, duplicate).await > before).then_some(())
    })
    .await;
    assert_eq!(eur_balance(&http, &bs, &token).await, 700);
    assert_eq!(
        metric(
            &http,
            &bs_metrics,
            "blazing_sun_checkout_finished_total{outcome=\"credited\"}"
        )
        .await,
        1
    );
    assert_eq!(
        metric(
            &http,
            &bs_metrics,
            "blazing_sun_checkout_finished_total{outcome=\"flagged\"}"
        )
        .await,
        0,
        "the same session and payment: not a second payment"
    );

    running
        .run_until_stopped(async {})
        .await
        .expect("clean shutdown");
}
