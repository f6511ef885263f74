use std::time::Duration;

use checkout_contract::CheckoutStatus;
use checkout_contract::auth::Role;

use crate::helpers::*;

/// Runs grpcurl (from `GRPCURL`, exported by the test script) with `args`
/// and returns its stdout; fails on a non-zero exit.
async fn grpcurl(args: &[&str]) -> String {
    let bin = std::env::var("GRPCURL").unwrap_or_else(|_| {
        panic!("GRPCURL is not set: run the tests through scripts/test.sh, which installs grpcurl 1.8.6 and exports its path")
    });
    let output = within(
        Duration::from_secs(20),
        "grpcurl",
        tokio::process::Command::new(&bin)
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|e| panic!("cannot run {bin}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "grpcurl {args:?} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn a_grpcurl_session_lists_describes_starts_and_watches() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let addr = gw.grpc.to_string();
    let auth = format!("authorization: Bearer {}", token("81", Role::User));

    let list = grpcurl(&["-plaintext", &addr, "list"]).await;
    assert!(
        list.contains("checkout.v1.CheckoutGateway") && list.contains("grpc.health.v1.Health"),
        "{list}"
    );

    let described = grpcurl(&[
        "-plaintext",
        &addr,
        "describe",
        "checkout.v1.CheckoutGateway",
    ])
    .await;
    for rpc in [
        "rpc StartCheckout",
        "rpc WatchCheckout",
        "returns ( stream .checkout.v1.CheckoutUpdate )",
        "rpc GetCheckout",
    ] {
        assert!(described.contains(rpc), "{rpc} missing from {described}");
    }

    let health = grpcurl(&["-plaintext", &addr, "grpc.health.v1.Health/Check"]).await;
    assert!(health.contains("\"SERVING\""), "{health}");

    let body = r#"{"user_id": 81, "amount_cents": 500, "success_url": "https://example.com/ok", "cancel_url": "https://example.com/cancel", "idempotency_key": "grpcurl-1"}"#;
    let started = grpcurl(&[
        "-plaintext",
        "-H",
        &auth,
        "-d",
        body,
        &addr,
        "checkout.v1.CheckoutGateway/StartCheckout",
    ])
    .await;
    let started: serde_json::Value =
        serde_json::from_str(&started).unwrap_or_else(|e| panic!("{e}: {started}"));
    assert_eq!(started["status"], "CHECKOUT_STATUS_PENDING", "{started}");
    let id = started["requestId"].as_str().unwrap().to_owned();

    let producer = worker_producer(&kafka);
    publish(&producer, &topics, &id, 81, CheckoutStatus::SessionCreated).await;
    publish(&producer, &topics, &id, 81, CheckoutStatus::Success).await;
    let watch_body = format!(r#"{{"request_id": "{id}"}}"#);
    let watched = grpcurl(&[
        "-plaintext",
        "-H",
        &auth,
        "-d",
        &watch_body,
        &addr,
        "checkout.v1.CheckoutGateway/WatchCheckout",
    ])
    .await;
    let created = watched
        .find("CHECKOUT_STATUS_SESSION_CREATED")
        .unwrap_or_else(|| panic!("{watched}"));
    let success = watched
        .find("CHECKOUT_STATUS_SUCCESS")
        .unwrap_or_else(|| panic!("{watched}"));
    assert!(created < success, "{watched}");
    assert!(watched.contains("\"cursor\""), "{watched}");
}
