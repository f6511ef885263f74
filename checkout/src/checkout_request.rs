//! The handler of one `checkout.requests` message: parse, validate, create
//! the Checkout Session, publish the outcome on `checkout.finished`.
//!
//! [`RequestHandler::handle`] returns an [`Outcome`] once the outcome is
//! durable (acknowledged by the broker), so the worker may then store the
//! message's offset. Only a refused API key ([`HandleError::StripeUnauthorized`])
//! leaves a message unhandled: every other request would fail the same way,
//! so the worker stops instead of answering each with `failed`.
//!
//! One session per request, and never a false `failed`:
//! - The create call is the same for every copy of a request
//!   ([`crate::stripe::session_params`]), under the key `checkout:{request_id}`.
//! - Stripe unavailable (5xx, 429, timeouts) is not an answer: the request
//!   waits and retries with capped backoff, its offset held, until Stripe
//!   answers (or the worker stops; it is then redelivered). When the key
//!   answers with a conflict (`idempotency_error`) or a saved 500, the
//!   request's session is looked up and its state published
//!   ([`crate::stripe_event::from_session`]); a saved 500 with no session
//!   moves on to the key's next generation.
//! - A request older than [`REQUEST_TTL`] (inside Stripe's 24 h key window)
//!   is never created any more: its session is looked up, and without one it
//!   gets `failed` "request expired before a session was created".
//!
//! Poison messages go through [`crate::dlq`]. The concurrency and offset
//! bookkeeping around this live in [`crate::worker`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

use checkout_contract::inbound::Inbound;
use checkout_contract::kafka::{Delivered, send_traced};
use checkout_contract::metrics::dead_letter_reason;
use checkout_contract::shutdown::Stopping;
use checkout_contract::topics::Topics;
use checkout_contract::trace::TraceContext;
use checkout_contract::{
    CheckoutFinishedEvent, CheckoutRequestEvent, CheckoutStatus, HostAllowlist,
    ValidCheckoutRequest,
};
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use tracing::Instrument as _;

use crate::dlq;
use crate::metrics::Metrics;
use crate::retry::RetryPolicy;
use crate::stripe::{CallError, CreateError, CreatedSession, Stripe};
use crate::stripe_event::{SessionState, from_session};

/// How old a request may be and still create a session. Stripe keeps an
/// idempotency key for 24 h; after that, the same key would open a second
/// session. The hour of margin covers clock skew between the gateway (the
/// request's timestamp) and us, and a create call in flight at the limit.
pub const REQUEST_TTL: TimeDelta = TimeDelta::hours(23);
/// How long before a request's timestamp its session is looked for (the
/// gateway's clock against Stripe's `created`).
pub const LOOKUP_SLACK: TimeDelta = TimeDelta::hours(1);
/// The `failed` answer of a request that outlived [`REQUEST_TTL`] without a session.
pub const EXPIRED_BEFORE_SESSION: &str = "request expired before a session was created";

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `session_created` published.
    SessionCreated {
        request_id: String,
        session_id: String,
    },
    /// `failed` published (invalid input, a permanent Stripe error, or a
    /// request that expired before a session was created).
    Failed { request_id: String, error: String },
    /// The request's session already existed and had finished: its `success`
    /// or `failed` (the event the webhook publishes) was published.
    Settled {
        request_id: String,
        session_id: String,
        status: CheckoutStatus,
    },
    /// The request's session already existed and nothing can be said yet
    /// (an asynchronous payment settling, or a session without our
    /// metadata): nothing published; the webhook or reconciliation will.
    NothingYet {
        request_id: String,
        session_id: String,
        reason: &'static str,
    },
    /// Not a request at all: copied to the dead-letter topic (and `failed`
    /// published when a request_id could be recovered).
    DeadLettered {
        request_id: Option<String>,
        reason: String,
    },
}

/// A message that must not be marked handled.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    /// 401/403 from Stripe: a configuration fault; stop consuming.
    #[error("Stripe refused the API key: {0}")]
    StripeUnauthorized(String),
    /// The worker is stopping while the request waits for Stripe to come
    /// back: nothing was published; the request is redelivered.
    #[error("stopping while waiting on Stripe")]
    Stopping,
}

/// Everything one message needs; shared by all in-flight messages.
pub struct RequestHandler {
    pub producer: FutureProducer,
    pub topics: Topics,
    pub stripe: Stripe,
    /// Hosts success_url and cancel_url may point at (no open redirect
    /// through our sessions, whoever produced the request).
    pub redirect_hosts: HostAllowlist,
    /// Outcomes published, handling times, dead letters.
    pub metrics: Arc<Metrics>,
}

