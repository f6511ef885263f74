//! Reconciliation with Stripe, so no payment depends on a webhook arriving.
//!
//! Every `CHECKOUT_RECONCILE_INTERVAL_SECS`, the open sessions
//! ([`crate::sessions`]) whose check is due (first
//! `CHECKOUT_RECONCILE_AFTER_SECS` after their `session_created`, then less
//! and less often while they stay open, and right after they expire) are
//! retrieved from Stripe and decided by
//! [`crate::stripe_event::from_session`]:
//!
//! | Stripe has the session            | What happens                              |
//! |-----------------------------------|-------------------------------------------|
//! | paid (or no payment required)     | `success` published                       |
//! | expired                           | `failed` "expired" published              |
//! | still open past its `expires_at`  | expired by us, then `failed` "expired"    |
//! | open, or a delayed payment pending | asked again later                        |
//! | Stripe unreachable                | asked again next round                    |
//!
//! The events are the ones the webhook would publish, through the same
//! [`Outcomes`] (same fields, same key and headers, the checkout's trace),
//! so a reconciliation and a webhook for one session are harmless
//! duplicates: blazing_sun credits a session once. Each replica asks only
//! about the sessions of the partitions it owns ([`crate::assignment`]), so
//! several replicas do not ask Stripe about one session several times. Every call goes through
//! the shared [`Stripe`] client, so it takes slots of the same client-side
//! rate limit as the worker. Nothing starts before the open-session tail has
//! caught up (before that an entry may only lack its terminal event), and a
//! stop ends a round at once.

use std::sync::Arc;
use std::time::Duration;

use checkout_contract::shutdown::Stopping;
use checkout_contract::trace::TraceContext;
use checkout_contract::{CheckoutFinishedEvent, CheckoutStatus};
use chrono::Utc;
use stripe_shared::{CheckoutSession, CheckoutSessionStatus};
use tracing::Instrument as _;

use crate::assignment::Assignment;
use crate::metrics::{Metrics, Reconciled};
use crate::sessions::{OpenSession, OpenSessions};
use crate::stripe::{CallError, ErrorClass, Stripe};
use crate::stripe_event::{SessionState, from_session};
use crate::webhook::Outcomes;

/// The reconciliation task.
pub struct Reconciler {
    pub sessions: Arc<OpenSessions>,
    pub stripe: Stripe,
    pub outcomes: Outcomes,
    pub metrics: Arc<Metrics>,
    /// Which sessions are this replica's to ask about.
    pub assignment: Arc<Assignment>,
    /// How often the due sessions are looked at.
    pub interval: Duration,
}

