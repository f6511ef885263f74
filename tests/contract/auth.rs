//! `TokenVerifier` against a real JWKS endpoint (testkit's identity
//! provider, keys generated here): provider tokens map to the principals
//! HS256 tokens do; bad ones are refused; rotated keys are picked up; an
//! unknown-`kid` flood costs the provider one fetch; an unreachable provider
//! means 503 until it answers again.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use checkout_contract::UserId;
use checkout_contract::auth::{AuthError, JwtIssuer, Role, TokenSettings, TokenVerifier};
use checkout_contract::secret::Secret;
use testkit::idp::{SigningKey, TestIdp, claims};

const SECRET: &str = "contract-tests-hs256-secret";

fn verifier(idp: &TestIdp, interval: Duration, hs256: bool) -> TokenVerifier {
    TokenVerifier::new(&TokenSettings {
        secret: hs256.then(|| Secret::new(SECRET)),
        jwks: Some(idp.settings(interval)),
    })
}

fn invalid(result: Result<checkout_contract::auth::Principal, AuthError>, why: &str) {
    match result {
        Err(AuthError::Invalid(reason)) => {
            assert!(reason.contains(why), "expected {why:?} in {reason:?}");
        }
        other => panic!("expected an invalid token ({why}), got {other:?}"),
    }
}

#[tokio::test]
async fn provider_and_hs256_tokens_map_to_the_same_principals() {
    let (rsa, ec) = (SigningKey::rsa("rsa-1"), SigningKey::ec("ec-1"));
    let idp = TestIdp::start(&[&rsa, &ec]).await;
    let both = verifier(&idp, Duration::from_secs(30), true);
    let user = UserId::parse(42).unwrap();
    for token in [
        rsa.token("42", "user"),
        ec.token("42", "user"),
        JwtIssuer::new(&Secret::new(SECRET)).issue("42", Role::User, Duration::from_secs(60)),
    ] {
        let p = both
            .verify_header(Some(&format!("Bearer {token}")))
            .await
            .unwrap();
        assert_eq!((p.role, p.user_id()), (Role::User, Some(user)));
    }
    let mut no_role = claims("7", "user");
    no_role.as_object_mut().unwrap().remove("role");
    assert_eq!(
        both.verify(&ec.sign(&no_role)).await.unwrap().user_id(),
        Some(UserId::parse(7).unwrap())
    );
    let service = both.verify(&rsa.token("billing", "service")).await.unwrap();
    assert_eq!(
        (service.role, service.subject.as_str()),
        (Role::Service, "billing")
    );
    assert!(service.may_act_for(user));
    assert_eq!(
        idp.fetches(),
        1,
        "one fetch serves every key of the document"
    );
}

#[tokio::test]
async fn bad_provider_tokens_are_refused() {
    let rsa = SigningKey::rsa("rsa-1");
    let idp = TestIdp::start(&[&rsa]).await;
    let jwks_only = verifier(&idp, Duration::from_secs(30), false);

    let stranger = SigningKey::ec("stranger");
    invalid(
        jwks_only.verify(&stranger.token("42", "user")).await,
        "unknown signing key \"stranger\"",
    );
    // A token naming a published key but signed with another one.
    let stolen = stranger.token("42", "user");
    let (_, rest) = stolen.split_once('.').unwrap();
    let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"ES256","kid":"rsa-1"}"#);
    let forged = format!("{header}.{rest}");
    assert!(matches!(
        jwks_only.verify(&forged).await,
        Err(AuthError::Invalid(_))
    ));

    let mut c = claims("42", "user");
    c["iss"] = "https://evil.test/".into();
    invalid(jwks_only.verify(&rsa.sign(&c)).await, "wrong issuer");
    let mut c = claims("42", "user");
    c["aud"] = "another-api".into();
    invalid(jwks_only.verify(&rsa.sign(&c)).await, "wrong audience");
    let mut c = claims("42", "user");
    c.as_object_mut().unwrap().remove("aud");
    assert!(matches!(
        jwks_only.verify(&rsa.sign(&c)).await,
        Err(AuthError::Invalid(_))
    ));
    let mut c = claims("42", "user");
    c["exp"] = (c["iat"].as_u64().unwrap() - 3600).into();
    assert_eq!(
        jwks_only.verify(&rsa.sign(&c)).await,
        Err(AuthError::Expired)
    );
    let mut c = claims("42", "user");
    c["nbf"] = (c["iat"].as_u64().unwrap() + 3600).into();
    invalid(jwks_only.verify(&rsa.sign(&c)).await, "ImmatureSignature");
    invalid(
        jwks_only.verify(&rsa.token("alice", "user")).await,
        "sub must be a positive user id",
    );

    let body = URL_SAFE_NO_PAD.encode(claims("42", "user").to_string());
    let alg_none = format!("{}.{body}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
    assert!(matches!(
        jwks_only.verify(&alg_none).await,
        Err(AuthError::Invalid(_))
    ));
    let hs256 =
        JwtIssuer::new(&Secret::new(SECRET)).issue("42", Role::User, Duration::from_secs(60));
    invalid(
        jwks_only.verify(&hs256).await,
        "HS256 tokens are not accepted here",
    );
    let hs384 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS384),
        &claims("42", "user"),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    invalid(
        verifier(&idp, Duration::from_secs(30), true)
            .verify(&hs384)
            .await,
        "HS384",
    );
    let hs256_only = TokenVerifier::new(&TokenSettings::hs256(Secret::new(SECRET)));
    invalid(
        hs256_only.verify(&rsa.token("42", "user")).await,
        "RS256 tokens are not accepted",
    );
    assert_eq!(
        hs256_only.verify_header(None).await,
        Err(AuthError::Missing)
    );
}

