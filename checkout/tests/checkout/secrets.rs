//! The Stripe API key and the webhook signing secret never appear in `Debug`
//! output of the config nor in what the service logs while it starts,
//! creates a session, takes a signed and a forged webhook, and stops.

use checkout_contract::CheckoutStatus;
use checkout_contract::env::EnvReader;
use stripe_emulator::Outcome;

use crate::helpers::{API_KEY, WEBHOOK_SECRET, request, spawn_app};

#[tokio::test]
async fn stripe_secrets_stay_out_of_debug_output_and_logs() {
    let from_env = checkout::Config::from_reader(EnvReader::from_map(
        [
            ("STRIPE_SECRET_KEY", "sk_test_key_from_the_environment"),
            (
                "STRIPE_WEBHOOK_SECRET",
                "whsec_old_from_env,whsec_new_from_env",
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    ))
    .unwrap();
    let debug = format!("{from_env:?}");
    assert!(
        debug.contains("secret_key") && debug.contains("secrets"),
        "{debug}"
    );
    for secret in [
        "sk_test_key_from_the_environment",
        "whsec_old_from_env",
        "whsec_new_from_env",
    ] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }

    let (guard, logs) = testkit::capture_logs();
    let mut app = spawn_app().await;
    let r = request(500);
    app.send(&r).await;
    let created = app
        .wait_for(&r.request_id, CheckoutStatus::SessionCreated)
        .await;
    app.emulator
        .pay(&created.session_id.unwrap(), Outcome::Paid)
        .unwrap();
    app.wait_for(&r.request_id, CheckoutStatus::Success).await;
    let forged = app
        .http
        .post(&app.webhook_url)
        .header("stripe-signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 400);
    app.stop().await.unwrap();
    drop(guard);

    let text = logs.text();
    assert!(
        text.contains("webhook listener bound") && text.contains("session created"),
        "{text}"
    );
    for secret in [API_KEY, WEBHOOK_SECRET] {
        assert!(!text.contains(secret), "a secret in the logs:\n{text}");
    }
}