impl Reconciler {
    /// Waits for the open-session tail to catch up, then reconciles every
    /// `interval` until `stop` says stop.
    pub async fn run(self, mut stop: Stopping) {
        tokio::select! {
            () = stop.stopped() => return,
            () = self.sessions.caught_up() => {}
        }
        tracing::info!(
            interval_secs = self.interval.as_secs(),
            open = self.sessions.len(),
            "reconciliation with Stripe running"
        );
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.stopped() => break,
                _ = tick.tick() => {}
            }
            let mut due = self.sessions.due(Utc::now());
            due.retain(|open| self.assignment.reconciles(open.partition));
            if due.is_empty() {
                continue;
            }
            tracing::debug!(due = due.len(), "reconciling sessions");
            for open in due {
                tokio::select! {
                    biased;
                    () = stop.stopped() => break,
                    _ = self.reconcile(&open) => {}
                }
            }
        }
        tracing::info!("reconciliation stopped");
    }

    /// Asks Stripe about one session and publishes its outcome if it has one.
    pub async fn reconcile(&self, open: &OpenSession) -> Reconciled {
        let parent = self.outcomes.trace(&open.request_id, Duration::ZERO).await;
        let span = tracing::info_span!(
            "reconcile",
            request_id = %open.request_id,
            session_id = %open.session_id,
            trace_id = tracing::field::Empty
        );
        let trace = TraceContext::continue_in(parent, &span);
        let found = async {
            let session = match self.current(&open.session_id).await {
                Ok(session) => session,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot ask Stripe about the session; next round");
                    if e.class() != ErrorClass::Transient {
                        // A 404 or a refused key does not heal by asking every round.
                        self.sessions.still_open(
                            &open.request_id,
                            &open.session_id,
                            Utc::now(),
                            None,
                        );
                    }
                    return Reconciled::Error;
                }
            };
            let (expires_at, reason) = match from_session(&session) {
                SessionState::Finished(finished) => {
                    return self.publish(open, &finished, &trace).await;
                }
                SessionState::Open { expires_at, .. } => (Some(expires_at), "still open"),
                SessionState::Pending => (None, "a delayed payment is still settling"),
                SessionState::Unusable(reason) => {
                    tracing::warn!(
                        reason,
                        "Stripe's session says nothing this service can use; asking again later"
                    );
                    (None, reason)
                }
            };
            tracing::debug!(reason, "no outcome yet; asking again later");
            self.sessions
                .still_open(&open.request_id, &open.session_id, Utc::now(), expires_at);
            Reconciled::Open
        }
        .instrument(span)
        .await;
        self.metrics.reconciled(found);
        found
    }

    async fn publish(
        &self,
        open: &OpenSession,
        finished: &CheckoutFinishedEvent,
        trace: &TraceContext,
    ) -> Reconciled {
        match self.outcomes.publish(finished, trace, None).await {
            Ok(delivered) => {
                self.sessions.close(&open.request_id, &open.session_id);
                tracing::info!(
                    status = %finished.status, partition = delivered.partition,
                    offset = delivered.offset, "reconciled: published checkout.finished"
                );
                if finished.status == CheckoutStatus::Success {
                    Reconciled::Success
                } else {
                    Reconciled::Failed
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot publish the reconciled outcome; next round");
                Reconciled::Error
            }
        }
    }

    /// The session as Stripe has it, expired first when it is still open
    /// past its `expires_at` (so it can no longer be paid once we answer).
    async fn current(&self, session_id: &str) -> Result<CheckoutSession, CallError> {
        let session = self.stripe.retrieve_session(session_id).await?;
        if !is_open_past_expiry(&session, Utc::now().timestamp()) {
            return Ok(session);
        }
        tracing::info!(
            expires_at = session.expires_at,
            "session still open past its expiry: expiring it"
        );
        match self.stripe.expire_session(session_id).await {
            Ok(expired) => Ok(expired),
            // Paid or expired between the two calls: what is it now?
            Err(CallError::Rejected { .. }) => self.stripe.retrieve_session(session_id).await,
            Err(e) => Err(e),
        }
    }
}

/// Whether `session` is open although it should have expired by `now`
/// (seconds since the epoch).
pub fn is_open_past_expiry(session: &CheckoutSession, now: i64) -> bool {
    session.status == Some(CheckoutSessionStatus::Open) && session.expires_at <= now
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::stripe_event::fixture_session as session;

    #[test]
    fn only_an_open_session_past_its_expiry_is_expired_by_us() {
        let open = session(|s| {
            s["status"] = serde_json::json!("open");
            s["expires_at"] = serde_json::json!(1000);
        });
        assert!(is_open_past_expiry(&open, 1000));
        assert!(!is_open_past_expiry(&open, 999));
        let expired = session(|s| {
            s["status"] = serde_json::json!("expired");
            s["expires_at"] = serde_json::json!(1000);
        });
        assert!(!is_open_past_expiry(&expired, 2000));
        let complete = session(|s| {
            s["status"] = serde_json::json!("complete");
            s["expires_at"] = serde_json::json!(1000);
        });
        assert!(!is_open_past_expiry(&complete, 2000));
    }
}
