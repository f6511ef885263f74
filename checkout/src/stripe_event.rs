//! What a verified Stripe event means for `checkout.finished`
//! (seed document, "Status Values"):
//!
//! | Stripe event                                   | finished event                      |
//! |------------------------------------------------|-------------------------------------|
//! | `checkout.session.completed`, `paid`           | `success` with payment_intent_id    |
//! | `checkout.session.completed`, not yet paid     | none yet (an async method is pending) |
//! | `checkout.session.async_payment_succeeded`     | `success`                           |
//! | `checkout.session.async_payment_failed`        | `failed`                            |
//! | `checkout.session.expired`                     | `failed`, "expired"                 |
//! | anything else                                  | none (acknowledged and ignored)     |
//!
//! Every field comes from the session's metadata (written by
//! [`crate::stripe::session_params`]), so no local state is needed and a
//! duplicate delivery yields the identical event. Stripe's session state
//! machine never emits two contradicting terminal events for one session
//! (an expired session cannot complete, a paid one cannot expire), so
//! out-of-order delivery cannot make this mapping contradict itself either.
//! Used by [`crate::webhook`].

use checkout_contract::events::now;
use checkout_contract::trace::{TRACEPARENT, TraceContext};
use checkout_contract::{CheckoutFinishedEvent, CheckoutStatus};
use stripe_shared::{CheckoutSession, CheckoutSessionPaymentStatus};
use stripe_webhook::{Event, EventObject};

pub const EXPIRED_MESSAGE: &str = "checkout session expired";
pub const ASYNC_FAILED_MESSAGE: &str = "asynchronous payment failed";

/// The decision for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Publish this event, then acknowledge.
    Publish(Box<CheckoutFinishedEvent>),
    /// Acknowledge without publishing; the reason is logged.
    Ignore(&'static str),
}

/// Maps a verified event to what to publish.
pub fn decide(event: &Event) -> Decision {
    match &event.data.object {
        EventObject::CheckoutSessionCompleted(session) => match session.payment_status {
            CheckoutSessionPaymentStatus::Paid => finished(session, CheckoutStatus::Success, None),
            CheckoutSessionPaymentStatus::Unpaid => Decision::Ignore(
                "completed but not paid yet: waiting for async_payment_succeeded/failed",
            ),
            _ => Decision::Ignore("completed without a payment"),
        },
        EventObject::CheckoutSessionAsyncPaymentSucceeded(session) => {
            finished(session, CheckoutStatus::Success, None)
        }
        EventObject::CheckoutSessionAsyncPaymentFailed(session) => {
            finished(session, CheckoutStatus::Failed, Some(ASYNC_FAILED_MESSAGE))
        }
        EventObject::CheckoutSessionExpired(session) => {
            finished(session, CheckoutStatus::Failed, Some(EXPIRED_MESSAGE))
        }
        _ => Decision::Ignore("event type not handled"),
    }
}

/// The trace the checkout worker wrote into the session's metadata, if any.
pub fn traceparent(event: &Event) -> Option<TraceContext> {
    let session = match &event.data.object {
        EventObject::CheckoutSessionCompleted(s)
        | EventObject::CheckoutSessionAsyncPaymentSucceeded(s)
        | EventObject::CheckoutSessionAsyncPaymentFailed(s)
        | EventObject::CheckoutSessionExpired(s) => s,
        _ => return None,
    };
    let value = session.metadata.as_ref()?.get(TRACEPARENT)?;
    TraceContext::parse(value)
}

fn finished(session: &CheckoutSession, status: CheckoutStatus, error: Option<&str>) -> Decision {
    let Some(metadata) = session.metadata.as_ref() else {
        return Decision::Ignore("session has no metadata: not created by the checkout worker");
    };
    let request_id = metadata
        .get("request_id")
        .or(session.client_reference_id.as_ref());
    let user_id = metadata.get("user_id").and_then(|v| v.parse::<i64>().ok());
    let amount_cents = metadata
        .get("amount_cents")
        .and_then(|v| v.parse::<i64>().ok());
    let (Some(request_id), Some(user_id), Some(amount_cents)) = (request_id, user_id, amount_cents)
    else {
        return Decision::Ignore("session metadata lacks request_id, user_id or amount_cents");
    };
    let currency = metadata
        .get("currency")
        .cloned()
        .unwrap_or_else(|| session.currency_code());
    let purpose = metadata
        .get("purpose")
        .cloned()
        .unwrap_or_else(|| checkout_contract::domain::DEFAULT_PURPOSE.to_owned());
    let payment_intent_id = match status {
        CheckoutStatus::Success => session
            .payment_intent
            .as_ref()
            .map(|pi| pi.id().as_str().to_owned()),
        _ => None,
    };
    Decision::Publish(Box::new(CheckoutFinishedEvent {
        request_id: request_id.clone(),
        user_id,
        amount_cents,
        currency,
        purpose,
        status,
        session_id: Some(session.id.as_str().to_owned()),
        session_url: None,
        payment_intent_id,
        error_message: error.map(str::to_owned),
        timestamp: now(),
    }))
}

trait CurrencyCode {
    fn currency_code(&self) -> String;
}

impl CurrencyCode for CheckoutSession {
    fn currency_code(&self) -> String {
        self.currency.as_ref().map_or_else(
            || checkout_contract::domain::DEFAULT_CURRENCY.to_owned(),
            ToString::to_string,
        )
    }
}

