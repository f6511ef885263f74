//! The `checkout_finished` handler (seed:
//! `bootstrap/events/handlers/checkout_finished.rs`): what blazing_sun does
//! with each `checkout.finished` event.
//!
//! - `success` credits the balance exactly once per request_id (only for
//!   `balance_topup`; contradicting duplicates are flagged) — see `store/`.
//! - `failed` logs a warning and records the checkout as failed.
//! - `session_created` records the pending checkout with its session_url.
//! - Anything that is not a valid event is copied to `checkout.finished.dlq`
//!   with the reason in the `dlq-reason` header, and the partition moves on.
//!
//! [`CheckoutFinished::handle`] takes one polled batch and returns one
//! [`Outcome`] per message; the consumer loop (`events/consumer.rs`) stores
//! the offsets once it returned `Ok`, and tests drive it directly.
//!
//! Every line about one message is logged in its [`message_span`], with the
//! checkout's request_id and trace_id; a batch of one message (the usual
//! case when the topic is not backed up, and every retry of a message on
//! its own) runs the store in that span too.

use std::sync::Arc;
use std::time::Instant;

use checkout_contract::dead_letter::dead_letter;
use checkout_contract::inbound::Inbound;
use checkout_contract::metrics::dead_letter_reason;
use checkout_contract::{CheckoutFinishedEvent, ValidationError, inbound_span};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::producer::FutureProducer;
use tracing::{Instrument as _, Span};

use crate::metrics::{Metrics, REJECTED_BY_DATABASE};
use crate::outcome::Outcome;
use crate::store::{Store, StoreError};

/// Longer error messages are cut to this many characters.
const MAX_ERROR_MESSAGE_CHARS: usize = 2000;

/// Why a payload is not a valid `checkout.finished` event; its text is the
/// dead-letter reason.
#[derive(Debug, thiserror::Error)]
pub enum Malformed {
    #[error("empty payload")]
    Empty,
    #[error("not a checkout.finished event: {0}")]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Invalid(#[from] ValidationError),
}

/// Why a batch was not handled; nothing was committed and no offset may be stored.
#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot copy a malformed message to the dead-letter topic: {0}")]
    DeadLetter(#[from] rdkafka::error::KafkaError),
}

impl HandleError {
    /// The database refuses the batch's data for good (see
    /// [`StoreError::rejects_the_data`]); anything else is worth waiting for.
    pub fn rejects_the_data(&self) -> bool {
        matches!(self, Self::Store(e) if e.rejects_the_data())
    }
}

/// Handles `checkout.finished` messages.
#[derive(Clone)]
pub struct CheckoutFinished {
    store: Store,
    dlq_producer: FutureProducer,
    dlq_topic: String,
    metrics: Arc<Metrics>,
}

