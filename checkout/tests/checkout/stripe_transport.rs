//! The service's own transport under async-stripe's request types
//! (`checkout::stripe_http`): it sends what async-stripe's client sends, it
//! keeps connections to Stripe (counted by a TLS front with a generated
//! certificate in front of the emulator), and the retry loop obeys
//! `Stripe-Should-Retry` and `Retry-After` (a front that answers the first
//! calls itself, then passes the rest to the emulator).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use checkout::stripe::{CreateError, Stripe, session_params};
use checkout::stripe_http::{StripeHttp, Transport};
use checkout_contract::ValidCheckoutRequest;
use checkout_contract::secret::Secret;
use stripe::{ClientBuilder, IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_checkout::checkout_session::{ListCheckoutSession, RetrieveCheckoutSession};
use stripe_emulator::Emulator;
use testkit::front::Front;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::helpers::{API_KEY, WEBHOOK_SECRET, request};

/// An emulator on port 0, stopped when the sender drops.
async fn emulator() -> (SocketAddr, stripe_emulator::Handle, oneshot::Sender<()>) {
    testkit::init_tracing();
    let emulator = Emulator::build(stripe_emulator::Config::default())
        .await
        .expect("emulator starts");
    let (addr, handle) = (emulator.addr(), emulator.handle());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(emulator.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    (addr, handle, stop)
}

/// The service's Stripe settings for `api_base`: no rate limit to speak
/// of, retries within 50 ms unless Stripe says otherwise.
fn config(api_base: String) -> checkout::config::StripeConfig {
    let mut config = checkout::Config::new(
        "127.0.0.1:1",
        api_base,
        Secret::new(API_KEY),
        Secret::new(WEBHOOK_SECRET),
    )
    .stripe;
    config.rate_limit = 1000.0;
    config.retry.max_attempts = 5;
    config.retry.base = Duration::from_millis(10);
    config.retry.max = Duration::from_millis(50);
    config
}

fn valid(amount_cents: i64) -> ValidCheckoutRequest {
    request(amount_cents).validate().expect("valid")
}

fn trusting(front: &Front, transport: Transport) -> Transport {
    Transport {
        extra_roots: vec![front.ca_der().expect("a TLS front").clone()],
        ..transport
    }
}

#[tokio::test]
async fn connections_to_stripe_are_kept_and_reused_over_tls() {
    let (emulator_addr, emulator, _stop) = emulator().await;
    let front = Front::tls(emulator_addr).await.expect("TLS front");
    let config = config(front.base_url());
    let stripe =
        Stripe::with_transport(&config, &trusting(&front, Transport::default())).expect("client");

    for _ in 0..20 {
        stripe
            .create_session(&valid(500), 0)
            .await
            .expect("created over TLS");
    }
    let sequential = front.connections();
    assert!(
        sequential <= 2,
        "20 calls one after another opened {sequential} connections"
    );
    let calls = (0..8).map(|_| {
        let stripe = stripe.clone();
        tokio::spawn(async move {
            for _ in 0..5 {
                stripe
                    .create_session(&valid(700), 0)
                    .await
                    .expect("created");
            }
        })
    });
    for call in futures::future::join_all(calls).await {
        call.expect("no panic");
    }
    let total = front.connections();
    assert!(
        total <= sequential + 8,
        "8 callers opened {} more connections for 40 calls",
        total - sequential
    );
    assert_eq!(emulator.stats().sessions_created, 60);

    // The counter counts: async-stripe's settings open one per call.
    let front = Front::tls(emulator_addr).await.expect("TLS front");
    let config = checkout::config::StripeConfig {
        api_base: front.base_url(),
        ..config
    };
    let unpooled =
        Stripe::with_transport(&config, &trusting(&front, Transport::like_async_stripe()))
            .expect("client");
    for _ in 0..5 {
        unpooled
            .create_session(&valid(500), 0)
            .await
            .expect("created");
    }
    assert_eq!(front.connections(), 5, "no pool: a connection per call");
}

#[tokio::test]
async fn a_transport_without_the_generated_ca_is_refused_over_tls() {
    let (emulator_addr, _emulator, _stop) = emulator().await;
    let front = Front::tls(emulator_addr).await.expect("TLS front");
    let stripe = Stripe::new(&config(front.base_url())).expect("client");
    let refused = stripe.retrieve_session("cs_test_x").await;
    assert!(
        matches!(refused, Err(checkout::stripe::CallError::GaveUp { ref last, .. }) if last.contains("certificate")),
        "{refused:?}"
    );
}

/// One request as a server saw it: method, URI, every header, the body.
type Seen = (String, String, Vec<(String, String)>, Vec<u8>);

/// A server that records every request and answers 404 `resource_missing`.
async fn recorder() -> (String, Arc<Mutex<Vec<Seen>>>) {
    async fn record(State(seen): State<Arc<Mutex<Vec<Seen>>>>, request: Request) -> Response {
        let (parts, body) = request.into_parts();
        let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
        let mut headers: Vec<(String, String)> = parts
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        headers.sort();
        seen.lock().unwrap().push((
            parts.method.to_string(),
            parts.uri.to_string(),
            headers,
            body.to_vec(),
        ));
        Response::builder()
            .status(404)
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"error":{"type":"invalid_request_error","code":"resource_missing","message":"No such thing"}}"#,
            ))
            .unwrap()
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .fallback(record)
        .with_state(Arc::clone(&seen));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/"), seen)
}

