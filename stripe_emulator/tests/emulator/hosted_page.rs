//! The hosted page at a session's `url` and the JSON control API, both over HTTP.

use std::time::Duration;

use serde_json::{Value, json};
use stripe_emulator::{Config, Faults};

use crate::helpers::{SECRET, fast_retries, spawn, with_receiver};

#[tokio::test]
async fn hosted_page_pays_and_redirects_to_success_url_with_the_session_id() {
    let (emu, receiver) = with_receiver(Config::default()).await;
    let s = emu.create_session("page").await;
    let url = s.url.clone().unwrap();

    let html = emu
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for button in [
        "Pay</button>",
        "Pay later (succeeds)",
        "Pay later (fails)",
        "Cancel</button>",
    ] {
        assert!(html.contains(button), "{button} missing in {html}");
    }

    // Cancel goes back to cancel_url and leaves the session open, as on Stripe.
    let resp = emu
        .http
        .post(&url)
        .form(&[("action", "cancel")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(resp.headers()["location"], "https://shop.test/cancel");
    assert_eq!(
        emu.handle.sessions().sessions[0].status,
        stripe_emulator::session::Status::Open
    );

    let resp = emu
        .http
        .post(&url)
        .form(&[("action", "paid")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 303);
    assert_eq!(
        resp.headers()["location"].to_str().unwrap(),
        format!("https://shop.test/ok?session={}", s.id)
    );
    let d = receiver.wait_for(1).await;
    assert_eq!(d[0].event_type(), "checkout.session.completed");
    assert!(d[0].verdict.is_ok());

    // A paid session's page no longer offers payment.
    let html = emu
        .http
        .get(&url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!html.contains("<button"), "{html}");
    let resp = emu
        .http
        .post(&url)
        .form(&[("action", "paid")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 409);
}

#[tokio::test]
async fn control_api_pays_lists_counts_and_changes_faults() {
    let (emu, receiver) = with_receiver(Config::default()).await;
    let s = emu.create_session("ctl").await;
    let control = |path: &str| emu.url(&format!("_emulator/{path}"));

    let resp = emu
        .http
        .post(control(&format!("checkout/sessions/{}/pay", s.id)))
        .json(&json!({"outcome": "async_pending"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let session: Value = resp.json().await.unwrap();
    assert_eq!(
        (
            session["status"].as_str(),
            session["payment_status"].as_str()
        ),
        (Some("complete"), Some("unpaid"))
    );
    let resp = emu
        .http
        .post(control(&format!("checkout/sessions/{}/pay", s.id)))
        .json(&json!({"outcome": "async_failed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let resp = emu
        .http
        .post(control(&format!("checkout/sessions/{}/pay", s.id)))
        .json(&json!({"outcome": "paid"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status().as_u16(),
        400,
        "a settled session cannot be paid again"
    );
    let resp = emu
        .http
        .post(control("checkout/sessions/cs_test_nope/pay"))
        .json(&json!({"outcome": "paid"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    let d = receiver.wait_for(2).await;
    assert_eq!(
        d.iter().map(|d| d.event_type()).collect::<Vec<_>>(),
        [
            "checkout.session.completed",
            "checkout.session.async_payment_failed"
        ]
    );

    let sessions: Value = emu
        .http
        .get(control("sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let row = &sessions["sessions"][0];
    assert_eq!(
        (row["id"].as_str(), row["client_reference_id"].as_str()),
        (Some(s.id.as_str()), Some("ctl"))
    );
    assert_eq!(row["metadata"]["request_id"], "ctl");
    assert_eq!(sessions["created_per_client_reference_id"]["ctl"], 1);

    testkit::eventually(
        "both deliveries counted",
        Duration::from_secs(5),
        || async {
            let stats: Value = emu
                .http
                .get(control("stats"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (stats["webhooks_delivered"] == 2).then_some(())
        },
    )
    .await;
    let stats: Value = emu
        .http
        .get(control("stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            stats["api_calls"].as_u64(),
            stats["sessions_created"].as_u64()
        ),
        (Some(1), Some(1))
    );
    let events: Value = emu
        .http
        .get(control("events"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events.as_array().unwrap().len(), 2);

    let resp = emu
        .http
        .put(control("faults"))
        .json(&json!({"rate_500": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400, "rates are probabilities");
    let resp = emu
        .http
        .put(control("faults"))
        .json(&json!({"latency_ms": 5, "rate_429": 0.25}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        emu.handle.faults(),
        Faults {
            latency_ms: 5,
            rate_429: 0.25,
            ..Faults::default()
        }
    );
    let faults: Value = emu
        .http
        .get(control("faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(faults["rate_429"], 0.25);
}

#[tokio::test]
async fn webhook_endpoint_set_after_start_receives_earlier_events() {
    // The launcher may start the emulator before the webhook endpoint exists.
    let emu = spawn(Config::default().with_delivery(fast_retries(200))).await;
    let s = emu.create_session("late").await;
    emu.handle
        .pay(s.id.as_str(), stripe_emulator::Outcome::Paid)
        .unwrap();
    testkit::eventually(
        "a failed attempt without endpoint",
        Duration::from_secs(5),
        || async { (emu.handle.stats().webhook_failed_attempts > 0).then_some(()) },
    )
    .await;

    let receiver = crate::helpers::Receiver::start().await;
    let resp = emu
        .http
        .put(emu.url("_emulator/webhook"))
        .json(&json!({"url": receiver.url, "secret": SECRET}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let d = receiver.wait_for(1).await;
    assert!(d[0].verdict.is_ok(), "{:?}", d[0].verdict);
}
