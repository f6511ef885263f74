//! A stateful local stand-in for the parts of Stripe the checkout flow uses,
//! faithful enough that the real `async-stripe` client cannot tell the
//! difference: Checkout Sessions over Stripe's form-encoded `/v1` API with
//! Stripe's errors and idempotency, a hosted payment page, signed webhooks
//! with retries, and injectable faults. No service links this crate: they
//! reach it over HTTP like Stripe. The all-in-one launcher and tests may.
//!
//! # Use
//! ```no_run
//! # async fn demo() -> Result<(), stripe_emulator::Error> {
//! use stripe_emulator::{Config, Emulator, Outcome};
//! let emulator = Emulator::build(Config::default()).await?; // 127.0.0.1:0
//! let handle = emulator.handle();
//! let api_base = emulator.api_base(); // "http://127.0.0.1:PORT/" -> STRIPE_API_BASE
//! handle.set_webhook(Some("http://127.0.0.1:8080/webhooks/stripe".into()), Some("whsec_x".into()));
//! tokio::spawn(emulator.run_until_stopped(std::future::pending()));
//! # let session_id = "cs_test_x";
//! handle.pay(session_id, Outcome::Paid).expect("open session"); // -> checkout.session.completed (paid)
//! # Ok(()) }
//! ```
//!
//! # HTTP surface
//! Stripe API (Bearer or Basic (`curl -u sk_test_...:`) with an `sk_test_`/`rk_test_` key, or
//! exactly `STRIPE_EMULATOR_API_KEY` when set; else 401):
//! - `POST /v1/checkout/sessions` (mode=payment, inline `price_data` line items),
//!   `GET /v1/checkout/sessions` (list: `limit`, `starting_after`, `ending_before`, `status`,
//!   `payment_intent`, `created` / `created[gt|gte|lt|lte]`), `GET /v1/checkout/sessions/{id}`,
//!   `POST /v1/checkout/sessions/{id}/expire`.
//! - Errors: `{"error":{"type","code","message","param"}}`; 400 `parameter_missing`
//!   (mode, success_url, line_items, ...), `amount_too_small` / `amount_too_large`
//!   (param `line_items[0][price_data][unit_amount]`), bad currency (param
//!   `line_items[i][price_data][currency]`, code null), `url_invalid`
//!   (success_url / cancel_url); 400 `parameter_unknown` "Received unknown parameter: ..."
//!   for any parameter the API version does not have ([`known_params`], e.g.
//!   `payment_method_types`, removed in 2026-09-30.endive); 404 `resource_missing`; 401;
//!   429 `rate_limit` (account limit or injected); 429 `lock_timeout` (another request is
//!   expiring the same session); 500 `api_error`. Errors carry `Stripe-Should-Retry`
//!   (`true` on 409, 429, 5xx; `false` on other 4xx); no `Retry-After` (Stripe documents none).
//! - `Idempotency-Key`: same key + same params replays the saved response
//!   (header `Idempotent-Replayed: true`), even an injected 500 or a 400 the
//!   endpoint answered; other params: 400 `idempotency_error`; while the first
//!   runs: 409 `idempotency_key_in_use`. Requests refused before the endpoint
//!   ran (parameter validation, 401, 409, 429) are not saved.
//!
//! Hosted page: `GET /pay/{id}` (the session's `url`), buttons POST back and
//! redirect (303) to `success_url` / `cancel_url`.
//!
//! Control API (JSON, no auth, no faults): see [`control`]:
//! `POST /_emulator/checkout/sessions/{id}/pay` `{"outcome": "paid" | "async_pending" |
//! "async_succeeded" | "async_failed" | "expired"}` (see [`Outcome`]),
//! `GET /_emulator/sessions`, `GET /_emulator/stats`, `GET /_emulator/events`,
//! `GET /_emulator/requests` (requests and rate-limited answers per second),
//! `GET|PUT /_emulator/faults`, `GET|PUT /_emulator/webhook`.
//!
//! Sessions and events are rendered in the shape Stripe gives them for the
//! API version async-stripe pins ([`session::API_VERSION`], see
//! [`session::Session::to_json`]).
//!
//! Webhooks: Stripe event JSON (`evt_...`, `object: "event"`, `type`,
//! `data.object` = the full session, `created`, `livemode`, `api_version`,
//! `pending_webhooks`, `request`) POSTed with `Stripe-Signature: t=..,v1=..`
//! (HMAC-SHA256 of `{t}.{payload}` with the webhook secret, hex), retried with
//! doubling backoff on non-2xx / connection errors, in the background. Events
//! of one session go out in order unless the out-of-order fault is on.
//!
//! # Configuration ([`Config::from_env`])
//! `STRIPE_EMULATOR_LISTEN` (127.0.0.1:12111), `STRIPE_EMULATOR_PUBLIC_URL`
//! (http://{bound addr}), `STRIPE_EMULATOR_WEBHOOK_URL` (unset),
//! `STRIPE_WEBHOOK_SECRET` ([`config::DEFAULT_WEBHOOK_SECRET`]),
//! `STRIPE_EMULATOR_API_KEY` (unset: any test key), `STRIPE_EMULATOR_SESSION_LIFETIME_SECS`
//! (86400), `STRIPE_EMULATOR_RATE_LIMIT` (requests per second per secret key, 429
//! `rate_limit` beyond it in fixed one-second windows; unset/0: off, see [`rate_limit`]),
//! `STRIPE_EMULATOR_WEBHOOK_MAX_ATTEMPTS` (20),
//! `..._WEBHOOK_RETRY_BASE_MS` (100), `..._WEBHOOK_RETRY_MAX_MS` (2000),
//! `..._WEBHOOK_TIMEOUT_MS` (10000), `..._WEBHOOK_HOLD_MS` (1000); faults:
//! `STRIPE_EMULATOR_LATENCY_MS` (before the call runs), `STRIPE_EMULATOR_LATENCY_AFTER_MS`
//! (after it ran: a client timeout leaves the session behind), `STRIPE_EMULATOR_RATE_429`, `STRIPE_EMULATOR_RATE_500`,
//! `STRIPE_EMULATOR_WEBHOOK_DUPLICATE_RATE`, `..._OUT_OF_ORDER_RATE`,
//! `..._BAD_SIGNATURE_RATE`, `..._STALE_TIMESTAMP_RATE`, `..._LOST_RATE` (a share of
//! sessions whose every webhook is lost) (all 0).
//!
//! # Layout
//! - [`config`]: `Config`, `Faults`, `DeliveryPolicy`, read from the environment.
//! - [`error`]: Stripe's error JSON (`ApiError`) and the start-up `Error`.
//! - [`form`]: bracketed form-encoding parser.
//! - [`known_params`]: the parameters each route accepts; others get 400 `parameter_unknown`.
//! - [`create_params`]: create-session parameter validation, Stripe's way.
//! - [`session`]: the Checkout Session, its state machine and JSON.
//! - [`idempotency`]: saved responses by `Idempotency-Key`.
//! - [`rate_limit`]: the account rate limit and the per-second request log.
//! - [`state`]: shared state (`App`): sessions, faults, webhook endpoint, outbox.
//! - [`stats`]: counters for tests.
//! - [`api`]: the `/v1` routes, one file each, behind the fault/auth gate.
//! - [`hosted_page`]: the page at `/pay/{id}`.
//! - [`control`]: the test API under `/_emulator`.
//! - [`webhook`]: event JSON and signing, ordered dispatch, delivery with retries.
//!
//! Linked use goes through [`Emulator`] (`build`, `addr`, `api_base`, `handle`,
//! `run_until_stopped`) and [`Handle`] (`set_webhook`, `faults`, `set_faults`,
//! `pay`, `sessions`, `stats`, `events`, which mirror the control API, and
//! `api_requests_per_second`, `rate_limited_per_second`, `set_rate_limit` for
//! the account rate limit).

