use std::time::Duration;

use checkout_contract::auth::{JwtIssuer, Role, TokenSettings};
use checkout_contract::secret::Secret;
use checkout_contract::{CheckoutStatus, pb};
use gateway::AuthMode;
use testkit::idp::{SigningKey, TestIdp, claims};
use tonic::Code;

use crate::helpers::*;

#[tokio::test]
async fn calls_without_a_valid_token_are_unauthenticated() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;

    let mut anonymous = pb::checkout_gateway_client::CheckoutGatewayClient::new(gw.channel().await);
    let missing = anonymous
        .start_checkout(start_request(1, None))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated, "{missing:?}");
    assert!(
        missing.message().contains("Bearer"),
        "{}",
        missing.message()
    );

    let forged = JwtIssuer::new(&Secret::new("some-other-secret-entirely")).issue(
        "billing",
        Role::Service,
        Duration::from_secs(60),
    );
    let mut client = gw.client(&forged).await;
    assert_eq!(
        client
            .start(start_request(1, None))
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert_eq!(
        client
            .watch("550e8400-e29b-41d4-a716-446655440000", None)
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    let mut garbage = gw.client("not-a-jwt").await;
    assert_eq!(
        garbage
            .get("550e8400-e29b-41d4-a716-446655440000")
            .await
            .unwrap_err()
            .code(),
        Code::Unauthenticated
    );
    assert!(read_all(&kafka, &topics.requests).await.is_empty());

    // Health and reflection need no token.
    assert!(gw.health().await.is_some());
}

#[tokio::test]
async fn users_act_only_for_themselves_and_see_only_their_own_checkouts() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let gw = TestGateway::start(&kafka, &topics, |_| {}).await;
    let producer = worker_producer(&kafka);
    let mut alice = gw.client(&token("21", Role::User)).await;
    let mut bob = gw.client(&token("22", Role::User)).await;

    let denied = alice.start(start_request(22, None)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");

    let id = alice
        .start(start_request(21, Some("k")))
        .await
        .unwrap()
        .request_id;
    // Bob's same key is his own checkout, not a conflict with Alice's.
    let bobs = bob
        .start(start_request(22, Some("k")))
        .await
        .unwrap()
        .request_id;
    assert_ne!(id, bobs);

    assert_eq!(bob.get(&id).await.unwrap_err().code(), Code::NotFound);
    assert_eq!(
        bob.watch(&id, None).await.unwrap_err().code(),
        Code::NotFound
    );
    assert_eq!(
        alice.get(&id).await.unwrap().event.unwrap().status(),
        pb::CheckoutStatus::Pending
    );

    // A checkout whose events arrive only after a user started watching it
    // is checked when they arrive.
    let unknown = checkout_contract::RequestId::new_random().to_string();
    let mut sneaky = bob.watch(&unknown, None).await.unwrap();
    publish(
        &producer,
        &topics,
        &unknown,
        21,
        CheckoutStatus::SessionCreated,
    )
    .await;
    let (updates, end) = drain(&mut sneaky).await;
    assert!(updates.is_empty(), "{updates:?}");
    assert_eq!(end.unwrap_err().code(), Code::NotFound);

    publish(&producer, &topics, &id, 21, CheckoutStatus::Success).await;
    let mut own = alice.watch(&id, None).await.unwrap();
    let (updates, end) = drain(&mut own).await;
    end.unwrap();
    assert_eq!(statuses(&updates), [pb::CheckoutStatus::Success]);
}

#[tokio::test]
async fn identity_provider_tokens_are_checked_against_its_jwks() {
    let (_broker, kafka, topics) = broker_and_topics().await;
    let key = SigningKey::rsa("gateway-rs256");
    let idp = TestIdp::start(&[&key]).await;
    idp.set_down(true);
    let settings = TokenSettings {
        secret: Some(Secret::new(JWT_SECRET)),
        jwks: Some(idp.settings(Duration::from_millis(200))),
    };
    let gw = TestGateway::start(&kafka, &topics, |c| c.auth = AuthMode::Tokens(settings)).await;
    let mut alice = gw.client(&key.token("21", "user")).await;

    // The provider is down: the token cannot be checked yet, and the gateway serves on.
    let unavailable = alice.start(start_request(21, None)).await.unwrap_err();
    assert_eq!(unavailable.code(), Code::Unavailable, "{unavailable:?}");
    assert!(
        unavailable.message().contains("identity provider"),
        "{unavailable:?}"
    );
    idp.set_down(false);
    let id = testkit::eventually("an RS256 token accepted", Duration::from_secs(10), || {
        let mut alice = alice.clone();
        async move { alice.start(start_request(21, Some("rs256"))).await.ok() }
    })
    .await
    .request_id;
    assert_eq!(
        alice.get(&id).await.unwrap().event.unwrap().status(),
        pb::CheckoutStatus::Pending
    );
    let denied = alice.start(start_request(22, None)).await.unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied, "{denied:?}");
    // HS256 for internal services still works beside the provider.
    assert!(gw.service_client().await.get(&id).await.is_ok());

    let mut other_audience = claims("21", "user");
    other_audience["aud"] = "another-api".into();
    let stranger = SigningKey::ec("not-published");
    for (token, why) in [
        (key.sign(&other_audience), "wrong audience"),
        (stranger.token("21", "user"), "unknown signing key"),
    ] {
        let refused = gw.client(&token).await.get(&id).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
        assert!(refused.message().contains(why), "{refused:?}");
    }
}
