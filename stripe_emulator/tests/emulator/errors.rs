//! Stripe's error JSON and status codes: 401 without a test key, 400 with
//! `param` naming the field for bad amounts, currencies, URLs, missing mode.

use stripe_emulator::Config;

use crate::helpers::{KEY, create_body, create_request, spawn};

#[tokio::test]
async fn missing_or_wrong_api_key_is_401_with_stripes_error_shape() {
    let emu = spawn(Config::default()).await;
    let body = create_body("r", 1000, "eur");
    for auth in [
        None,
        Some("Bearer sk_live_realkey123"),
        Some("Bearer nonsense"),
        Some("Basic c2tfbGl2ZV94Og=="),
    ] {
        let mut req = emu
            .http
            .post(emu.url("v1/checkout/sessions"))
            .body(body.clone());
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{auth:?}");
        let json: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(json["error"]["type"], "invalid_request_error", "{json}");
        assert!(
            json["error"]["message"]
                .as_str()
                .unwrap()
                .contains("API key")
                || json["error"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("API Key")
        );
    }
    assert!(emu.handle.sessions().sessions.is_empty());
    assert_eq!(emu.handle.stats().unauthorized, 4);

    // async-stripe sees a typed 401.
    let client = stripe::ClientBuilder::new("sk_live_nope")
        .url(emu.api_base.clone())
        .build()
        .unwrap();
    match create_request("r", 1000).send(&client).await.unwrap_err() {
        stripe::StripeError::Stripe(e, 401) => {
            assert_eq!(e.type_, stripe::ApiErrorsType::InvalidRequestError)
        }
        other => panic!("expected 401, got {other:?}"),
    }
}

#[tokio::test]
async fn an_exact_configured_key_is_required_when_set() {
    let config = Config {
        api_key: Some(checkout_contract::secret::Secret::new("sk_test_only_this")),
        ..Config::default()
    };
    let emu = spawn(config).await;
    // The helpers' default key is a valid test key, but not the configured one.
    let (status, _) = emu
        .post_form("v1/checkout/sessions", &create_body("r", 1000, "eur"), None)
        .await;
    assert_eq!(status, 401, "{KEY} must be refused");
    let client = stripe::ClientBuilder::new("sk_test_only_this")
        .url(emu.api_base.clone())
        .build()
        .unwrap();
    create_request("r", 1000)
        .send(&client)
        .await
        .expect("the configured key works");
}

#[tokio::test]
async fn each_invalid_parameter_is_a_400_naming_the_field() {
    let emu = spawn(Config::default()).await;
    let good = create_body("r", 1000, "eur");
    let unit_amount = "line_items[0][price_data][unit_amount]";
    let cases: Vec<(String, &str, Option<&str>)> = vec![
        (
            create_body("r", 49, "eur"),
            unit_amount,
            Some("amount_too_small"),
        ),
        (
            create_body("r", 29, "gbp"),
            unit_amount,
            Some("amount_too_small"),
        ),
        (
            create_body("r", 100_000_000, "eur"),
            unit_amount,
            Some("amount_too_large"),
        ),
        (
            create_body("r", -5, "eur"),
            unit_amount,
            Some("parameter_invalid_integer"),
        ),
        (
            good.replace("unit_amount]=1000", "unit_amount]=12.5"),
            unit_amount,
            Some("parameter_invalid_integer"),
        ),
        (
            create_body("r", 1000, "xyz"),
            "line_items[0][price_data][currency]",
            None,
        ),
        (
            good.replace("mode=payment&", ""),
            "mode",
            Some("parameter_missing"),
        ),
        (good.replace("mode=payment", "mode=bogus"), "mode", None),
        (
            good.replace(
                "success_url=https%3A%2F%2Fshop.test",
                "success_url=shop.test",
            ),
            "success_url",
            Some("url_invalid"),
        ),
        (
            good.replace(
                "cancel_url=https%3A%2F%2Fshop.test%2Fcancel",
                "cancel_url=javascript%3Aalert(1)",
            ),
            "cancel_url",
            Some("url_invalid"),
        ),
        (
            good.replace(
                "&success_url=https%3A%2F%2Fshop.test%2Fok%3Fsession%3D%7BCHECKOUT_SESSION_ID%7D",
                "",
            ),
            "success_url",
            Some("parameter_missing"),
        ),
        (
            format!("{good}&colour=red"),
            "colour",
            Some("parameter_unknown"),
        ),
        (
            format!("{good}&payment_method_types[0]=card"),
            "payment_method_types",
            Some("parameter_unknown"),
        ),
        (
            good.replace("[product_data][name]", "[product_data][title]"),
            "line_items[0][price_data][product_data][title]",
            Some("parameter_unknown"),
        ),
        (
            good.replace("&line_items[0][quantity]=1", ""),
            "line_items[0][quantity]",
            Some("parameter_missing"),
        ),
        (
            "mode=payment&success_url=https%3A%2F%2Fa.test".to_owned(),
            "line_items",
            Some("parameter_missing"),
        ),
    ];
    for (body, param, code) in cases {
        let (status, json) = emu.post_form("v1/checkout/sessions", &body, None).await;
        assert_eq!(status, 400, "{body}: {json}");
        if code == Some("parameter_unknown") {
            assert_eq!(
                json["error"]["message"],
                format!("Received unknown parameter: {param}")
            );
        }
        let e = &json["error"];
        assert_eq!(e["type"], "invalid_request_error", "{json}");
        assert_eq!(e["param"], param, "{body}: {json}");
        assert_eq!(e["code"].as_str(), code, "{body}: {json}");
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    assert!(
        emu.handle.sessions().sessions.is_empty(),
        "no invalid request creates a session"
    );

    // The same through async-stripe: a typed 400 with param and code.
    match create_request("r", 10)
        .send(&emu.client())
        .await
        .unwrap_err()
    {
        stripe::StripeError::Stripe(e, 400) => {
            assert_eq!(e.code, Some(stripe::ApiErrorsCode::AmountTooSmall));
            assert_eq!(e.param.as_deref(), Some(unit_amount));
        }
        other => panic!("expected 400, got {other:?}"),
    }
}

#[tokio::test]
async fn unknown_paths_get_stripes_404() {
    let emu = spawn(Config::default()).await;
    let resp = emu
        .http
        .get(emu.url("v1/charges"))
        .bearer_auth(crate::helpers::KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        json["error"]["message"],
        "Unrecognized request URL (GET: /v1/charges)."
    );
}