/// How patiently a publish is retried while the broker is unreachable
/// (forever: the message is not done until its outcome is on Kafka; the
/// worker's shutdown grace period bounds it).
const PUBLISH_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    base: Duration::from_millis(100),
    max: Duration::from_secs(5),
};

impl RequestHandler {
    /// Handles one message until its outcome is durable.
    /// Every line about the message is logged in one span with its
    /// request_id and trace_id, poison messages included when a request_id
    /// can be recovered from them.
    ///
    /// `stopping` says stop when the worker stops: a request waiting for
    /// Stripe to come back then gives up.
    ///
    /// # Errors
    /// [`HandleError::StripeUnauthorized`] and [`HandleError::Stopping`]:
    /// the message stays unhandled.
    pub async fn handle(
        self: Arc<Self>,
        message: &OwnedMessage,
        stopping: Stopping,
    ) -> Result<Outcome, HandleError> {
        let consumed = Instant::now();
        let payload = message.payload().unwrap_or_default();
        let parsed: Result<CheckoutRequestEvent, _> = serde_json::from_slice(payload);
        // The caller's trace (the gateway's span), or one derived from the
        // request_id. It travels on the published events' headers only:
        // nothing of it goes to Stripe, whose call must be the same for every copy.
        let inbound = match &parsed {
            Ok(request) => Inbound::read_parsed(message, Some(&request.request_id)),
            Err(_) => Inbound::read(message),
        };
        // A poison message without a request_id nor a trace is about no checkout.
        let span = checkout_contract::inbound_span!("checkout_request", inbound);
        let trace = TraceContext::continue_in(inbound.trace(), &span);
        let handled = async {
            let handled = match parsed {
                Ok(request) => self.handle_request(request, trace, stopping).await,
                Err(e) => {
                    let reason = if payload.is_empty() {
                        "empty message".to_owned()
                    } else {
                        format!("not a checkout request: {e}")
                    };
                    Ok(self.dead_letter(message, reason, &trace).await)
                }
            };
            if let Ok(outcome) = &handled {
                self.metrics.request_handled(consumed.elapsed());
                tracing::debug!(?outcome, "handled");
            }
            handled
        };
        handled.instrument(span).await
    }

    async fn handle_request(
        &self,
        request: CheckoutRequestEvent,
        trace: TraceContext,
        stopping: Stopping,
    ) -> Result<Outcome, HandleError> {
        let checked = request
            .validate()
            .and_then(|v| self.redirect_hosts.check_request(&v).map(|()| v));
        let valid = match checked {
            Ok(valid) => valid,
            Err(e) => {
                let error = format!("invalid checkout request: {e}");
                tracing::warn!(request_id = %request.request_id, %error, "rejecting request");
                return Ok(self.fail(&request, error, &trace).await);
            }
        };

        match self.session_for(&valid, stopping).await? {
            Answer::Created(session) => {
                let mut event =
                    CheckoutFinishedEvent::for_request(&request, CheckoutStatus::SessionCreated);
                event.session_id = Some(session.id.clone());
                event.session_url = session.url;
                self.publish(&event, &trace).await;
                tracing::info!(request_id = %request.request_id, session_id = %session.id, "session created");
                Ok(Outcome::SessionCreated {
                    request_id: request.request_id,
                    session_id: session.id,
                })
            }
            Answer::Found(session) => Ok(self.publish_state(&request, &session, &trace).await),
            Answer::Rejected(error) => {
                tracing::warn!(request_id = %request.request_id, %error, "checkout failed");
                Ok(self.fail(&request, error, &trace).await)
            }
            Answer::ExpiredWithoutSession => {
                tracing::warn!(
                    request_id = %request.request_id, timestamp = %request.timestamp,
                    "request older than Stripe's idempotency window and no session for it: failing it instead of opening one"
                );
                Ok(self
                    .fail(&request, EXPIRED_BEFORE_SESSION.to_owned(), &trace)
                    .await)
            }
        }
    }