#![recursion_limit = "256"]

pub mod api;
pub mod config;
pub mod control;
pub mod create_params;
pub mod error;
pub mod form;
pub mod hosted_page;
pub mod idempotency;
pub mod known_params;
pub mod rate_limit;
pub mod session;
pub mod state;
pub mod stats;
pub mod webhook;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use checkout_contract::secret::Secret;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

pub use config::{Config, DeliveryPolicy, Faults};
pub use error::{ApiError, Error};
pub use session::Outcome;
pub use state::{SessionSummary, SessionsReport};
pub use stats::StatsSnapshot;
pub use webhook::EventRecord;

use state::App;
use webhook::Event;
use webhook::event::Cause;

/// A bound, not yet serving emulator.
pub struct Emulator {
    listener: TcpListener,
    addr: SocketAddr,
    app: Arc<App>,
    events: mpsc::UnboundedReceiver<Event>,
}

/// A cheap, cloneable handle to a running emulator's state, for the
/// launcher and tests that link the crate (the same things the control API does).
#[derive(Clone)]
pub struct Handle {
    app: Arc<App>,
}

impl Emulator {
    /// Binds `config.listen` and prepares the state.
    ///
    /// # Errors
    /// When the address cannot be bound, the HTTP client cannot be built, or
    /// a fault rate is outside `0..=1`.
    pub async fn build(config: Config) -> Result<Self, Error> {
        let bad = config.faults.invalid_rates();
        if !bad.is_empty() {
            return Err(Error::Faults(bad));
        }
        let (listener, addr) = checkout_contract::http_server::bind(config.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: config.listen,
                source,
            })?;
        let public_base = config
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{addr}"));
        // No proxy: webhook endpoints are local, and a proxy from the
        // environment must not swallow them.
        let http = reqwest::Client::builder().no_proxy().build()?;
        let (outbox, events) = webhook::Outbox::new();
        let app = App::new(&config, public_base, outbox, http);
        Ok(Self {
            listener,
            addr,
            app: Arc::new(app),
            events,
        })
    }

    /// The bound address (the real port when built with port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL for `stripe::ClientBuilder::url` / `STRIPE_API_BASE`:
    /// `http://127.0.0.1:PORT/` (trailing slash).
    pub fn api_base(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn handle(&self) -> Handle {
        Handle {
            app: self.app.clone(),
        }
    }

    /// Serves until `shutdown` resolves, then stops webhook delivery.
    ///
    /// # Errors
    /// When the server fails.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let Self {
            listener,
            addr,
            app,
            events,
        } = self;
        let dispatcher = tokio::spawn(webhook::dispatch::run(app.clone(), events));
        let expiry = tokio::spawn(expire_sessions(app.clone()));
        let router = api::router(app.clone())
            .merge(control::router(app.clone()))
            .merge(hosted_page::router(app.clone()))
            .fallback(api::unrecognized);
        tracing::info!(%addr, "stripe emulator listening");
        // Small responses go out at once, not after a delayed ACK.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let served = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        app.stop();
        let _ = dispatcher.await;
        let _ = expiry.await;
        served
    }
}

