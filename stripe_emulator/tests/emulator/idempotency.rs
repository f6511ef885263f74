//! Idempotent requests the Stripe way: replay, mismatch, saved 500s and
//! endpoint 400s, unsaved validation 400s and 429s; `lock_timeout` on a
//! session another request is expiring.

use stripe::{IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_emulator::{Config, Faults};

use crate::helpers::{create_body, create_request, spawn};

fn key(k: &str) -> RequestStrategy {
    RequestStrategy::Idempotent(IdempotencyKey::new(k).unwrap())
}

#[tokio::test]
async fn same_key_and_params_replays_the_first_session() {
    let emu = spawn(Config::default()).await;
    let client = emu.client();
    let req = create_request("req-idem", 2000);
    let first = req
        .customize()
        .request_strategy(key("checkout:req-idem"))
        .send(&client)
        .await
        .unwrap();
    let second = req
        .customize()
        .request_strategy(key("checkout:req-idem"))
        .send(&client)
        .await
        .unwrap();
    assert_eq!(first.id, second.id);

    let report = emu.handle.sessions();
    assert_eq!(report.sessions.len(), 1);
    assert_eq!(report.created_per_idempotency_key["checkout:req-idem"], 1);
    assert_eq!(
        report.sessions[0].idempotency_key.as_deref(),
        Some("checkout:req-idem")
    );
    assert_eq!(emu.handle.stats().idempotent_replays, 1);

    // The replay is marked like Stripe marks it.
    let resp = emu
        .http
        .post(emu.url("v1/checkout/sessions"))
        .bearer_auth(crate::helpers::KEY)
        .header("idempotency-key", "raw")
        .body(create_body("raw", 1000, "eur"))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get("idempotent-replayed").is_none());
    let resp = emu
        .http
        .post(emu.url("v1/checkout/sessions"))
        .bearer_auth(crate::helpers::KEY)
        .header("idempotency-key", "raw")
        .body(create_body("raw", 1000, "eur"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["idempotent-replayed"], "true");

    // Without a key every request creates a session.
    let a = emu.create_session("no-key").await;
    let b = emu.create_session("no-key").await;
    assert_ne!(a.id, b.id);
}

#[tokio::test]
async fn same_key_with_other_params_is_an_idempotency_error() {
    let emu = spawn(Config::default()).await;
    let (status, first) = emu
        .post_form(
            "v1/checkout/sessions",
            &create_body("r1", 1000, "eur"),
            Some("k1"),
        )
        .await;
    assert_eq!(status, 200, "{first}");
    let (status, json) = emu
        .post_form(
            "v1/checkout/sessions",
            &create_body("r1", 1001, "eur"),
            Some("k1"),
        )
        .await;
    assert_eq!(status, 400, "{json}");
    assert_eq!(json["error"]["type"], "idempotency_error");

    // Parameter order does not matter, only the parameters.
    let original = create_body("r1", 1000, "eur");
    let reordered: Vec<&str> = original.split('&').rev().collect();
    let (status, json) = emu
        .post_form("v1/checkout/sessions", &reordered.join("&"), Some("k1"))
        .await;
    assert_eq!((status, &json["id"]), (200, &first["id"]));

    // Through async-stripe: a typed idempotency error.
    let client = emu.client();
    create_request("r2", 1000)
        .customize()
        .request_strategy(key("k2"))
        .send(&client)
        .await
        .unwrap();
    match create_request("r2", 5000)
        .customize()
        .request_strategy(key("k2"))
        .send(&client)
        .await
        .unwrap_err()
    {
        stripe::StripeError::Stripe(e, 400) => {
            assert_eq!(e.type_, stripe::ApiErrorsType::IdempotencyError)
        }
        other => panic!("expected 400, got {other:?}"),
    }
    assert_eq!(emu.handle.sessions().sessions.len(), 2);
}

#[tokio::test]
async fn an_injected_500_and_the_endpoints_400_are_saved_but_validation_400s_and_429s_are_not() {
    let emu = spawn(Config::default()).await;
    let body = create_body("r500", 1000, "eur");

    emu.handle
        .set_faults(Faults {
            rate_500: 1.0,
            ..Faults::default()
        })
        .unwrap();
    let (status, json) = emu
        .post_form("v1/checkout/sessions", &body, Some("k500"))
        .await;
    assert_eq!(
        (status, json["error"]["type"].as_str()),
        (500, Some("api_error"))
    );
    emu.handle.set_faults(Faults::default()).unwrap();
    let (status, replay) = emu
        .post_form("v1/checkout/sessions", &body, Some("k500"))
        .await;
    assert_eq!(
        (status, &replay),
        (500, &json),
        "the saved 500 is replayed even with faults off"
    );
    assert!(emu.handle.sessions().sessions.is_empty());

    // 429 is not saved: the retry with the same key goes through.
    emu.handle
        .set_faults(Faults {
            rate_429: 1.0,
            ..Faults::default()
        })
        .unwrap();
    let (status, json) = emu
        .post_form("v1/checkout/sessions", &body, Some("k429"))
        .await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (429, Some("rate_limit"))
    );
    emu.handle.set_faults(Faults::default()).unwrap();
    let (status, _) = emu
        .post_form("v1/checkout/sessions", &body, Some("k429"))
        .await;
    assert_eq!(status, 200);

    // A parameter that fails validation is refused before the endpoint runs:
    // nothing is saved, and the fixed request with the same key succeeds.
    let fixed = create_body("r400", 1000, "eur");
    let (status, json) = emu
        .post_form(
            "v1/checkout/sessions",
            &format!("{fixed}&colour=red"),
            Some("k400"),
        )
        .await;
    assert_eq!(
        (status, json["error"]["code"].as_str()),
        (400, Some("parameter_unknown"))
    );
    let (status, _) = emu
        .post_form("v1/checkout/sessions", &fixed, Some("k400"))
        .await;
    assert_eq!(status, 200);

    // A 400 the endpoint itself answered (a business rule) is saved like
    // Stripe saves it: the same request again gets the same 400, replayed,
    // and a changed request with that key is an idempotency error.
    let too_small = create_body("r-small", 10, "eur");
    let first = emu
        .http
        .post(emu.url("v1/checkout/sessions"))
        .bearer_auth(crate::helpers::KEY)
        .header("idempotency-key", "k-small")
        .body(too_small.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(first.status().as_u16(), 400);
    assert_eq!(first.headers()["stripe-should-retry"], "false");
    let first: serde_json::Value = first.json().await.unwrap();
    assert_eq!(first["error"]["code"], "amount_too_small");
    let again = emu
        .http
        .post(emu.url("v1/checkout/sessions"))
        .bearer_auth(crate::helpers::KEY)
        .header("idempotency-key", "k-small")
        .body(too_small)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 400);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.json::<serde_json::Value>().await.unwrap(), first);
    let (status, json) = emu
        .post_form(
            "v1/checkout/sessions",
            &create_body("r-small", 1000, "eur"),
            Some("k-small"),
        )
        .await;
    assert_eq!(
        (status, json["error"]["type"].as_str()),
        (400, Some("idempotency_error"))
    );

    let stats = emu.handle.stats();
    assert_eq!(
        (
            stats.injected_500,
            stats.injected_429,
            stats.sessions_created
        ),
        (1, 1, 2)
    );
    let report = emu.handle.sessions();
    assert_eq!(
        report
            .created_per_idempotency_key
            .values()
            .copied()
            .collect::<Vec<_>>(),
        [1, 1]
    );
}

