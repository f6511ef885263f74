//! The `balance` controller (seed: `app/http/api/controllers/balance.rs`).
//!
//! - `POST /api/v1/balance/checkout` `{amount_cents, currency?, success_url?, cancel_url?}`:
//!   validates (contract crate), produces a seed-format `CheckoutRequestEvent`
//!   (purpose `balance_topup`) to `checkout.requests`, and answers
//!   `202 {request_id, status_url}` once the broker acknowledged it.
//! - `GET /api/v1/balance`: the caller's balances and recent ledger entries,
//!   each with its currency's exponent (amounts are minor units: 2 digits
//!   after the point for eur, 0 for jpy), so the page needs no currency table.
//! - `GET /api/v1/balance/checkouts/{request_id}`: one of the caller's
//!   checkouts, with its status and session_url (404 for anyone else's).

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use checkout_contract::domain::{Currency, DEFAULT_CURRENCY, DEFAULT_PURPOSE};
use checkout_contract::kafka::send_traced;
use checkout_contract::trace::{TRACEPARENT, TraceContext};
use checkout_contract::{CheckoutRequestEvent, RequestId, UserId};
use serde::Serialize;
use serde_json::{Map, Value};
use tracing::Instrument as _;

use crate::http::AppState;
use crate::http::auth::AuthUser;
use crate::http::error::ApiError;
use crate::store::{Balance, CheckoutRecord, LedgerEntry};

/// How many ledger entries `GET /api/v1/balance` shows.
pub const RECENT_LEDGER_ENTRIES: i64 = 20;

/// The `202` answer: where to follow the checkout.
#[derive(Debug, Serialize)]
pub struct CheckoutAccepted {
    pub request_id: String,
    pub status_url: String,
}

/// `GET /api/v1/balance`.
#[derive(Debug, Serialize)]
pub struct BalanceView {
    pub user_id: i64,
    pub balances: Vec<WithExponent<Balance>>,
    pub recent_ledger: Vec<WithExponent<LedgerEntry>>,
    /// The currency a top-up without one is in.
    pub topup_currency: CurrencyView,
}

/// A row with an amount in minor units, and its currency's exponent.
#[derive(Debug, Serialize)]
pub struct WithExponent<T> {
    #[serde(flatten)]
    pub row: T,
    /// Digits after the decimal point ([`Currency::exponent`]); `null` for a
    /// currency no longer supported (the page then shows minor units).
    pub currency_exponent: Option<u32>,
}

impl<T> WithExponent<T> {
    fn new(row: T, currency: impl FnOnce(&T) -> &str) -> Self {
        let currency_exponent = Currency::parse(currency(&row)).ok().map(Currency::exponent);
        Self {
            row,
            currency_exponent,
        }
    }
}

/// A currency, its exponent and Stripe's minimum in minor units.
#[derive(Debug, Serialize)]
pub struct CurrencyView {
    pub currency: &'static str,
    pub currency_exponent: u32,
    pub minimum_cents: i64,
}

impl From<Currency> for CurrencyView {
    fn from(c: Currency) -> Self {
        Self {
            currency: c.code(),
            currency_exponent: c.exponent(),
            minimum_cents: c.minimum_amount(),
        }
    }
}

pub async fn create_checkout(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<CheckoutAccepted>), ApiError> {
    // The caller's W3C trace (or a new one) travels with the request on Kafka.
    let span = tracing::info_span!("create_checkout", trace_id = tracing::field::Empty);
    let trace = TraceContext::continue_in(
        headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(TraceContext::parse),
        &span,
    );
    let event = checkout_request(&state, user, &body?)?;

    let trace_id = trace.trace_id();
    if let Err(e) = send_traced(
        &state.producer,
        &state.topics.requests,
        &event.request_id,
        &event,
        &trace,
        &[],
    )
    .instrument(span)
    .await
    {
        state.metrics.checkout_request_unavailable();
        tracing::error!(error = %e, request_id = %event.request_id, %trace_id, "checkout request not acknowledged");
        return Err(ApiError::Unavailable);
    }
    state.metrics.checkout_request_sent();
    tracing::info!(request_id = %event.request_id, %trace_id, user_id = event.user_id, amount_cents = event.amount_cents, "checkout requested");
    // The request is on its way whatever happens here; the consumer records
    // the checkout when its session is created anyway.
    if let Err(e) = state.store.record_requested(&event).await {
        tracing::error!(error = %e, request_id = %event.request_id, %trace_id, "cannot record the requested checkout");
    }
    let status_url = format!(
        "{}/api/v1/balance/checkouts/{}",
        state.public_url, event.request_id
    );
    Ok((
        StatusCode::ACCEPTED,
        Json(CheckoutAccepted {
            request_id: event.request_id,
            status_url,
        }),
    ))
}