#[tokio::test]
async fn sends_what_async_stripe_sends() {
    let (api_base, seen) = recorder().await;
    let ours = StripeHttp::new(&config(api_base.clone()), &Transport::default()).expect("ours");
    let theirs = ClientBuilder::new(API_KEY)
        .url(api_base)
        .app_info(
            "blazing-sun-checkout",
            Some(env!("CARGO_PKG_VERSION").to_owned()),
            None,
        )
        .build()
        .expect("async-stripe's");
    let key = RequestStrategy::Idempotent(IdempotencyKey::new("checkout:same").unwrap());
    let create = session_params(&valid(500));
    let list = ListCheckoutSession::new()
        .limit(100)
        .starting_after("cs_test_a");
    let retrieve = RetrieveCheckoutSession::new("cs_test_b");

    // Each request through both clients; both get the 404.
    let strategy = || key.clone();
    assert!(
        create
            .customize()
            .request_strategy(strategy())
            .send(&ours)
            .await
            .is_err()
    );
    assert!(
        create
            .customize()
            .request_strategy(strategy())
            .send(&theirs)
            .await
            .is_err()
    );
    assert!(list.customize().send(&ours).await.is_err());
    assert!(list.customize().send(&theirs).await.is_err());
    assert!(retrieve.customize().send(&ours).await.is_err());
    assert!(retrieve.customize().send(&theirs).await.is_err());

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 6);
    for pair in seen.chunks(2) {
        assert_eq!(pair[0], pair[1], "ours, then async-stripe's");
    }
    let (method, uri, headers, body) = &seen[0];
    assert_eq!(
        (method.as_str(), uri.as_str()),
        ("POST", "/v1/checkout/sessions")
    );
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(header("idempotency-key"), Some("checkout:same"));
    assert_eq!(
        header("authorization"),
        Some(format!("Bearer {API_KEY}").as_str())
    );
    assert_eq!(
        header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert!(header("stripe-version").is_some_and(|v| !v.is_empty()));
    assert!(!body.is_empty());
    assert!(
        seen[2].1.starts_with("/v1/checkout/sessions?"),
        "{}",
        seen[2].1
    );
}

/// What the fault front answers instead of passing a request on.
#[derive(Clone)]
struct Answer {
    status: u16,
    headers: Vec<(&'static str, &'static str)>,
}

/// A front that answers the first requests with `script` (Stripe's error
/// JSON and the given headers) and passes the rest to the emulator;
/// `arrivals` is when each request came.
struct FaultFront {
    base_url: String,
    arrivals: Arc<Mutex<Vec<Instant>>>,
}

#[derive(Clone)]
struct FrontState {
    script: Arc<Mutex<VecDeque<Answer>>>,
    arrivals: Arc<Mutex<Vec<Instant>>>,
    upstream: SocketAddr,
    http: reqwest::Client,
}

