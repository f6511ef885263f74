//! The emulator's shared state ([`App`]): sessions, saved idempotent
//! responses, counters, the runtime-changeable faults and webhook endpoint,
//! and the event outbox. Every route and the webhook tasks hold an `Arc<App>`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use checkout_contract::secret::Secret;
use checkout_contract::shutdown::Stop;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{Config, DeliveryPolicy, Faults};
use crate::error::ApiError;
use crate::idempotency;
use crate::rate_limit::RateLimiter;
use crate::session::{NewSession, Outcome, PaymentStatus, Session, Status};
use crate::stats::Stats;
use crate::webhook::event::Cause;
use crate::webhook::{Event, Outbox};

/// Objects (sessions) a request is working on: Stripe's object locks. A
/// second request that needs the same object meanwhile is answered 429
/// `lock_timeout` at once (Stripe waits a little first).
#[derive(Debug, Default)]
pub struct ObjectLocks(Arc<Mutex<HashSet<String>>>);

/// One held object lock; dropping it frees the object.
#[derive(Debug)]
pub struct ObjectLock {
    locks: Arc<Mutex<HashSet<String>>>,
    id: String,
}

impl ObjectLocks {
    /// The lock of object `id`, unless another request holds it.
    pub fn try_lock(&self, id: &str) -> Option<ObjectLock> {
        let mut held = self.0.lock().expect("object locks");
        held.insert(id.to_owned()).then(|| ObjectLock {
            locks: self.0.clone(),
            id: id.to_owned(),
        })
    }
}

impl Drop for ObjectLock {
    fn drop(&mut self) {
        if let Ok(mut held) = self.locks.lock() {
            held.remove(&self.id);
        }
    }
}

/// True with probability `rate`.
pub fn roll(rate: f64) -> bool {
    rate > 0.0 && (rate >= 1.0 || rand::random::<f64>() < rate)
}

/// All sessions, in creation order.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: HashMap<String, Session>,
    order: Vec<String>,
}

/// One row of `GET /_emulator/sessions`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub id: String,
    pub status: Status,
    pub payment_status: PaymentStatus,
    pub client_reference_id: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub amount_total: i64,
    pub currency: String,
    pub payment_intent: Option<String>,
    /// The `Idempotency-Key` of the request that created the session.
    pub idempotency_key: Option<String>,
    pub url: String,
    pub created: i64,
}

/// The JSON of `GET /_emulator/sessions`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionsReport {
    pub sessions: Vec<SessionSummary>,
    /// Sessions created per idempotency key (1 everywhere when clients retry correctly).
    pub created_per_idempotency_key: BTreeMap<String, u64>,
    /// Sessions created per `client_reference_id` (the checkout worker puts the request_id there).
    pub created_per_client_reference_id: BTreeMap<String, u64>,
}

/// The webhook endpoint; changeable at runtime.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: Option<String>,
    pub secret: Secret,
}

/// Shared state of one running emulator.
#[derive(Debug)]
pub struct App {
    /// Base of hosted-page URLs, no trailing slash.
    pub public_base: String,
    pub api_key: Option<Secret>,
    pub delivery: DeliveryPolicy,
    pub session_lifetime: Duration,
    pub sessions: Mutex<Sessions>,
    pub idempotency: idempotency::Store,
    /// The account rate limit and the per-second request log.
    pub rate_limiter: RateLimiter,
    /// Sessions a request is changing right now.
    pub object_locks: ObjectLocks,
    pub stats: Stats,
    pub outbox: Outbox,
    pub http: reqwest::Client,
    faults: RwLock<Faults>,
    endpoint: RwLock<Endpoint>,
    stop: Stop,
}

impl App {
    pub fn new(
        config: &Config,
        public_base: String,
        outbox: Outbox,
        http: reqwest::Client,
    ) -> Self {
        let endpoint = Endpoint {
            url: config.webhook_url.clone(),
            secret: config.webhook_secret.clone(),
        };
        Self {
            public_base,
            session_lifetime: config.session_lifetime,
            api_key: config.api_key.clone(),
            delivery: config.delivery,
            sessions: Mutex::new(Sessions::default()),
            idempotency: idempotency::Store::default(),
            rate_limiter: RateLimiter::new(config.rate_limit),
            object_locks: ObjectLocks::default(),
            stats: Stats::default(),
            outbox,
            http,
            faults: RwLock::new(config.faults),
            endpoint: RwLock::new(endpoint),
            stop: Stop::new(),
        }
    }

    pub fn faults(&self) -> Faults {
        *self.faults.read().expect("faults lock")
    }