/// The seed event a `POST /api/v1/balance/checkout` body asks for, validated:
/// purpose `balance_topup`, the contract's default currency and the
/// service's redirect URLs when the body has none.
fn checkout_request(
    state: &AppState,
    user: UserId,
    body: &[u8],
) -> Result<CheckoutRequestEvent, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| ApiError::Body {
        status: StatusCode::BAD_REQUEST,
        message: format!("body must be a JSON object: {e}"),
    })?;
    let Value::Object(fields) = value else {
        return Err(ApiError::Body {
            status: StatusCode::BAD_REQUEST,
            message: "body must be a JSON object".into(),
        });
    };
    let amount_cents = match fields.get("amount_cents") {
        None | Some(Value::Null) => return Err(ApiError::invalid("amount_cents", "is required")),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| ApiError::invalid("amount_cents", "must be an integer (minor units)"))?,
    };
    let event = CheckoutRequestEvent {
        request_id: RequestId::new_random().to_string(),
        user_id: user.get(),
        amount_cents,
        currency: optional_string(&fields, "currency")?
            .unwrap_or_else(|| DEFAULT_CURRENCY.to_owned()),
        purpose: DEFAULT_PURPOSE.to_owned(),
        timestamp: checkout_contract::events::now(),
        success_url: optional_string(&fields, "success_url")?
            .unwrap_or_else(|| state.default_success_url.clone()),
        cancel_url: optional_string(&fields, "cancel_url")?
            .unwrap_or_else(|| state.default_cancel_url.clone()),
    };
    let valid = event.validate().map_err(ApiError::Invalid)?;
    state
        .redirect_hosts
        .check_request(&valid)
        .map_err(ApiError::Invalid)?;
    Ok(event)
}

pub async fn show(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
) -> Result<Json<BalanceView>, ApiError> {
    // The ledger first: a credit it lists was committed before the balances
    // are read, so they include it (read the other way round, a commit in
    // between would show the new ledger row next to the old balance, and
    // the page's "added to your balance" next to the old amount).
    let recent_ledger = state
        .store
        .recent_ledger(user.get(), RECENT_LEDGER_ENTRIES)
        .await?;
    let balances = state.store.balances(user.get()).await?;
    let topup = Currency::parse(DEFAULT_CURRENCY).expect("the default currency is supported");
    Ok(Json(BalanceView {
        user_id: user.get(),
        balances: balances
            .into_iter()
            .map(|b| WithExponent::new(b, |b| &b.currency))
            .collect(),
        recent_ledger: recent_ledger
            .into_iter()
            .map(|e| WithExponent::new(e, |e| &e.currency))
            .collect(),
        topup_currency: topup.into(),
    }))
}

pub async fn checkout_status(
    State(state): State<AppState>,
    AuthUser(user): AuthUser,
    Path(request_id): Path<String>,
) -> Result<Json<CheckoutRecord>, ApiError> {
    let request_id = RequestId::parse(&request_id).map_err(|_| ApiError::NotFound)?;
    match state.store.checkout(&request_id.to_string()).await? {
        Some(checkout) if checkout.user_id == user.get() => Ok(Json(checkout)),
        _ => Err(ApiError::NotFound),
    }
}

/// A field that may be absent or null, and must be a string otherwise.
fn optional_string(
    fields: &Map<String, Value>,
    field: &'static str,
) -> Result<Option<String>, ApiError> {
    match fields.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(field, "must be a string")),
    }
}