impl FaultFront {
    async fn start(upstream: SocketAddr, script: Vec<Answer>) -> Self {
        async fn serve(State(state): State<FrontState>, request: Request) -> Response {
            state.arrivals.lock().unwrap().push(Instant::now());
            let scripted = state.script.lock().unwrap().pop_front();
            if let Some(answer) = scripted {
                let mut response = Response::builder()
                    .status(answer.status)
                    .header("content-type", "application/json");
                for (name, value) in answer.headers {
                    response = response.header(name, value);
                }
                return response
                    .body(Body::from(
                        r#"{"error":{"type":"api_error","message":"scripted by the test"}}"#,
                    ))
                    .unwrap();
            }
            let (parts, body) = request.into_parts();
            let body = to_bytes(body, usize::MAX).await.unwrap_or_default();
            let url = format!("http://{}{}", state.upstream, parts.uri);
            let mut forward = state.http.request(parts.method, url).body(body);
            for (name, value) in &parts.headers {
                if name != "host" {
                    forward = forward.header(name, value);
                }
            }
            let upstream = forward.send().await.expect("the emulator answers");
            let mut response = Response::builder().status(upstream.status());
            for (name, value) in upstream.headers() {
                response = response.header(name, value);
            }
            response
                .body(Body::from(upstream.bytes().await.unwrap_or_default()))
                .unwrap()
        }
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let state = FrontState {
            script: Arc::new(Mutex::new(script.into())),
            arrivals: Arc::clone(&arrivals),
            upstream,
            http: reqwest::Client::new(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().fallback(serve).with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            base_url: format!("http://{addr}/"),
            arrivals,
        }
    }

    fn arrivals(&self) -> Vec<Instant> {
        self.arrivals.lock().unwrap().clone()
    }
}

fn answer(status: u16, headers: &[(&'static str, &'static str)]) -> Answer {
    Answer {
        status,
        headers: headers.to_vec(),
    }
}

#[tokio::test]
async fn stripe_should_retry_false_ends_the_retries_of_a_call() {
    let (emulator_addr, emulator, _stop) = emulator().await;
    for status in [429, 500, 503] {
        let front = FaultFront::start(
            emulator_addr,
            vec![answer(status, &[("Stripe-Should-Retry", "false")])],
        )
        .await;
        let stripe = Stripe::new(&config(front.base_url.clone())).expect("client");
        let created = stripe.create_session(&valid(500), 0).await;
        assert!(
            matches!(created, Err(CreateError::GaveUp { attempts: 1, .. })),
            "{status}: {created:?}"
        );
        assert_eq!(front.arrivals().len(), 1, "{status}: not retried");
    }
    assert_eq!(emulator.stats().api_calls, 0);

    // Without the header the same answers are retried, and the call succeeds.
    let front = FaultFront::start(
        emulator_addr,
        vec![answer(429, &[]), answer(500, &[]), answer(503, &[])],
    )
    .await;
    let stripe = Stripe::new(&config(front.base_url.clone())).expect("client");
    stripe
        .create_session(&valid(500), 0)
        .await
        .expect("created on the fourth attempt");
    assert_eq!(front.arrivals().len(), 4);
    assert_eq!(emulator.stats().sessions_created, 1);
}

#[tokio::test]
async fn retry_after_is_waited_before_the_next_attempt() {
    let (emulator_addr, emulator, _stop) = emulator().await;
    let front = FaultFront::start(
        emulator_addr,
        vec![
            answer(
                429,
                &[("Retry-After", "1"), ("Stripe-Should-Retry", "true")],
            ),
            answer(503, &[("Retry-After", "1")]),
        ],
    )
    .await;
    let stripe = Stripe::new(&config(front.base_url.clone())).expect("client");
    let r = valid(500);
    stripe.create_session(&r, 0).await.expect("created");
    let arrivals = front.arrivals();
    assert_eq!(arrivals.len(), 3);
    // The backoff alone would be at most 50 ms.
    for (n, pair) in arrivals.windows(2).enumerate() {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= Duration::from_millis(990),
            "attempt {} came {gap:?} after a Retry-After of 1 s",
            n + 2
        );
    }
    assert_eq!(emulator.stats().sessions_created, 1);

    // A 400 with Stripe-Should-Retry: true is retried, not rejected.
    let front = FaultFront::start(
        emulator_addr,
        vec![answer(400, &[("Stripe-Should-Retry", "true")])],
    )
    .await;
    let stripe = Stripe::new(&config(front.base_url.clone())).expect("client");
    stripe
        .create_session(&valid(600), 0)
        .await
        .expect("retried, then created");
    assert_eq!(front.arrivals().len(), 2);
}
