//! The JWT secret never appears in `Debug` output of the config nor in what
//! the gateway logs while it starts, answers calls (good and bad tokens)
//! and stops.

use checkout_contract::env::EnvReader;
use gateway::config::Config;

use crate::helpers::*;

#[tokio::test]
async fn the_jwt_secret_stays_out_of_debug_output_and_logs() {
    let from_env = Config::from_reader(EnvReader::from_map(
        [("JWT_SECRET", "jwt-secret-from-the-environment")]
            .map(|(k, v)| (k.to_owned(), v.to_owned())),
    ))
    .unwrap();
    let debug = format!("{from_env:?}");
    assert!(debug.contains("Jwt("), "{debug}");
    assert!(
        !debug.contains("jwt-secret-from-the-environment"),
        "{debug}"
    );

    let (guard, logs) = testkit::capture_logs();
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let mut client = gw.service_client().await;
    client.start(start_request(3, None)).await.unwrap();
    let mut forged = gw.client("not-a-jwt").await;
    assert!(forged.start(start_request(3, None)).await.is_err());
    gw.stop().await.unwrap();
    drop(guard);

    let text = logs.text();
    assert!(
        text.contains("gateway listening") && text.contains("gateway stopped"),
        "{text}"
    );
    assert!(
        !text.contains(JWT_SECRET),
        "the JWT secret in the logs:\n{text}"
    );
}
