//! Secrets (the JWT secret, the PostgreSQL password in DATABASE_URL) never
//! appear in `Debug` output of the config nor in what the service logs while
//! it starts, serves a request, applies an event and stops.

use checkout_contract::env::EnvReader;
use checkout_contract::secret::Secret;

use crate::helpers::{
    Backend, JWT_SECRET, TestApp, World, new_request_id, new_user, success, token,
};

/// `url` with a password: the test server trusts local connections and
/// ignores it, which is all this test needs (a password to look for).
fn with_password(url: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (credentials, host) = rest.split_once('@').expect("the URL names a user");
    let user = credentials.split(':').next().unwrap();
    format!("{scheme}://{user}:{password}@{host}")
}

#[tokio::test]
async fn secrets_stay_out_of_debug_output_and_logs() {
    let env_config = blazing_sun::Config::from_reader(EnvReader::from_map(
        [
            ("JWT_SECRET", "jwt-secret-from-the-environment"),
            (
                "DATABASE_URL",
                "postgres://bs:pg-password-from-env@db.internal:5432/bs",
            ),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned())),
    ))
    .unwrap();
    let debug = format!("{env_config:?}");
    assert!(
        debug.contains("jwt_secret") && debug.contains("database_url"),
        "{debug}"
    );
    for secret in ["jwt-secret-from-the-environment", "pg-password-from-env"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }

    let (guard, logs) = testkit::capture_logs();
    let world = World::new(Backend::Postgres).await;
    let db_password = "pg-password-that-must-not-leak";
    let mut config = world.config();
    config.database_url = Secret::new(with_password(&world.db.url, db_password));
    let debug = format!("{config:?}");
    let app = TestApp::spawn(config).await;
    let user = new_user();
    let balance = reqwest::Client::new()
        .get(app.url("/api/v1/balance"))
        .bearer_auth(token(user))
        .send()
        .await
        .unwrap();
    assert!(balance.status().is_success());
    world
        .send_finished(&success(&new_request_id(), user, 500))
        .await;
    app.wait_outcomes("credited", 1).await;
    app.stop().await.unwrap();
    drop(guard);

    let text = logs.text();
    assert!(
        text.contains("blazing_sun built") && text.contains("balance credited"),
        "{text}"
    );
    for secret in [JWT_SECRET, db_password] {
        assert!(!debug.contains(secret), "a secret in {debug}");
        assert!(!text.contains(secret), "a secret in the logs:\n{text}");
    }
}
