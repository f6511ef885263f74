//! The account rate limit (`STRIPE_EMULATOR_RATE_LIMIT`): at most the limit
//! per second per secret key gets through, the rest get Stripe's 429
//! `rate_limit`, and the per-second log tests read shows it.

use std::time::Duration;

use stripe_emulator::Config;
use tokio::task::JoinSet;

use crate::helpers::{KEY, TestEmulator, spawn};

const LIMIT: u32 = 5;

/// `GET /v1/checkout/sessions/cs_test_missing` (a 404 that counts like any request).
async fn retrieve_missing(emu: &TestEmulator, key: &str) -> reqwest::Response {
    emu.http
        .get(emu.url("v1/checkout/sessions/cs_test_missing"))
        .bearer_auth(key)
        .send()
        .await
        .expect("request")
}

#[tokio::test]
async fn requests_beyond_the_limit_per_second_get_429_rate_limit_and_are_logged() {
    let emu = spawn(Config::default().with_rate_limit(LIMIT)).await;
    assert_eq!(emu.handle.rate_limit(), Some(LIMIT));
    let url = emu.url("v1/checkout/sessions/cs_test_missing");
    // Bursts of twice the limit until one lands within a single second.
    let limited = testkit::eventually(
        "a 429 from the account limit",
        Duration::from_secs(20),
        || async {
            let mut burst = JoinSet::new();
            for _ in 0..2 * LIMIT {
                let request = emu.http.get(&url).bearer_auth(KEY);
                burst.spawn(async move { request.send().await.expect("request") });
            }
            let answers = burst.join_all().await;
            answers.into_iter().find(|r| r.status().as_u16() == 429)
        },
    )
    .await;
    assert_eq!(
        limited.headers()["stripe-should-retry"],
        "true",
        "Stripe marks 429s retryable"
    );
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert_eq!(body["error"]["code"], "rate_limit", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Too many requests hit the API too quickly."),
        "{body}"
    );

    // Another key is another account with its own budget.
    let other = retrieve_missing(&emu, "sk_test_another_account").await;
    assert_eq!(other.status().as_u16(), 404, "the other key is not limited");

    let arrived = emu.handle.api_requests_per_second();
    let limited = emu.handle.rate_limited_per_second();
    let ours = &emu.handle.api_requests_per_second_by_key()[KEY];
    assert_eq!(arrived.len(), limited.len());
    for (second, (&all, &refused)) in arrived.iter().zip(&limited).enumerate() {
        let ours = ours.get(second).copied().unwrap_or(0);
        assert!(
            ours - refused <= LIMIT,
            "second {second}: {ours} arrived, {refused} limited: more than {LIMIT} let through"
        );
        assert!(
            all - ours <= 1,
            "second {second}: only one from the other key"
        );
    }
    let total_limited: u32 = limited.iter().sum();
    assert!(total_limited >= 1);
    let stats = emu.handle.stats();
    assert_eq!(u64::from(total_limited), stats.rate_limited);
    assert_eq!(
        u64::from(arrived.iter().sum::<u32>()),
        stats.api_calls,
        "every API request is logged"
    );

    // The same log over the control API, for emulators in another process.
    let (_, log) = emu.get_json("_emulator/requests").await;
    assert_eq!(log["rate_limit"], LIMIT);
    let logged: u64 = log["rate_limited_per_second"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(logged, stats.rate_limited);

    // Lifted at runtime: nothing more is refused.
    emu.handle.set_rate_limit(None);
    for _ in 0..2 * LIMIT {
        assert_eq!(retrieve_missing(&emu, KEY).await.status().as_u16(), 404);
    }
    assert_eq!(emu.handle.stats().rate_limited, stats.rate_limited);
}
