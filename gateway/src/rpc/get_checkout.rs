//! GetCheckout: the latest known status of one checkout, from the index.
//! A request seen on `checkout.requests` with no status yet is PENDING (with
//! no cursor); an unknown id, or another user's, is NOT_FOUND.

use checkout_contract::RequestId;
use checkout_contract::auth::Principal;
use checkout_contract::pb;

use crate::auth::may_see;
use crate::error::ApiError;
use crate::rpc::Shared;

/// # Errors
/// INVALID_ARGUMENT for a request_id that is not a UUID, NOT_FOUND for an
/// unknown checkout or one the caller may not see.
pub fn get_checkout(
    shared: &Shared,
    caller: &Principal,
    request: pb::GetCheckoutRequest,
) -> Result<pb::CheckoutUpdate, ApiError> {
    let id = RequestId::parse(&request.request_id)?;
    let not_found = || ApiError::NotFound(id.to_string());
    let snapshot = shared
        .index
        .get(id)
        .filter(|s| !s.is_empty())
        .ok_or_else(not_found)?;
    if !may_see(caller, snapshot.owner()) {
        return Err(not_found());
    }
    if let Some(latest) = snapshot.updates.last() {
        return Ok(pb::CheckoutUpdate::from(latest));
    }
    let r = snapshot.request.ok_or_else(not_found)?;
    Ok(pb::CheckoutUpdate {
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
    })
}