impl CheckoutFinished {
    pub fn new(
        store: Store,
        dlq_producer: FutureProducer,
        dlq_topic: impl Into<String>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            store,
            dlq_producer,
            dlq_topic: dlq_topic.into(),
            metrics,
        }
    }

    /// The counters this handler updates.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Handles one batch: malformed messages go to the dead-letter topic
    /// (acknowledged), every valid event is applied in ONE database
    /// transaction. Returns one outcome per message, in order.
    ///
    /// # Errors
    /// When the dead-letter topic or the database fails. Nothing was
    /// committed then; the caller retries the batch (a dead-lettered copy
    /// may then be sent twice, a credit never happens twice).
    pub async fn handle(&self, messages: &[OwnedMessage]) -> Result<Vec<Outcome>, HandleError> {
        let parsed: Vec<Result<CheckoutFinishedEvent, Malformed>> =
            messages.iter().map(|m| parse(m.payload())).collect();
        let spans: Vec<Span> = messages
            .iter()
            .zip(&parsed)
            .map(|(message, parsed)| {
                span_for(message, parsed.as_ref().ok().map(|e| e.request_id.as_str()))
            })
            .collect();

        let dead_letters =
            messages
                .iter()
                .zip(&parsed)
                .zip(&spans)
                .filter_map(|((message, parsed), span)| {
                    parsed.as_ref().err().map(|reason| {
                        let reason = reason.to_string();
                        async move { self.dead_letter(message, &reason).await }
                            .instrument(span.clone())
                    })
                });
        futures::future::try_join_all(dead_letters).await?;

        let valid: Vec<CheckoutFinishedEvent> = parsed
            .iter()
            .filter_map(|p| p.as_ref().ok().cloned())
            .collect();
        let applying = Instant::now();
        let applied = if let [span] = &spans[..] {
            self.store
                .apply_finished(&valid)
                .instrument(span.clone())
                .await?
        } else {
            self.store.apply_finished(&valid).await?
        };
        self.metrics.credit_duration(applying.elapsed());
        let mut applied = applied.into_iter();

        let mut outcomes = Vec::with_capacity(messages.len());
        let mut events = valid.iter();
        for ((message, parsed), span) in messages.iter().zip(parsed).zip(&spans) {
            let outcome = match parsed {
                Err(reason) => Outcome::DeadLettered {
                    reason: reason.to_string(),
                },
                Ok(_) => match (applied.next(), events.next()) {
                    (Some(outcome), Some(event)) => {
                        span.in_scope(|| log(&outcome, event));
                        if let Outcome::Credited { .. } = outcome {
                            self.metrics.credited(event.amount_cents);
                        }
                        outcome
                    }
                    _ => unreachable!("the store returns one outcome per event"),
                },
            };
            if let Outcome::DeadLettered { reason } = &outcome {
                self.metrics
                    .dead_lettered(dead_letter_reason(message.payload()));
                span.in_scope(|| {
                    tracing::warn!(
                        partition = message.partition(),
                        offset = message.offset(),
                        reason = %reason,
                        "malformed checkout.finished message sent to the dead-letter topic"
                    );
                });
            }
            self.metrics.outcome(&outcome);
            outcomes.push(outcome);
        }
        self.metrics.batch();
        Ok(outcomes)
    }

    /// Dead-letters a message the database keeps rejecting on its own, so it
    /// cannot stall its partition.
    ///
    /// # Errors
    /// When the dead-letter topic does not acknowledge it.
    pub async fn dead_letter_rejected(
        &self,
        message: &OwnedMessage,
        reason: &str,
    ) -> Result<(), rdkafka::error::KafkaError> {
        let span = message_span(message);
        self.dead_letter(message, reason)
            .instrument(span.clone())
            .await?;
        span.in_scope(|| {
            tracing::error!(
                partition = message.partition(),
                offset = message.offset(),
                reason = %reason,
                "event rejected by the database sent to the dead-letter topic"
            );
        });
        self.metrics.dead_lettered(REJECTED_BY_DATABASE);
        self.metrics.outcome(&Outcome::DeadLettered {
            reason: reason.to_owned(),
        });
        Ok(())
    }

    /// Copies `message` to the dead-letter topic with the reason and its
    /// origin (the contract's one dead-letter copy), and waits for the
    /// acknowledgement.
    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: &str,
    ) -> Result<(), rdkafka::error::KafkaError> {
        dead_letter(&self.dlq_producer, &self.dlq_topic, message, reason).await
    }
}

/// The span of every line about one `checkout.finished` message: the
/// checkout's request_id and trace_id as the contract's [`Inbound`] reads
/// them (the payload's request_id else the header's; the `traceparent`
/// header's trace, continuing the webhook's or the worker's span, else the
/// one the worker derives from the request_id). A field stays empty when
/// the message does not tell it.
pub fn message_span(message: &OwnedMessage) -> Span {
    inbound_span!("checkout_finished", Inbound::read(message))
}

/// [`message_span`], with the request_id of the parsed event when there is one.
fn span_for(message: &OwnedMessage, request_id: Option<&str>) -> Span {
    match request_id {
        Some(id) => inbound_span!("checkout_finished", Inbound::read_parsed(message, Some(id))),
        None => message_span(message),
    }
}