    /// # Errors
    /// The names of rates outside `0..=1`; nothing changes then.
    pub fn set_faults(&self, faults: Faults) -> Result<(), Vec<&'static str>> {
        let bad = faults.invalid_rates();
        if !bad.is_empty() {
            return Err(bad);
        }
        *self.faults.write().expect("faults lock") = faults;
        Ok(())
    }

    pub fn webhook_endpoint(&self) -> (Option<String>, Secret) {
        let e = self.endpoint.read().expect("endpoint lock");
        (e.url.clone(), e.secret.clone())
    }

    pub fn set_webhook_endpoint(&self, url: Option<String>, secret: Option<Secret>) {
        let mut e = self.endpoint.write().expect("endpoint lock");
        e.url = url;
        if let Some(secret) = secret {
            e.secret = secret;
        }
    }

    /// Resolves once the emulator is stopping.
    pub async fn stopped(&self) {
        self.stop.stopping().stopped().await;
    }

    pub fn stop(&self) {
        self.stop.stop();
    }

    /// Creates and stores a session.
    pub fn create_session(&self, params: NewSession, idempotency_key: Option<String>) -> Value {
        let lifetime = i64::try_from(self.session_lifetime.as_secs()).unwrap_or(i64::MAX / 2);
        let session = Session::new(params, &self.public_base, lifetime, idempotency_key);
        let json = session.to_json();
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.order.push(session.id.clone());
        sessions.by_id.insert(session.id.clone(), session);
        Stats::inc(&self.stats.sessions_created);
        json
    }

    pub fn session_json(&self, id: &str) -> Option<Value> {
        self.sessions
            .lock()
            .expect("sessions lock")
            .by_id
            .get(id)
            .map(Session::to_json)
    }

    /// Copies of all sessions, newest first.
    pub fn sessions_newest_first(&self) -> Vec<Session> {
        let sessions = self.sessions.lock().expect("sessions lock");
        sessions
            .order
            .iter()
            .rev()
            .filter_map(|id| sessions.by_id.get(id).cloned())
            .collect()
    }

    /// A copy of one session.
    pub fn session(&self, id: &str) -> Option<Session> {
        self.sessions
            .lock()
            .expect("sessions lock")
            .by_id
            .get(id)
            .cloned()
    }

    /// Moves a session on and queues its webhook events (under the sessions
    /// lock, so events of one session are queued in the order they happened).
    ///
    /// # Errors
    /// 404 for an unknown session, 400 for a transition its state forbids.
    pub fn apply(&self, id: &str, outcome: Outcome, cause: &Cause) -> Result<Value, ApiError> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let session = sessions
            .by_id
            .get_mut(id)
            .ok_or_else(|| ApiError::no_such_session(id))?;
        let events = session
            .apply(outcome)
            .map_err(|e| ApiError::wrong_state(e.0))?;
        let json = session.to_json();
        for (type_, snapshot) in events {
            Stats::inc(&self.stats.events_created);
            self.outbox.push(Event::new(type_, snapshot, cause));
        }
        Ok(json)
    }

    /// Expires every open session whose `expires_at` has passed, with its
    /// `checkout.session.expired` event, like Stripe's own expiry. Returns how many.
    pub fn expire_overdue(&self, now: i64) -> usize {
        let overdue: Vec<String> = {
            let sessions = self.sessions.lock().expect("sessions lock");
            sessions
                .by_id
                .values()
                .filter(|s| s.status == Status::Open && s.expires_at <= now)
                .map(|s| s.id.clone())
                .collect()
        };
        // A session paid in between is simply skipped by the state machine.
        overdue
            .iter()
            .filter(|id| self.apply(id, Outcome::Expired, &Cause::default()).is_ok())
            .count()
    }

    pub fn sessions_report(&self) -> SessionsReport {
        let sessions = self.sessions.lock().expect("sessions lock");
        let mut report = SessionsReport::default();
        for s in sessions
            .order
            .iter()
            .filter_map(|id| sessions.by_id.get(id))
        {
            if let Some(k) = &s.idempotency_key {
                *report
                    .created_per_idempotency_key
                    .entry(k.clone())
                    .or_default() += 1;
            }
            if let Some(c) = &s.params.client_reference_id {
                *report
                    .created_per_client_reference_id
                    .entry(c.clone())
                    .or_default() += 1;
            }
            report.sessions.push(SessionSummary {
                id: s.id.clone(),
                status: s.status,
                payment_status: s.payment_status,
                client_reference_id: s.params.client_reference_id.clone(),
                metadata: s.params.metadata.clone(),
                amount_total: s.amount_total(),
                currency: s.params.currency.clone(),
                payment_intent: s.payment_intent.clone(),
                idempotency_key: s.idempotency_key.clone(),
                url: s.url.clone(),
                created: s.created,
            });
        }
        report
    }
}