/// Expires overdue sessions every half second until the emulator stops.
async fn expire_sessions(app: Arc<App>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let expired = app.expire_overdue(chrono::Utc::now().timestamp());
                if expired > 0 {
                    tracing::info!(expired, "sessions expired");
                }
            }
            () = app.stopped() => break,
        }
    }
}

impl Handle {
    /// Sets the webhook endpoint (`None` stops deliveries; they are retried
    /// until one is set or attempts run out) and, if given, the signing secret.
    pub fn set_webhook(&self, url: Option<String>, secret: Option<String>) {
        self.app.set_webhook_endpoint(url, secret.map(Secret::new));
    }

    pub fn faults(&self) -> Faults {
        self.app.faults()
    }

    /// Replaces the injected faults.
    ///
    /// # Errors
    /// The names of rates outside `0..=1`; nothing changes then.
    pub fn set_faults(&self, faults: Faults) -> Result<(), Vec<&'static str>> {
        self.app.set_faults(faults)
    }

    /// Finishes a session the way a customer would, and queues its webhooks.
    ///
    /// # Errors
    /// 404 for an unknown session, 400 when its state forbids `outcome`.
    pub fn pay(&self, session_id: &str, outcome: Outcome) -> Result<serde_json::Value, ApiError> {
        self.app.apply(session_id, outcome, &Cause::default())
    }

    /// Does the lost-webhook fault (at its current rate) swallow every
    /// webhook of `session_id`?
    pub fn webhooks_lost(&self, session_id: &str) -> bool {
        webhook::is_lost(session_id, self.faults().webhook_lost_rate)
    }

    pub fn sessions(&self) -> SessionsReport {
        self.app.sessions_report()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.app.stats.snapshot()
    }

    pub fn events(&self) -> Vec<EventRecord> {
        self.app.outbox.records()
    }

    /// How many `/v1` API requests arrived in each whole second since the
    /// emulator was built: index `i` counts `[i s, i+1 s)`, the last entry
    /// is the second in progress. Every request counts, whatever its answer
    /// (401, 400, 500, and the ones refused with 429, by the account limit or
    /// the injected fault), over all keys. The account rate limit uses the
    /// same windows, so a client pool that keeps to a shared budget of `n`
    /// per second shows `n` or fewer in every entry.
    pub fn api_requests_per_second(&self) -> Vec<u32> {
        self.app.rate_limiter.requests_per_second()
    }

    /// [`Handle::api_requests_per_second`] for each accepted secret key
    /// (401s are in the total only).
    pub fn api_requests_per_second_by_key(&self) -> std::collections::BTreeMap<String, Vec<u32>> {
        self.app.rate_limiter.requests_per_second_by_key()
    }

    /// Of [`Handle::api_requests_per_second`], how many were answered 429
    /// `rate_limit` by the account limit (`STRIPE_EMULATOR_RATE_LIMIT`) in
    /// each second, same indexing. The total is `stats().rate_limited`.
    pub fn rate_limited_per_second(&self) -> Vec<u32> {
        self.app.rate_limiter.limited_per_second()
    }

    /// The account rate limit in requests per second per key (`None`: off).
    pub fn rate_limit(&self) -> Option<u32> {
        self.app.rate_limiter.limit()
    }

    /// Changes the account rate limit from now on (`None` or 0: off).
    pub fn set_rate_limit(&self, per_second: Option<u32>) {
        self.app.rate_limiter.set_limit(per_second);
    }
}
