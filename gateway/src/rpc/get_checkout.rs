//! GetCheckout: the latest known status of one checkout, from the index.
//! A request seen on `checkout.requests` with no status yet is PENDING (with
//! no cursor); an unknown id, or another user's, is NOT_FOUND. The answer
//! never goes backwards: once a terminal status is known it stays the
//! answer, whatever is republished later (see [`crate::index::progress`]).
//!
//! The call continues the checkout's trace like WatchCheckout: the call's
//! span gets the request_id and trace_id, and the answer's metadata a
//! `traceparent` with the call's own span id.

use checkout_contract::RequestId;
use checkout_contract::auth::Principal;
use checkout_contract::pb;
use checkout_contract::trace::TraceContext;
use tracing::Span;

use crate::auth::may_see;
use crate::error::ApiError;
use crate::rpc::Shared;

/// The answer and, when the checkout's trace is known, the call's place in it.
pub struct Found {
    pub update: pb::CheckoutUpdate,
    pub trace: Option<TraceContext>,
}

/// Looks the checkout up inside the current span (the call's, with empty
/// `request_id` and `trace_id` fields that this fills in).
///
/// # Errors
/// INVALID_ARGUMENT for a request_id that is not a UUID, NOT_FOUND for an
/// unknown checkout or one the caller may not see.
pub fn get_checkout(
    shared: &Shared,
    caller: &Principal,
    request: pb::GetCheckoutRequest,
) -> Result<Found, ApiError> {
    let id = RequestId::parse(&request.request_id)?;
    let span = Span::current();
    span.record("request_id", tracing::field::display(id));
    let not_found = || ApiError::NotFound(id.to_string());
    let snapshot = shared
        .index
        .get(id)
        .filter(|s| !s.is_empty())
        .ok_or_else(not_found)?;
    let trace = snapshot.trace(id).map(|t| t.child());
    if let Some(t) = &trace {
        span.record("trace_id", tracing::field::display(t.trace_id()));
    }
    if !may_see(caller, snapshot.owner()) {
        return Err(not_found());
    }
    if let Some(latest) = snapshot.updates.last() {
        tracing::debug!(status = %latest.event.status, "checkout looked up");
        return Ok(Found {
            update: pb::CheckoutUpdate::from(latest),
            trace,
        });
    }
    let r = snapshot.request.ok_or_else(not_found)?;
    tracing::debug!(status = "pending", "checkout looked up");
    let update = pb::CheckoutUpdate {
        event: Some(pb::CheckoutFinishedEvent {
            request_id: id.to_string(),
            user_id: r.user_id,
            amount_cents: r.amount_cents,
            currency: r.currency,
            purpose: r.purpose,
            status: pb::CheckoutStatus::Pending.into(),
            session_id: None,
            session_url: None,
            payment_intent_id: None,
            error_message: None,
            timestamp: checkout_contract::events::iso8601::format(&r.timestamp),
        }),
        cursor: None,
        traceparent: r.trace.map(|t| t.header()).unwrap_or_default(),
    };
    Ok(Found { update, trace })
}
