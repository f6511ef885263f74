//! StartCheckout: validate, produce one seed `CheckoutRequestEvent` to
//! `checkout.requests` keyed by request_id, answer once the broker
//! acknowledged it, optionally wait for the worker's first answer.
//!
//! Idempotency: with an `idempotency_key` the request_id is
//! `RequestId::derive(caller, key)`, the same on every replica and after
//! restarts. Whether that id was already produced, and with which payload,
//! comes from the index (fed by this replica's produce and by every
//! replica's tail of `checkout.requests`); concurrent duplicates on one
//! replica queue on [`crate::rpc::KeyLocks`]. Known limits: a replica learns
//! another replica's request up to `GATEWAY_REQUESTS_TAIL_WAIT_MS` (default
//! 250 ms, see [`crate::tail`]) after the broker acknowledged it, so two
//! replicas receiving the same key within that window may both produce; a
//! key older than the index's TTL / lookback is forgotten. The request_id is
//! the same in both cases and the checkout worker dedupes by it.

use std::time::Duration;

use checkout_contract::auth::Principal;
use checkout_contract::domain::{DEFAULT_CURRENCY, DEFAULT_PURPOSE};
use checkout_contract::kafka::send_traced;
use checkout_contract::trace::TraceContext;
use checkout_contract::{CheckoutRequestEvent, CheckoutStatus, RequestId, ValidationError, pb};
use tokio::time::Instant;

use crate::auth::caller_key;
use crate::error::ApiError;
use crate::index::{RequestSummary, Snapshot, Update, fingerprint};
use crate::rpc::Shared;

/// Longest accepted idempotency key, in bytes.
pub const MAX_IDEMPOTENCY_KEY_BYTES: usize = 128;

/// # Errors
/// INVALID_ARGUMENT naming the first bad field, PERMISSION_DENIED when the
/// caller may not act for `user_id`, ALREADY_EXISTS when the idempotency key
/// was used for a different payload, UNAVAILABLE when the broker did not
/// acknowledge in time.
pub async fn start_checkout(
    shared: &Shared,
    caller: &Principal,
    mut request: pb::StartCheckoutRequest,
    deadline: Instant,
    trace: &TraceContext,
) -> Result<pb::StartCheckoutResponse, ApiError> {
    let key = idempotency_key(request.idempotency_key.take())?;
    let wait = wait_for_session(request.wait_for_session.take())?;
    let request_id = match &key {
        Some(k) => RequestId::derive(&caller_key(caller), k),
        None => RequestId::new_random(),
    };
    // The call's span (see `crate::service`) is about this checkout from here on.
    tracing::Span::current().record("request_id", tracing::field::display(request_id));
    let event = request_event(request_id, request);
    check(shared, caller, &event)?;

    // Held until the event is in the index, so a concurrent duplicate of
    // this key waits and then finds it there.
    let guard = match &key {
        Some(k) => {
            let guard = shared.in_flight.lock(request_id).await;
            if already_requested(shared, k, request_id, &event)? {
                drop(guard);
                return answer(shared, request_id, wait, deadline).await;
            }
            Some(guard)
        }
        None => None,
    };
    produce(shared, request_id, &event, trace).await?;
    drop(guard);
    answer(shared, request_id, wait, deadline).await
}

/// The idempotency key, if any: not blank, at most
/// [`MAX_IDEMPOTENCY_KEY_BYTES`].
fn idempotency_key(key: Option<String>) -> Result<Option<String>, ValidationError> {
    let field = "idempotency_key";
    match key {
        Some(k) if k.trim().is_empty() => {
            Err(ValidationError::new(field, "must not be empty when set"))
        }
        Some(k) if k.len() > MAX_IDEMPOTENCY_KEY_BYTES => Err(ValidationError::new(
            field,
            format!(
                "must be at most {MAX_IDEMPOTENCY_KEY_BYTES} bytes, got {}",
                k.len()
            ),
        )),
        key => Ok(key),
    }
}

/// How long to wait for the worker's first answer (none when unset).
fn wait_for_session(wait: Option<prost_types::Duration>) -> Result<Duration, ValidationError> {
    match wait {
        None => Ok(Duration::ZERO),
        Some(d) => Duration::try_from(d).map_err(|_| {
            ValidationError::new("wait_for_session", "must be a non-negative duration")
        }),
    }
}

/// The seed event for `request`, an empty currency or purpose meaning the
/// default (proto3 strings cannot be absent).
fn request_event(request_id: RequestId, request: pb::StartCheckoutRequest) -> CheckoutRequestEvent {
    let or_default = |s: String, d: &str| if s.is_empty() { d.to_owned() } else { s };
    CheckoutRequestEvent {
        request_id: request_id.to_string(),
        user_id: request.user_id,
        amount_cents: request.amount_cents,
        currency: or_default(request.currency, DEFAULT_CURRENCY),
        purpose: or_default(request.purpose, DEFAULT_PURPOSE),
        timestamp: checkout_contract::events::now(),
        success_url: request.success_url,
        cancel_url: request.cancel_url,
    }
}

