//! Test support: the emulator on port 0, a webhook receiver, an async-stripe client.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    ProductData,
};
use stripe_emulator::{Config, Emulator, Handle};
use tokio::sync::oneshot;

pub const KEY: &str = "sk_test_emulator_tests";
pub const SECRET: &str = "whsec_tests";

/// A running emulator; stops when dropped.
pub struct TestEmulator {
    pub handle: Handle,
    /// `http://127.0.0.1:PORT/`
    pub api_base: String,
    pub http: reqwest::Client,
    _stop: oneshot::Sender<()>,
}

pub async fn spawn(config: Config) -> TestEmulator {
    testkit::init_tracing();
    let emulator = Emulator::build(config).await.expect("emulator starts");
    let handle = emulator.handle();
    let api_base = emulator.api_base();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(emulator.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    TestEmulator {
        handle,
        api_base,
        http,
        _stop: stop,
    }
}

/// A fast retry policy so retry tests take milliseconds.
pub fn fast_retries(max_attempts: u32) -> stripe_emulator::DeliveryPolicy {
    stripe_emulator::DeliveryPolicy {
        max_attempts,
        retry_base: Duration::from_millis(20),
        retry_max: Duration::from_millis(100),
        attempt_timeout: Duration::from_secs(5),
        out_of_order_hold: Duration::from_millis(300),
    }
}

impl TestEmulator {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.api_base, path.trim_start_matches('/'))
    }

    pub fn client(&self) -> stripe::Client {
        stripe::ClientBuilder::new(KEY)
            .url(self.api_base.clone())
            .build()
            .expect("client")
    }

    /// POST /v1/... form-encoded with the test key and optional idempotency key.
    pub async fn post_form(
        &self,
        path: &str,
        body: &str,
        idempotency_key: Option<&str>,
    ) -> (u16, serde_json::Value) {
        let mut req = self
            .http
            .post(self.url(path))
            .bearer_auth(KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned());
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("json body"))
    }

    /// GET `path` (API or control) with the test key: status and JSON body.
    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let resp = self
            .http
            .get(self.url(path))
            .bearer_auth(KEY)
            .send()
            .await
            .expect("request");
        let status = resp.status().as_u16();
        (status, resp.json().await.expect("json body"))
    }

    pub async fn create_session(&self, request_id: &str) -> stripe_shared::CheckoutSession {
        create_request(request_id, 1500)
            .send(&self.client())
            .await
            .expect("session created")
    }
}

/// The request the checkout worker sends: one line item, metadata, client_reference_id.
pub fn create_request(request_id: &str, amount: i64) -> CreateCheckoutSession {
    let price = CreateCheckoutSessionLineItemsPriceData {
        unit_amount: Some(amount),
        product_data: Some(ProductData::new("balance_topup")),
        ..CreateCheckoutSessionLineItemsPriceData::new(stripe_types::Currency::EUR)
    };
    let item = CreateCheckoutSessionLineItems {
        price_data: Some(price),
        quantity: Some(1),
        ..Default::default()
    };
    CreateCheckoutSession::new()
        .mode(stripe_shared::CheckoutSessionMode::Payment)
        .line_items(vec![item])
        .client_reference_id(request_id)
        .metadata([
            ("request_id".to_owned(), request_id.to_owned()),
            ("user_id".to_owned(), "42".to_owned()),
        ])
        .success_url("https://shop.test/ok?session={CHECKOUT_SESSION_ID}")
        .cancel_url("https://shop.test/cancel")
}

/// A body for raw requests, equivalent to [`create_request`].
pub fn create_body(request_id: &str, amount: i64, currency: &str) -> String {
    format!(
        "mode=payment&client_reference_id={request_id}&metadata[request_id]={request_id}\
&success_url=https%3A%2F%2Fshop.test%2Fok%3Fsession%3D%7BCHECKOUT_SESSION_ID%7D&cancel_url=https%3A%2F%2Fshop.test%2Fcancel\
&line_items[0][quantity]=1&line_items[0][price_data][currency]={currency}&line_items[0][price_data][unit_amount]={amount}\
&line_items[0][price_data][product_data][name]=balance_topup"
    )
}

/// One webhook request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub signature: String,
    pub body: String,
    /// The status the receiver answered: 400 when the signature check or
    /// parsing failed (like the real webhook endpoint), 500 when told to fail.
    pub answered: u16,
    /// async-stripe-webhook's verdict, checked on arrival (timestamps age).
    pub verdict: Result<(), String>,
}

impl Delivery {
    /// Verified and typed by async-stripe-webhook, as the checkout webhook does.
    pub fn verify(&self) -> Result<stripe_webhook::Event, stripe_webhook::WebhookError> {
        stripe_webhook::Webhook::construct_event(&self.body, &self.signature, SECRET)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("event JSON")
    }

    pub fn event_id(&self) -> String {
        self.json()["id"].as_str().unwrap().to_owned()
    }

    pub fn event_type(&self) -> String {
        self.json()["type"].as_str().unwrap().to_owned()
    }
}

#[derive(Default)]
struct ReceiverState {
    deliveries: Vec<Delivery>,
    /// Answer 500 to this many requests first.
    fail_next: u32,
}

/// A webhook endpoint on port 0 that records every request.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    state: Arc<Mutex<ReceiverState>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(ReceiverState::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/webhooks/stripe", listener.local_addr().unwrap());
        let app = Router::new()
            .route("/webhooks/stripe", post(receive))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, state }
    }

    pub fn fail_next(&self, n: u32) {
        self.state.lock().unwrap().fail_next = n;
    }

    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.lock().unwrap().deliveries.clone()
    }

    /// Waits until some delivery matches `pred`, and returns all so far.
    pub async fn wait_until(&self, what: &str, pred: impl Fn(&Delivery) -> bool) -> Vec<Delivery> {
        testkit::eventually(what, Duration::from_secs(10), || async {
            let d = self.deliveries();
            d.iter().any(&pred).then_some(d)
        })
        .await
    }

    /// Waits until at least `n` requests arrived, and returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Delivery> {
        testkit::eventually(
            &format!("{n} webhook deliveries"),
            Duration::from_secs(10),
            || async {
                let d = self.deliveries();
                (d.len() >= n).then_some(d)
            },
        )
        .await
    }
}

async fn receive(
    State(state): State<Arc<Mutex<ReceiverState>>>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature = headers
        .get("stripe-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = String::from_utf8(body.to_vec()).expect("utf-8 body");
    let verdict = stripe_webhook::Webhook::construct_event(&body, &signature, SECRET)
        .map(|_| ())
        .map_err(|e| format!("{e:?}"));
    let mut state = state.lock().unwrap();
    let answered = if state.fail_next > 0 {
        state.fail_next -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else if verdict.is_err() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    state.deliveries.push(Delivery {
        signature,
        body,
        answered: answered.as_u16(),
        verdict,
    });
    answered
}

/// An emulator delivering to a fresh receiver.
pub async fn with_receiver(config: Config) -> (TestEmulator, Receiver) {
    let receiver = Receiver::start().await;
    let emulator = spawn(config.with_webhook(receiver.url.clone(), SECRET)).await;
    (emulator, receiver)
}