/// Parses and validates one payload ([`CheckoutFinishedEvent::validate`]),
/// and cuts a long `error_message` to [`MAX_ERROR_MESSAGE_CHARS`].
///
/// # Errors
/// The reason the payload is not a valid event.
pub fn parse(payload: Option<&[u8]>) -> Result<CheckoutFinishedEvent, Malformed> {
    let payload = payload.ok_or(Malformed::Empty)?;
    let mut event: CheckoutFinishedEvent = serde_json::from_slice(payload)?;
    event.validate()?;
    if let Some(message) = &mut event.error_message
        && let Some((cut, _)) = message.char_indices().nth(MAX_ERROR_MESSAGE_CHARS)
    {
        message.truncate(cut);
    }
    Ok(event)
}

/// One log line per applied event, at the level its outcome deserves.
fn log(outcome: &Outcome, e: &CheckoutFinishedEvent) {
    let (request_id, user_id, amount_cents, currency) =
        (&e.request_id, e.user_id, e.amount_cents, &e.currency);
    match outcome {
        Outcome::Credited { balance_cents } => {
            tracing::info!(%request_id, user_id, amount_cents, %currency, balance_cents, "balance credited");
        }
        Outcome::Duplicate => {
            tracing::info!(%request_id, "success already credited: nothing to do")
        }
        Outcome::NotCredited { purpose } => {
            tracing::info!(%request_id, user_id, %purpose, "success recorded; not a balance_topup, so not credited");
        }
        Outcome::Flagged { reason } => tracing::error!(
            %request_id, user_id, amount_cents, %currency, %reason,
            "contradicting success flagged for review, not credited"
        ),
        Outcome::FailedRecorded => tracing::warn!(
            %request_id, user_id, error_message = e.error_message.as_deref().unwrap_or(""),
            "checkout failed"
        ),
        Outcome::FailedAfterSuccess => tracing::warn!(
            %request_id, error_message = e.error_message.as_deref().unwrap_or(""),
            "failed event after success: the checkout stays succeeded"
        ),
        Outcome::SessionRecorded => tracing::info!(
            %request_id, session_url = e.session_url.as_deref().unwrap_or(""),
            "checkout session created"
        ),
        Outcome::SessionAfterEnd => {
            tracing::info!(%request_id, "session_created after the checkout ended: ignored")
        }
        Outcome::DeadLettered { .. } => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEED_SUCCESS: &str = r#"{"request_id":"550e8400-e29b-41d4-a716-446655440000","user_id":123,
        "amount_cents":500,"currency":"eur","purpose":"balance_topup","status":"success",
        "session_id":"cs_test_abc123","session_url":null,"payment_intent_id":"pi_test_xyz789",
        "error_message":null,"timestamp":"2024-01-15T10:35:00Z"}"#;

    fn reason(json: &str) -> String {
        parse(Some(json.as_bytes()))
            .expect_err("should be rejected")
            .to_string()
    }

    #[test]
    fn the_seed_event_is_valid() {
        let e = parse(Some(SEED_SUCCESS.as_bytes())).unwrap();
        assert_eq!(e.amount_cents, 500);
    }

    #[test]
    fn malformed_events_are_rejected_with_the_reason() {
        assert_eq!(parse(None).unwrap_err().to_string(), "empty payload");
        assert!(reason("{not json").contains("not a checkout.finished event"));
        assert!(
            reason(&SEED_SUCCESS.replace("\"success\"", "\"refunded\""))
                .contains("unknown variant `refunded`")
        );
        // The contract's validation, field by field, is tested with it.
        assert!(reason(&SEED_SUCCESS.replace("500", "0")).starts_with("amount_cents"));
        assert_eq!(
            reason(&SEED_SUCCESS.replace("cs_test_abc123", "cs_\\u0000")),
            "session_id: contains a NUL character"
        );
    }

    #[test]
    fn failed_events_are_taken_as_they_come_with_bounded_messages() {
        let failed = SEED_SUCCESS
            .replace("\"success\"", "\"failed\"")
            .replace("500", "0")
            .replace(
                "\"error_message\":null",
                &format!("\"error_message\":\"{}\"", "x".repeat(5000)),
            );
        let e = parse(Some(failed.as_bytes())).unwrap();
        assert_eq!(e.error_message.unwrap().len(), MAX_ERROR_MESSAGE_CHARS);
    }
}