#[cfg(test)]
mod tests {
    use checkout_contract::secret::Secret;
    use serde_json::{Value, json};
    use stripe_webhook::Webhook;

    use super::*;
    use crate::webhook::{WebhookError, verify};

    /// A session as the Stripe emulator returns it (created by our parameters).
    const SESSION: &str = include_str!("testdata/checkout_session.json");
    const SECRET: &str = "whsec_unit";

    fn payload(type_: &str, edit: impl FnOnce(&mut Value)) -> String {
        let mut session: Value = serde_json::from_str(SESSION).unwrap();
        edit(&mut session);
        json!({
            "id": "evt_unit", "object": "event", "account": null, "api_version": "2025-11-17.clover",
            "created": 1_705_314_600, "data": {"object": session}, "livemode": false,
            "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null}, "type": type_,
        })
        .to_string()
    }

    fn decide_payload(payload: &str) -> Decision {
        let header = Webhook::generate_test_header(payload, SECRET, None);
        decide(&verify(payload, &header, &[Secret::new(SECRET)]).expect("verifies"))
    }

    fn published(decision: Decision) -> CheckoutFinishedEvent {
        match decision {
            Decision::Publish(event) => *event,
            Decision::Ignore(reason) => panic!("ignored: {reason}"),
        }
    }

    #[test]
    fn completed_and_paid_is_success_with_every_field_from_metadata() {
        let event = published(decide_payload(&payload(
            "checkout.session.completed",
            |s| {
                s["status"] = json!("complete");
                s["payment_status"] = json!("paid");
                s["payment_intent"] = json!("pi_unit");
            },
        )));
        assert_eq!(event.request_id, "550e8400-e29b-41d4-a716-446655440000");
        assert_eq!((event.user_id, event.amount_cents), (123, 500));
        assert_eq!(
            (event.currency.as_str(), event.purpose.as_str()),
            ("eur", "balance_topup")
        );
        assert_eq!(event.status, CheckoutStatus::Success);
        assert_eq!(event.session_id.as_deref(), Some("cs_test_fixture"));
        assert_eq!(event.payment_intent_id.as_deref(), Some("pi_unit"));
        assert_eq!((event.session_url, event.error_message), (None, None));
    }

    #[test]
    fn completed_but_unpaid_waits_for_the_async_result() {
        let decision = decide_payload(&payload("checkout.session.completed", |s| {
            s["status"] = json!("complete")
        }));
        assert!(matches!(decision, Decision::Ignore(_)), "{decision:?}");
    }

    #[test]
    fn async_results_and_expiry_map_to_success_and_failed() {
        let ok = published(decide_payload(&payload(
            "checkout.session.async_payment_succeeded",
            |s| {
                s["payment_status"] = json!("paid");
                s["payment_intent"] = json!("pi_async");
            },
        )));
        assert_eq!(ok.status, CheckoutStatus::Success);
        assert_eq!(ok.payment_intent_id.as_deref(), Some("pi_async"));

        let failed = published(decide_payload(&payload(
            "checkout.session.async_payment_failed",
            |_| {},
        )));
        assert_eq!(failed.status, CheckoutStatus::Failed);
        assert_eq!(failed.error_message.as_deref(), Some(ASYNC_FAILED_MESSAGE));
        assert_eq!(failed.payment_intent_id, None);

        let expired = published(decide_payload(&payload("checkout.session.expired", |s| {
            s["status"] = json!("expired")
        })));
        assert_eq!(expired.status, CheckoutStatus::Failed);
        assert!(expired.error_message.unwrap().contains("expired"));
    }

    #[test]
    fn sessions_without_our_metadata_are_ignored() {
        let decision = decide_payload(&payload("checkout.session.expired", |s| {
            s["metadata"] = json!({});
            s["client_reference_id"] = Value::Null;
        }));
        assert!(matches!(decision, Decision::Ignore(_)), "{decision:?}");
    }

    #[test]
    fn verify_accepts_any_configured_secret_and_rejects_the_rest() {
        let body = payload("checkout.session.expired", |_| {});
        let secrets = [Secret::new("whsec_old"), Secret::new(SECRET)];
        let good = Webhook::generate_test_header(&body, SECRET, None);
        assert!(
            verify(&body, &good, &secrets).is_ok(),
            "the second secret of a rotation verifies"
        );

        let wrong = Webhook::generate_test_header(&body, "whsec_other", None);
        assert!(matches!(
            verify(&body, &wrong, &secrets),
            Err(WebhookError::BadSignature)
        ));
        let stale = Webhook::generate_test_header(
            &body,
            SECRET,
            Some(chrono::Utc::now().timestamp() - 301),
        );
        assert!(matches!(
            verify(&body, &stale, &secrets),
            Err(WebhookError::Stale(_))
        ));
        assert!(matches!(
            verify(&body, "v1=abc", &secrets),
            Err(WebhookError::BadSignature)
        ));
        assert!(matches!(
            verify(&body, "t=x,v1=abc", &secrets),
            Err(WebhookError::BadHeader)
        ));
        let broken = "{\"id\":1}";
        let signed = Webhook::generate_test_header(broken, SECRET, None);
        assert!(matches!(
            verify(broken, &signed, &secrets),
            Err(WebhookError::Malformed(_))
        ));
    }
}