#[tokio::test]
async fn a_timed_out_create_retried_with_its_key_returns_the_session_it_made() {
    let emu = spawn(Config::default()).await;
    emu.handle
        .set_faults(Faults {
            latency_after_ms: 400,
            ..Faults::default()
        })
        .unwrap();
    let client = stripe::ClientBuilder::new(crate::helpers::KEY)
        .url(emu.api_base.clone())
        .timeout(std::time::Duration::from_millis(100))
        .build()
        .unwrap();
    let req = create_request("req-timeout", 1000);
    let err = req
        .customize()
        .request_strategy(key("checkout:req-timeout"))
        .send(&client)
        .await
        .unwrap_err();
    assert!(matches!(err, stripe::StripeError::Timeout), "{err:?}");
    assert_eq!(
        emu.handle.sessions().sessions.len(),
        1,
        "the slow answer still created the session"
    );

    emu.handle.set_faults(Faults::default()).unwrap();
    let retried = req
        .customize()
        .request_strategy(key("checkout:req-timeout"))
        .send(&client)
        .await
        .unwrap();
    let report = emu.handle.sessions();
    assert_eq!(report.sessions.len(), 1);
    assert_eq!(retried.id.as_str(), report.sessions[0].id);
    assert_eq!(emu.handle.stats().idempotent_replays, 1);
}

#[tokio::test]
async fn a_second_request_on_a_session_being_expired_gets_429_lock_timeout() {
    let emu = spawn(Config::default()).await;
    let session = emu.create_session("locked").await;
    let id = session.id.as_str().to_owned();
    // The first expire holds the session until its (slow) answer leaves.
    emu.handle
        .set_faults(Faults {
            latency_after_ms: 1500,
            ..Faults::default()
        })
        .unwrap();
    let expire = |key: &'static str| {
        emu.http
            .post(emu.url(&format!("v1/checkout/sessions/{id}/expire")))
            .bearer_auth(crate::helpers::KEY)
            .header("idempotency-key", key)
            .send()
    };
    let first = tokio::spawn(expire("expire-a"));
    testkit::eventually(
        "the first expire ran",
        std::time::Duration::from_secs(5),
        || async {
            let expired = emu.handle.sessions().sessions[0].status
                == stripe_emulator::session::Status::Expired;
            expired.then_some(())
        },
    )
    .await;
    let second = expire("expire-b").await.unwrap();
    assert_eq!(second.status().as_u16(), 429);
    assert_eq!(second.headers()["stripe-should-retry"], "true");
    let body: serde_json::Value = second.json().await.unwrap();
    assert_eq!(body["error"]["code"], "lock_timeout", "{body}");

    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status().as_u16(), 200);
    // Not saved: retried once the lock is free, the second gets the endpoint's answer.
    emu.handle.set_faults(Faults::default()).unwrap();
    let retried = expire("expire-b").await.unwrap();
    assert!(retried.headers().get("idempotent-replayed").is_none());
    let (status, body) = (retried.status().as_u16(), retried.text().await.unwrap());
    assert_eq!(status, 400, "already expired: {body}");
}