/// Validates `event`, its redirect hosts, and that `caller` may act for its user.
fn check(
    shared: &Shared,
    caller: &Principal,
    event: &CheckoutRequestEvent,
) -> Result<(), ApiError> {
    let valid = event.validate()?;
    shared.redirect_hosts.check_request(&valid)?;
    if !caller.may_act_for(valid.user_id) {
        return Err(ApiError::PermissionDenied {
            caller: caller.subject.clone(),
            user_id: valid.user_id.get(),
        });
    }
    Ok(())
}

/// Was this key's request_id produced already (an idempotent retry)?
///
/// # Errors
/// ALREADY_EXISTS when it was, for a different checkout.
fn already_requested(
    shared: &Shared,
    key: &str,
    request_id: RequestId,
    event: &CheckoutRequestEvent,
) -> Result<bool, ApiError> {
    let Some(known) = shared.index.get(request_id) else {
        return Ok(false);
    };
    if !same_checkout(&known, event) {
        return Err(ApiError::IdempotencyConflict {
            key: key.to_owned(),
            request_id: request_id.to_string(),
        });
    }
    tracing::info!(%request_id, "idempotent retry: answering without a second event");
    Ok(true)
}

/// Produces `event` and waits up to the produce timeout for the broker's
/// acknowledgement, then records it in the index.
async fn produce(
    shared: &Shared,
    request_id: RequestId,
    event: &CheckoutRequestEvent,
    trace: &TraceContext,
) -> Result<(), ApiError> {
    let produce = send_traced(
        &shared.producer,
        &shared.topics.requests,
        &event.request_id,
        event,
        trace,
        &[],
    );
    let delivered = match tokio::time::timeout(shared.produce_timeout, produce).await {
        Ok(Ok(d)) => d,
        Ok(Err(e)) => return Err(unavailable(shared, &request_id, e.to_string())),
        Err(_) => return Err(unavailable(shared, &request_id, "timed out".into())),
    };
    shared
        .index
        .record_request(request_id, RequestSummary::from(event).traced(Some(*trace)));
    tracing::info!(%request_id, partition = delivered.partition, offset = delivered.offset, "checkout requested");
    Ok(())
}

fn unavailable(shared: &Shared, request_id: &RequestId, cause: String) -> ApiError {
    tracing::warn!(%request_id, %cause, "broker did not acknowledge a checkout request");
    ApiError::ProduceTimeout {
        timeout: shared.produce_timeout,
        cause,
    }
}

/// Is what the index knows about this request_id the same checkout as `event`?
fn same_checkout(known: &Snapshot, event: &CheckoutRequestEvent) -> bool {
    match (&known.request, known.updates.first()) {
        (Some(r), _) => r.fingerprint == fingerprint(event),
        // Only statuses are known (the request is older than the lookback):
        // compare what they carry.
        (None, Some(u)) => {
            let e = &u.event;
            (
                e.user_id,
                e.amount_cents,
                e.currency.as_str(),
                e.purpose.as_str(),
            ) == (
                event.user_id,
                event.amount_cents,
                event.currency.as_str(),
                event.purpose.as_str(),
            )
        }
        (None, None) => true,
    }
}

/// The answer for `request_id`: its latest status, after waiting up to
/// `wait` (capped by the call's deadline) for the worker's first answer.
async fn answer(
    shared: &Shared,
    request_id: RequestId,
    wait: Duration,
    deadline: Instant,
) -> Result<pb::StartCheckoutResponse, ApiError> {
    let until = (Instant::now() + wait).min(deadline);
    if Instant::now() >= until {
        // No wait asked for (the common case): what is known now. A
        // subscription here would allocate a broadcast channel per call that
        // stays in the index until its next sweep.
        let latest = shared
            .index
            .get(request_id)
            .and_then(|s| s.updates.last().cloned());
        return Ok(response(request_id, latest.as_ref()));
    }
    let (snapshot, mut rx) = shared.index.subscribe(request_id);
    let mut latest = snapshot.updates.last().cloned();
    while latest.is_none() && Instant::now() < until {
        match tokio::time::timeout_at(until, rx.recv()).await {
            Ok(Ok(update)) => latest = Some(update),
            // Lagged cannot lose the first update; closed or timed out ends the wait.
            Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {
                latest = shared
                    .index
                    .get(request_id)
                    .and_then(|s| s.updates.last().cloned());
            }
            Ok(Err(_)) | Err(_) => break,
        }
    }
    Ok(response(request_id, latest.as_ref()))
}

fn response(request_id: RequestId, latest: Option<&Update>) -> pb::StartCheckoutResponse {
    let mut r = pb::StartCheckoutResponse {
        request_id: request_id.to_string(),
        status: pb::CheckoutStatus::Pending.into(),
        ..Default::default()
    };
    if let Some(u) = latest {
        let e = &u.event;
        r.status = pb::CheckoutStatus::from(e.status).into();
        r.session_id.clone_from(&e.session_id);
        if e.status == CheckoutStatus::SessionCreated {
            r.session_url.clone_from(&e.session_url);
        }
        r.error_message.clone_from(&e.error_message);
    }
    r
}
