//! The HTTP API over real HTTP: the produced event, validation, auth,
//! ownership, 503 when the broker cannot take a request, health and metrics.

use std::time::Duration;

use checkout_contract::auth::{Claims, JwtIssuer, Role};
use checkout_contract::kafka::{HEADER_REQUEST_ID, KafkaConfig};
use checkout_contract::secret::Secret;
use checkout_contract::{CheckoutRequestEvent, CheckoutStatus};
use reqwest::{Client, Response, StatusCode};
use serde_json::{Value, json};
use testkit::idp::{SigningKey, TestIdp, claims};

use crate::helpers::{
    Backend, JWT_SECRET, TestApp, TestDb, World, finished, new_request_id, new_user, read_back,
    token,
};

const CHECKOUT: &str = "/api/v1/balance/checkout";

async fn post_checkout(app: &TestApp, user: i64, body: Value) -> Response {
    Client::new()
        .post(app.url(CHECKOUT))
        .bearer_auth(token(user))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn get(app: &TestApp, path: &str, bearer: Option<&str>) -> Response {
    let mut request = Client::new().get(app.url(path));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// The JSON error body, after checking the status.
async fn error_body(response: Response, status: StatusCode) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.expect("a JSON error body");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    body["error"].clone()
}

#[tokio::test]
async fn post_checkout_produces_exactly_the_seed_event() {
    let world = World::new(Backend::Sqlite).await;
    let app = world.spawn().await;
    let user = new_user();

    let response = post_checkout(&app, user, json!({ "amount_cents": 500 })).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let body: Value = response.json().await.unwrap();
    let request_id = body["request_id"].as_str().expect("request_id").to_owned();
    assert_eq!(
        body["status_url"],
        format!("http://127.0.0.1:8080/api/v1/balance/checkouts/{request_id}")
    );

    let message = read_back(&world.kafka, &world.topics.requests, &request_id).await;
    assert_eq!(message.header(HEADER_REQUEST_ID), Some(request_id.as_str()));
    let raw = std::str::from_utf8(&message.payload).unwrap();
    // The seed's eight fields, nothing else, in the seed's order.
    let event = testkit::events::assert_seed_request_json(raw);
    // Field by field.
    assert_eq!(event["request_id"], request_id.as_str());
    assert_eq!(event["user_id"], user);
    assert_eq!(event["amount_cents"], 500);
    assert_eq!(event["currency"], "eur");
    assert_eq!(event["purpose"], "balance_topup");
    assert_eq!(
        event["success_url"],
        "http://127.0.0.1:8080/?checkout=success"
    );
    assert_eq!(
        event["cancel_url"],
        "http://127.0.0.1:8080/?checkout=cancel"
    );
    let timestamp = event["timestamp"].as_str().unwrap();
    assert!(timestamp.ends_with('Z'), "{timestamp}");
    let at = checkout_contract::events::iso8601::parse(timestamp).expect("ISO 8601");
    assert!(
        (chrono::Utc::now() - at).num_seconds().abs() < 60,
        "{timestamp}"
    );
    // The contract type reads it and writes it back byte for byte.
    let typed: CheckoutRequestEvent = serde_json::from_str(raw).unwrap();
    assert!(typed.validate().is_ok());
    assert_eq!(serde_json::to_string(&typed).unwrap(), raw);

    // The caller's own choices travel as given.
    let response = post_checkout(
        &app,
        user,
        json!({ "amount_cents": 30, "currency": "gbp",
                "success_url": "https://shop.example/ok?x=1", "cancel_url": "https://shop.example/back" }),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let id = response.json::<Value>().await.unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let message = read_back(&world.kafka, &world.topics.requests, &id).await;
    let event: CheckoutRequestEvent = serde_json::from_slice(&message.payload).unwrap();
    assert_eq!((event.amount_cents, event.currency.as_str()), (30, "gbp"));
    assert_eq!(event.success_url, "https://shop.example/ok?x=1");
    assert_eq!(event.cancel_url, "https://shop.example/back");
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_checkout_is_visible_to_its_owner_only_and_shows_its_session_url() {
    let world = World::new(Backend::Sqlite).await;
    let app = world.spawn().await;
    let (user, stranger) = (new_user(), new_user());

    let response = post_checkout(&app, user, json!({ "amount_cents": 500 })).await;
    let id = response.json::<Value>().await.unwrap()["request_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("/api/v1/balance/checkouts/{id}");
    let status: Value = get(&app, &path, Some(&token(user)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(status["status"], "requested");

    for other in [
        get(&app, &path, Some(&token(stranger))).await,
        get(
            &app,
            &format!("/api/v1/balance/checkouts/{}", new_request_id()),
            Some(&token(user)),
        )
        .await,
        get(
            &app,
            "/api/v1/balance/checkouts/not-a-uuid",
            Some(&token(user)),
        )
        .await,
    ] {
        assert_eq!(
            error_body(other, StatusCode::NOT_FOUND).await["code"],
            "not_found"
        );
    }

    // The checkout worker answers: session created, then paid.
    world
        .send_finished(&finished(&id, user, 500, CheckoutStatus::SessionCreated))
        .await;
    let status = testkit::eventually("session_url to show", crate::helpers::E2E, || async {
        let status: Value = get(&app, &path, Some(&token(user)))
            .await
            .json()
            .await
            .ok()?;
        (status["status"] == "session_created").then_some(status)
    })
    .await;
    assert_eq!(
        status["session_url"],
        "https://checkout.stripe.com/c/pay/cs_test_abc123"
    );
    assert_eq!(status["request_id"], id.as_str());

    world
        .send_finished(&crate::helpers::success(&id, user, 500))
        .await;
    app.wait_balance(user, "eur", 500).await;
    let balance: Value = get(&app, "/api/v1/balance", Some(&token(user)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(balance["user_id"], user);
    assert_eq!(balance["balances"][0]["currency"], "eur");
    assert_eq!(balance["balances"][0]["balance_cents"], 500);
    // The page shows minor units with the currency's exponent from here.
    assert_eq!(balance["balances"][0]["currency_exponent"], 2);
    assert_eq!(balance["recent_ledger"][0]["currency_exponent"], 2);
    assert_eq!(
        balance["topup_currency"],
        json!({"currency": "eur", "currency_exponent": 2, "minimum_cents": 50})
    );
    assert_eq!(balance["recent_ledger"][0]["request_id"], id.as_str());
    assert_eq!(
        balance["recent_ledger"][0]["payment_intent_id"],
        "pi_test_xyz789"
    );
    let theirs: Value = get(&app, "/api/v1/balance", Some(&token(stranger)))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["balances"], json!([]));
    assert_eq!(theirs["recent_ledger"], json!([]));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field_and_nothing_is_produced() {
    let world = World::new(Backend::Sqlite).await;
    let app = world.spawn().await;
    let user = new_user();
    let cases = [
        (json!({}), "amount_cents"),
        (json!({ "amount_cents": 0 }), "amount_cents"),
        (json!({ "amount_cents": -500 }), "amount_cents"),
        (json!({ "amount_cents": 100_000_000 }), "amount_cents"),
        (json!({ "amount_cents": 10 }), "amount_cents"),
        (json!({ "amount_cents": "500" }), "amount_cents"),
        (json!({ "amount_cents": 5.5 }), "amount_cents"),
        (
            json!({ "amount_cents": 500, "currency": "EUR" }),
            "currency",
        ),
        (
            json!({ "amount_cents": 500, "currency": "xyz" }),
            "currency",
        ),
        (json!({ "amount_cents": 500, "currency": 978 }), "currency"),
        (
            json!({ "amount_cents": 500, "success_url": "/balance" }),
            "success_url",
        ),
        (
            json!({ "amount_cents": 500, "success_url": "ftp://example.com/x" }),
            "success_url",
        ),
        (
            json!({ "amount_cents": 500, "cancel_url": "javascript:alert(1)" }),
            "cancel_url",
        ),
        // Hosts outside CHECKOUT_REDIRECT_HOSTS: no open redirect through our sessions.
        (
            json!({ "amount_cents": 500, "success_url": "https://evil.test/phish" }),
            "success_url",
        ),
        (
            json!({ "amount_cents": 500, "cancel_url": "https://example.com.evil.test/" }),
            "cancel_url",
        ),
        (
            json!({ "amount_cents": 500, "cancel_url": format!("https://example.com/{}", "a".repeat(3000)) }),
            "cancel_url",
        ),
    ];
    for (body, field) in cases {
        let error = error_body(
            post_checkout(&app, user, body.clone()).await,
            StatusCode::BAD_REQUEST,
        )
        .await;
        assert_eq!(error["field"], field, "{body} -> {error}");
        assert_eq!(error["code"], "invalid_field");
        assert!(
            error["message"].as_str().unwrap().starts_with(field),
            "{error}"
        );
    }
    let client = Client::new();
    let not_json = client
        .post(app.url(CHECKOUT))
        .bearer_auth(token(user))
        .body("amount=500")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_body(not_json, StatusCode::BAD_REQUEST).await["code"],
        "invalid_body"
    );
    let array = client
        .post(app.url(CHECKOUT))
        .bearer_auth(token(user))
        .json(&json!([500]))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_body(array, StatusCode::BAD_REQUEST).await["code"],
        "invalid_body"
    );
    let huge = json!({ "amount_cents": 500, "note": "x".repeat(64 * 1024) });
    let too_large = client
        .post(app.url(CHECKOUT))
        .bearer_auth(token(user))
        .json(&huge)
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_body(too_large, StatusCode::PAYLOAD_TOO_LARGE).await["code"],
        "body_too_large"
    );

    let metrics = get(&app, "/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("blazing_sun_checkout_requests_sent_total 0\n"),
        "{metrics}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn missing_expired_or_forged_tokens_are_401_and_service_tokens_403() {
    let world = World::new(Backend::Sqlite).await;
    let app = world.spawn().await;
    let expired = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &Claims {
            sub: "42".into(),
            exp: chrono::Utc::now().timestamp() - 3600,
            role: Role::User,
        },
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    let forged = JwtIssuer::new(&Secret::new("not-the-secret")).issue(
        "42",
        Role::User,
        Duration::from_secs(300),
    );
    let client = Client::new();
    for path in [
        CHECKOUT,
        "/api/v1/balance",
        "/api/v1/balance/checkouts/550e8400-e29b-41d4-a716-446655440000",
    ] {
        let request = |auth: Option<String>| {
            let mut r = if path == CHECKOUT {
                client
                    .post(app.url(path))
                    .json(&json!({ "amount_cents": 500 }))
            } else {
                client.get(app.url(path))
            };
            if let Some(auth) = auth {
                r = r.header("authorization", auth);
            }
            r.send()
        };
        for (auth, code) in [
            (None, "unauthorized"),
            (Some("Basic YWxpY2U6c2VjcmV0".to_owned()), "unauthorized"),
            (Some("Bearer not.a.jwt".to_owned()), "unauthorized"),
            (Some(format!("Bearer {forged}")), "unauthorized"),
            (Some(format!("Bearer {expired}")), "token_expired"),
        ] {
            let response = request(auth.clone()).await.unwrap();
            assert_eq!(
                response
                    .headers()
                    .get("www-authenticate")
                    .map(|v| v.to_str().unwrap()),
                Some("Bearer")
            );
            let error = error_body(response, StatusCode::UNAUTHORIZED).await;
            assert_eq!(error["code"], code, "{path} {auth:?}");
        }
        let service = JwtIssuer::new(&Secret::new(JWT_SECRET)).issue(
            "billing",
            Role::Service,
            Duration::from_secs(60),
        );
        let response = request(Some(format!("Bearer {service}"))).await.unwrap();
        assert_eq!(
            error_body(response, StatusCode::FORBIDDEN).await["code"],
            "forbidden"
        );
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn identity_provider_tokens_read_the_balance_and_others_are_refused() {
    let world = World::new(Backend::Sqlite).await;
    let key = SigningKey::rsa("blazing-sun-rs256");
    let idp = TestIdp::start(&[&key]).await;
    idp.set_down(true);
    let mut config = world.config();
    config.jwt_secret = None;
    config.jwks = Some(idp.settings(Duration::from_millis(200)));
    let app = TestApp::spawn(config).await;
    let user = new_user();
    let rs256 = key.token(&user.to_string(), "user");

    // The provider is down: 503, the service serves on.
    let response = get(&app, "/api/v1/balance", Some(&rs256)).await;
    let error = error_body(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(error["code"], "auth_unavailable", "{error}");
    idp.set_down(false);
    let balance: Value = testkit::eventually(
        "the balance with an RS256 token",
        Duration::from_secs(10),
        || async {
            let response = get(&app, "/api/v1/balance", Some(&rs256)).await;
            match response.status() {
                StatusCode::OK => response.json().await.ok(),
                _ => None,
            }
        },
    )
    .await;
    assert_eq!(balance["user_id"], user);

    let mut other_issuer = claims(&user.to_string(), "user");
    other_issuer["iss"] = "https://evil.test/".into();
    for (bearer, why) in [
        (token(user), "HS256 tokens are not accepted"),
        (key.sign(&other_issuer), "wrong issuer"),
        (
            SigningKey::ec("unpublished").token(&user.to_string(), "user"),
            "unknown signing key",
        ),
    ] {
        let response = get(&app, "/api/v1/balance", Some(&bearer)).await;
        let error = error_body(response, StatusCode::UNAUTHORIZED).await;
        assert_eq!(error["code"], "unauthorized", "{error}");
        assert!(error["message"].as_str().unwrap().contains(why), "{error}");
    }
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_broker_that_cannot_take_the_request_is_a_503_and_unhealthy() {
    let db = TestDb::new(Backend::Sqlite).await;
    let dead_broker = KafkaConfig::new(
        format!("127.0.0.1:{}", testkit::free_port()),
        "blazing-sun-test",
    );
    let mut config = blazing_sun::Config::new(&db.url, dead_broker, Secret::new(JWT_SECRET));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.create_topics = false;
    config.produce_timeout = Duration::from_millis(500);
    let app = TestApp::spawn(config).await;

    let response = post_checkout(&app, new_user(), json!({ "amount_cents": 500 })).await;
    assert_eq!(
        error_body(response, StatusCode::SERVICE_UNAVAILABLE).await["code"],
        "unavailable"
    );

    let health = get(&app, "/healthz", None).await;
    assert_eq!(health.status(), StatusCode::SERVICE_UNAVAILABLE);
    let health: Value = health.json().await.unwrap();
    assert_eq!(health["database"], "ok");
    assert_ne!(health["broker"], "ok");
    let metrics = get(&app, "/metrics", None).await.text().await.unwrap();
    assert!(
        metrics.contains("blazing_sun_checkout_requests_unavailable_total 1\n"),
        "{metrics}"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn health_metrics_and_unknown_routes() {
    let world = World::new(Backend::Postgres).await;
    let app = world.spawn().await;
    let health = get(&app, "/healthz", None).await;
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({ "status": "ok", "database": "ok", "broker": "ok", "consumer": "ok" })
    );

    let metrics = get(&app, "/metrics", None).await;
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = metrics.text().await.unwrap();
    for line in [
        "# TYPE blazing_sun_checkout_finished_total counter",
        "blazing_sun_checkout_finished_total{outcome=\"credited\"} 0",
        "blazing_sun_http_responses_total{class=\"2xx\"} 1",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    assert_eq!(
        error_body(get(&app, "/nowhere", None).await, StatusCode::NOT_FOUND).await["code"],
        "not_found"
    );
    app.stop().await.unwrap();
}

#[tokio::test]
async fn slow_clients_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let db = TestDb::new(Backend::Sqlite).await;
    let no_broker = KafkaConfig::new(
        format!("127.0.0.1:{}", testkit::free_port()),
        "blazing-sun-test",
    );
    let mut config = blazing_sun::Config::new(&db.url, no_broker, Secret::new(JWT_SECRET));
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.create_topics = false;
    config.http.header_read_timeout = Duration::from_millis(300);
    config.http.body_read_timeout = Duration::from_millis(300);
    let app = TestApp::spawn(config).await;

    // Headers that never end: the server hangs up.
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .ok();
    assert!(
        !String::from_utf8_lossy(&answer).contains("200 OK"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    // A body that never ends: a JSON error, and the connection closes.
    let mut stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let request = format!(
        "POST {CHECKOUT} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\n\
         content-length: 100\r\n\r\n{{\"amount_cents\"",
        token(new_user())
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer))
        .await
        .expect("the server answers and closes")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("\"code\":\"timeout\""), "{answer}");
    app.stop().await.unwrap();
}
