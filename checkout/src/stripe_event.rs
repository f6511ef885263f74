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