#[tokio::test]
async fn a_rotated_key_is_fetched_when_a_token_names_it() {
    let old = SigningKey::rsa("2026-01");
    let idp = TestIdp::start(&[&old]).await;
    let v = verifier(&idp, Duration::ZERO, false);
    v.warm_up().await;
    assert_eq!(idp.fetches(), 1);
    assert!(v.verify(&old.token("42", "user")).await.is_ok());
    assert_eq!(idp.fetches(), 1, "a cached key needs no fetch");

    let new = SigningKey::ec("2026-02");
    invalid(
        v.verify(&new.token("42", "user")).await,
        "unknown signing key",
    );
    idp.publish(&[&new]);
    let p = v.verify(&new.token("43", "user")).await.unwrap();
    assert_eq!(p.user_id(), Some(UserId::parse(43).unwrap()));
    assert_eq!(idp.fetches(), 3);
    // A key the provider no longer lists is dropped at the next fetch.
    let also_new = SigningKey::ec("2026-03");
    idp.publish(&[&also_new]);
    assert!(v.verify(&also_new.token("42", "user")).await.is_ok());
    invalid(
        v.verify(&old.token("42", "user")).await,
        "unknown signing key",
    );
}

#[tokio::test]
async fn a_token_arriving_during_the_start_up_fetch_waits_for_it() {
    let key = SigningKey::ec("k");
    let idp = TestIdp::start(&[&key]).await;
    let v = verifier(&idp, Duration::from_secs(30), false);
    let token = key.token("42", "user");
    // join! polls the warm-up first: its fetch is in flight when the token is checked.
    let ((), checked) = tokio::join!(v.warm_up(), v.verify(&token));
    assert!(checked.is_ok(), "{checked:?}");
    assert_eq!(idp.fetches(), 1);
}

#[tokio::test]
async fn a_withdrawn_key_stops_working_once_the_keys_are_older_than_max_age() {
    let key = SigningKey::ec("withdrawn");
    let idp = TestIdp::start(&[&key]).await;
    let mut settings = idp.settings(Duration::ZERO);
    settings.max_age = Duration::from_millis(300);
    let v = TokenVerifier::new(&TokenSettings {
        secret: None,
        jwks: Some(settings),
    });
    let token = key.token("42", "user");
    assert!(v.verify(&token).await.is_ok());
    assert!(v.verify(&token).await.is_ok());
    assert_eq!(idp.fetches(), 1, "fresh keys are used without a fetch");
    // While the provider is down, old keys keep serving.
    idp.set_down(true);
    testkit::eventually("a fetch after max_age", Duration::from_secs(10), || {
        let v = v.clone();
        let token = token.clone();
        let fetches = idp.fetches();
        async move {
            let ok = v.verify(&token).await.is_ok();
            assert!(ok, "an outage must not refuse a cached key");
            (fetches > 1).then_some(())
        }
    })
    .await;
    idp.set_down(false);
    idp.publish(&[]);
    testkit::eventually("the withdrawn key refused", Duration::from_secs(10), || {
        let v = v.clone();
        let token = token.clone();
        async move { matches!(v.verify(&token).await, Err(AuthError::Invalid(_))).then_some(()) }
    })
    .await;
}

#[tokio::test]
async fn an_unknown_kid_flood_costs_one_fetch_per_interval() {
    let key = SigningKey::ec("real");
    let idp = TestIdp::start(&[&key]).await;
    let v = verifier(&idp, Duration::from_secs(30), false);
    let attempts = (0..50).map(|i| {
        let v = v.clone();
        let token = SigningKey::ec(&format!("made-up-{i}")).token("42", "user");
        tokio::spawn(async move { v.verify(&token).await })
    });
    for attempt in attempts.collect::<Vec<_>>() {
        invalid(attempt.await.unwrap(), "unknown signing key");
    }
    assert_eq!(idp.fetches(), 1, "50 unknown kids within the interval");
    assert!(v.verify(&key.token("42", "user")).await.is_ok());
}

#[tokio::test]
async fn an_unreachable_provider_means_unavailable_until_it_answers() {
    let key = SigningKey::rsa("k1");
    let idp = TestIdp::start(&[&key]).await;
    idp.set_down(true);
    let v = verifier(&idp, Duration::from_millis(100), true);
    v.warm_up().await; // logs, never fails
    let token = key.token("42", "user");
    assert!(matches!(
        v.verify(&token).await,
        Err(AuthError::KeysUnavailable(_))
    ));
    let hs256 =
        JwtIssuer::new(&Secret::new(SECRET)).issue("svc", Role::Service, Duration::from_secs(60));
    assert!(
        v.verify(&hs256).await.is_ok(),
        "HS256 does not depend on the provider"
    );
    idp.set_down(false);
    testkit::eventually(
        "the provider's key after its outage",
        Duration::from_secs(10),
        || {
            let (v, token) = (v.clone(), token.clone());
            async move { v.verify(&token).await.ok() }
        },
    )
    .await;

    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let nowhere = TokenVerifier::new(&TokenSettings {
        secret: None,
        jwks: Some(checkout_contract::auth::JwksSettings::new(
            format!("http://{closed}/jwks.json"),
            testkit::idp::ISSUER,
            testkit::idp::AUDIENCE,
        )),
    });
    nowhere.warm_up().await;
    let err = nowhere.verify(&token).await.unwrap_err();
    assert!(matches!(err, AuthError::KeysUnavailable(_)), "{err:?}");
    assert!(
        err.to_string()
            .contains("identity provider's keys are unavailable"),
        "{err}"
    );
}
