//! The handler of one `checkout.requests` message: parse, validate, create
//! the Checkout Session, publish the outcome on `checkout.finished`.
//!
//! [`RequestHandler::handle`] returns an [`Outcome`] once the outcome is
//! durable (acknowledged by the broker), so the worker may then store the
//! message's offset. Only a refused API key ([`HandleError::StripeUnauthorized`])
//! leaves a message unhandled: every other request would fail the same way,
//! so the worker stops instead of answering each with `failed`.
//!
//! Poison messages go through [`crate::dlq`]. The concurrency and offset
//! bookkeeping around this live in [`crate::worker`].

use std::sync::Arc;
use std::time::Duration;

use checkout_contract::kafka::{Delivered, HEADER_TRACEPARENT, header, send_json};
use checkout_contract::topics::Topics;
use checkout_contract::trace::TraceContext;
use checkout_contract::{
    CheckoutFinishedEvent, CheckoutRequestEvent, CheckoutStatus, HostAllowlist, RequestId,
};
use rdkafka::Message;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::FutureProducer;
use tracing::Instrument as _;

use crate::dlq;
use crate::retry::RetryPolicy;
use crate::stripe::{CreateError, Stripe};

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `session_created` published.
    SessionCreated {
        request_id: String,
        session_id: String,
    },
    /// `failed` published (invalid input, permanent Stripe error, retries used up).
    Failed { request_id: String, error: String },
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
}

/// Everything one message needs; shared by all in-flight messages.
pub struct RequestHandler {
    pub producer: FutureProducer,
    pub topics: Topics,
    pub stripe: Stripe,
    /// Hosts success_url and cancel_url may point at (no open redirect
    /// through our sessions, whoever produced the request).
    pub redirect_hosts: HostAllowlist,
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
    /// # Errors
    /// [`HandleError::StripeUnauthorized`]: the message stays unhandled.
    pub async fn handle(self: Arc<Self>, message: &OwnedMessage) -> Result<Outcome, HandleError> {
        let payload = message.payload().unwrap_or_default();
        let parsed: Result<CheckoutRequestEvent, _> = serde_json::from_slice(payload);
        let request_id = match &parsed {
            Ok(request) => Some(request.request_id.clone()),
            Err(_) => dlq::recover_request_id(payload),
        };
        // The caller's trace (the gateway's span), or one derived from the
        // request_id: the session metadata must be the same on every redelivery.
        let parent = header(message, HEADER_TRACEPARENT)
            .and_then(TraceContext::parse)
            .or_else(|| {
                let id = RequestId::parse(request_id.as_deref()?).ok()?;
                Some(TraceContext::for_request(&id))
            });
        let trace = parent.map_or_else(TraceContext::new_root, |p| p.child());
        let span = tracing::info_span!(
            "checkout_request",
            request_id = tracing::field::Empty,
            trace_id = tracing::field::Empty
        );
        if let Some(id) = &request_id {
            span.record("request_id", tracing::field::display(id));
        }
        // A poison message without a request_id nor a trace is about no checkout.
        if request_id.is_some() || parent.is_some() {
            span.record("trace_id", tracing::field::display(trace.trace_id()));
        }
        let handled = async {
            let handled = match parsed {
                Ok(request) => self.handle_request(request, parent, trace).await,
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
                tracing::debug!(?outcome, "handled");
            }
            handled
        };
        handled.instrument(span).await
    }

    async fn handle_request(
        &self,
        request: CheckoutRequestEvent,
        parent: Option<TraceContext>,
        trace: TraceContext,
    ) -> Result<Outcome, HandleError> {
        let checked = request
            .validate()
            .and_then(|v| self.redirect_hosts.check_request(&v).map(|()| v));
        let valid = match checked {
            Ok(valid) => valid,
            Err(e) => {
                let error = format!("invalid checkout request: {e}");
                tracing::warn!(request_id = %request.request_id, %error, "rejecting request");
                self.publish(&failed(&request, &error), Some(&trace)).await;
                return Ok(Outcome::Failed {
                    request_id: request.request_id,
                    error,
                });
            }
        };

        let traceparent = parent.map(|p| p.header());
        match self
            .stripe
            .create_session(&valid, traceparent.as_deref())
            .await
        {
            Ok(session) => {
                let mut event =
                    CheckoutFinishedEvent::for_request(&request, CheckoutStatus::SessionCreated);
                event.session_id = Some(session.id.clone());
                event.session_url = session.url;
                self.publish(&event, Some(&trace)).await;
                tracing::info!(request_id = %request.request_id, session_id = %session.id, "session created");
                Ok(Outcome::SessionCreated {
                    request_id: request.request_id,
                    session_id: session.id,
                })
            }
            Err(CreateError::Unauthorized { status, message }) => {
                tracing::error!(
                    request_id = %request.request_id, status, error = %message,
                    "STRIPE REFUSED OUR API KEY: check STRIPE_SECRET_KEY; the worker stops consuming"
                );
                Err(HandleError::StripeUnauthorized(format!(
                    "{status}: {message}"
                )))
            }
            Err(e @ (CreateError::Rejected { .. } | CreateError::GaveUp { .. })) => {
                let error = e.to_string();
                tracing::warn!(request_id = %request.request_id, %error, "checkout failed");
                self.publish(&failed(&request, &error), Some(&trace)).await;
                Ok(Outcome::Failed {
                    request_id: request.request_id,
                    error,
                })
            }
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
            self.publish(&event, Some(trace)).await;
        }
        let mut attempt = 0;
        while let Err(e) =
            dlq::forward(&self.producer, &self.topics.requests_dlq, message, &reason).await
        {
            attempt += 1;
            tracing::warn!(error = %e, attempt, "cannot copy the message to the dead-letter topic yet");
            tokio::time::sleep(PUBLISH_RETRY.backoff(attempt)).await;
        }
        Outcome::DeadLettered { request_id, reason }
    }

    /// Publishes to `checkout.finished`, retrying until the broker acknowledges.
    async fn publish(
        &self,
        event: &CheckoutFinishedEvent,
        trace: Option<&TraceContext>,
    ) -> Delivered {
        let traceparent = trace.map(TraceContext::header);
        let headers: Vec<(&str, &str)> = traceparent
            .iter()
            .map(|t| (HEADER_TRACEPARENT, t.as_str()))
            .collect();
        let mut attempt = 0;
        loop {
            match send_json(
                &self.producer,
                &self.topics.finished,
                &event.request_id,
                event,
                &headers,
            )
            .await
            {
                Ok(delivered) => return delivered,
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