    /// Asks Stripe until it gives a definite answer about the request's
    /// session. Stripe being unavailable is no answer: wait and ask again
    /// (capped backoff), for as long as it takes. The first round runs to its
    /// end like any in-flight request; once the request waits, `stopping`
    /// ends the wait at once ([`HandleError::Stopping`]: redelivered later).
    async fn session_for(
        &self,
        request: &ValidCheckoutRequest,
        mut stopping: Stopping,
    ) -> Result<Answer, HandleError> {
        let request_id = request.request_id.to_string();
        let mut generation = 0;
        let mut round = 0;
        loop {
            let ask = self.ask(request, &request_id, generation);
            let step = if round == 0 {
                ask.await?
            } else {
                tokio::select! {
                    step = ask => step?,
                    () = stopping.stopped() => return Err(HandleError::Stopping),
                }
            };
            let waiting_on = match step {
                Step::Answer(answer) => return Ok(answer),
                Step::NextKey(last) => {
                    generation += 1;
                    tracing::warn!(
                        %request_id, generation, error = %last,
                        "Stripe saved a 500 under the key and no session exists: moving on to the next key"
                    );
                    continue;
                }
                Step::Wait(reason) => reason,
            };
            round += 1;
            let wait = self.stripe.retry_policy().backoff(round);
            tracing::warn!(
                %request_id, round, error = %waiting_on, wait_ms = wait.as_millis(),
                "Stripe gave no answer about the session yet: waiting (offset held, nothing published)"
            );
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = stopping.stopped() => return Err(HandleError::Stopping),
            }
        }
    }

    /// One round of [`Self::session_for`]: create under the key of
    /// `generation` (or, for an expired request, only look), and look the
    /// session up when the create call's answer leaves it unknown.
    async fn ask(
        &self,
        request: &ValidCheckoutRequest,
        request_id: &str,
        generation: u32,
    ) -> Result<Step, HandleError> {
        let created_after = request.timestamp - LOOKUP_SLACK;
        if expired(request.timestamp, Utc::now()) {
            return Ok(match self.find(request_id, created_after).await? {
                Some(Ok(session)) => Step::Answer(Answer::Found(session)),
                Some(Err(e)) => Step::Wait(e),
                None => Step::Answer(Answer::ExpiredWithoutSession),
            });
        }
        let (unknown, key_spent) = match self.stripe.create_session(request, generation).await {
            Ok(session) => return Ok(Step::Answer(Answer::Created(session))),
            Err(CreateError::Unauthorized { status, message }) => {
                return Err(unauthorized(request_id, status, &message));
            }
            Err(e @ CreateError::Rejected { .. }) => {
                return Ok(Step::Answer(Answer::Rejected(e.to_string())));
            }
            Err(CreateError::KeyConflict { message }) => {
                tracing::warn!(
                    %request_id, error = %message,
                    "the idempotency key was used with other parameters: looking for the request's session"
                );
                let reason = format!("{message}; no session listed for the request yet");
                (reason, false)
            }
            // Maybe it worked (a timeout after Stripe created it): look.
            Err(CreateError::GaveUp {
                last, key_spent, ..
            }) => (last, key_spent),
        };
        Ok(match self.find(request_id, created_after).await? {
            Some(Ok(session)) => Step::Answer(Answer::Found(session)),
            Some(Err(e)) => Step::Wait(format!("{unknown}; lookup: {e}")),
            None if key_spent => Step::NextKey(unknown),
            None => Step::Wait(unknown),
        })
    }

    /// The request's session, if Stripe lists one: `Some(Err)` when the
    /// lookup itself could not be done now.
    async fn find(
        &self,
        request_id: &str,
        created_after: DateTime<Utc>,
    ) -> Result<Option<Result<Box<stripe_shared::CheckoutSession>, String>>, HandleError> {
        match self
            .stripe
            .find_session_for_request(request_id, created_after)
            .await
        {
            Ok(Some(session)) => Ok(Some(Ok(Box::new(session)))),
            Ok(None) => Ok(None),
            Err(CallError::Unauthorized { status, message }) => {
                Err(unauthorized(request_id, status, &message))
            }
            // A 4xx of a list call is no statement about the request: wait like for a 5xx.
            Err(e) => Ok(Some(Err(e.to_string()))),
        }
    }

    /// Publishes what an existing session of the request means now.
    async fn publish_state(
        &self,
        request: &CheckoutRequestEvent,
        session: &stripe_shared::CheckoutSession,
        trace: &TraceContext,
    ) -> Outcome {
        let request_id = request.request_id.clone();
        let session_id = session.id.as_str().to_owned();
        match from_session(session) {
            SessionState::Open { event, .. } => {
                self.publish(&event, trace).await;
                tracing::info!(%request_id, %session_id, "the request's session already exists and is open: session_created");
                Outcome::SessionCreated {
                    request_id,
                    session_id,
                }
            }
            SessionState::Finished(event) => {
                self.publish(&event, trace).await;
                tracing::info!(%request_id, %session_id, status = %event.status, "the request's session already finished: published its outcome");
                Outcome::Settled {
                    request_id,
                    session_id,
                    status: event.status,
                }
            }
            SessionState::Pending => {
                let reason = "complete, payment still settling";
                tracing::info!(%request_id, %session_id, reason, "the request's session exists: nothing to publish yet");
                Outcome::NothingYet {
                    request_id,
                    session_id,
                    reason,
                }
            }
            SessionState::Unusable(reason) => {
                tracing::error!(%request_id, %session_id, reason, "the request's session exists but cannot be read: nothing published, look at it in Stripe");
                Outcome::NothingYet {
                    request_id,
                    session_id,
                    reason,
                }
            }
        }
    }

    async fn fail(
        &self,
        request: &CheckoutRequestEvent,
        error: String,
        trace: &TraceContext,
    ) -> Outcome {
        self.publish(&failed(request, &error), trace).await;
        Outcome::Failed {
            request_id: request.request_id.clone(),
            error,
        }
    }

    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: String,
        trace: &TraceContext,
    ) -> Outcome {
        let request_id = dlq::recover_request_id(message.payload().unwrap_or_default());
        tracing::warn!(
            partition = message.partition(), offset = message.offset(), %reason,
            "poison message: dead-lettering"
        );
        // The `failed` answer travels on under the message's trace.
        if let Some(event) = dlq::failed_event(message.payload().unwrap_or_default(), &reason) {
            self.publish(&event, trace).await;
        }
        let mut attempt = 0;
        while let Err(e) =
            dlq::forward(&self.producer, &self.topics.requests_dlq, message, &reason).await
        {
            attempt += 1;
            tracing::warn!(error = %e, attempt, "cannot copy the message to the dead-letter topic yet");
            tokio::time::sleep(PUBLISH_RETRY.backoff(attempt)).await;
        }
        self.metrics
            .dead_lettered(dead_letter_reason(message.payload()));
        Outcome::DeadLettered { request_id, reason }
    }

    /// Publishes to `checkout.finished`, retrying until the broker acknowledges.
    async fn publish(&self, event: &CheckoutFinishedEvent, trace: &TraceContext) -> Delivered {
        let mut attempt = 0;
        loop {
            match send_traced(
                &self.producer,
                &self.topics.finished,
                &event.request_id,
                event,
                trace,
                &[],
            )
            .await
            {
                Ok(delivered) => {
                    self.metrics.published(event.status);
                    return delivered;
                }
                Err(e) => {
                    attempt += 1;
                    tracing::warn!(request_id = %event.request_id, error = %e, attempt, "cannot publish yet, retrying");
                    tokio::time::sleep(PUBLISH_RETRY.backoff(attempt)).await;
                }
            }
        }
    }
}

fn failed(request: &CheckoutRequestEvent, error: &str) -> CheckoutFinishedEvent {
    let mut event = CheckoutFinishedEvent::for_request(request, CheckoutStatus::Failed);
    event.error_message = Some(error.to_owned());
    event
}

/// What one round of asking Stripe came to.
enum Step {
    Answer(Answer),
    /// The key holds Stripe's saved 500 and no session exists: the next generation.
    NextKey(String),
    /// No answer now (why): wait and ask again.
    Wait(String),
}

/// Stripe's definite answer about a request's session.
enum Answer {
    Created(CreatedSession),
    /// A session of the request exists already (a conflict, a lost answer, or an old request).
    Found(Box<stripe_shared::CheckoutSession>),
    /// A permanent error: the request itself is wrong for Stripe.
    Rejected(String),
    /// Older than [`REQUEST_TTL`] and Stripe lists no session for it.
    ExpiredWithoutSession,
}

/// Whether a request made at `timestamp` is too old to create a session at `now`.
pub fn expired(timestamp: DateTime<Utc>, now: DateTime<Utc>) -> bool {
    now - timestamp > REQUEST_TTL
}

fn unauthorized(request_id: &str, status: u16, message: &str) -> HandleError {
    tracing::error!(
        %request_id, status, error = %message,
        "STRIPE REFUSED OUR API KEY: check STRIPE_SECRET_KEY; the worker stops consuming"
    );
    HandleError::StripeUnauthorized(format!("{status}: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_may_create_a_session_for_23_hours() {
        let made = DateTime::parse_from_rfc3339("2024-01-15T10:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert!(!expired(made, made));
        assert!(!expired(made, made + TimeDelta::hours(23)));
        assert!(expired(
            made,
            made + TimeDelta::hours(23) + TimeDelta::seconds(1)
        ));
        assert!(
            expired(made, made + TimeDelta::hours(24)),
            "past Stripe's key window"
        );
        // A gateway clock ahead of ours is no reason to refuse.
        assert!(!expired(made, made - TimeDelta::minutes(5)));
    }
}
