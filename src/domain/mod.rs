//! Validated checkout values and the one place validation happens.
//!
//! Each type is built by a `parse` that either returns a value that is valid
//! by construction or a [`ValidationError`] naming the field and the reason.
//! [`CheckoutRequestEvent::validate`](crate::CheckoutRequestEvent::validate)
//! runs them all; the gateway, the checkout worker and blazing_sun's balance
//! controller all call it.
//! [`CheckoutFinishedEvent::validate`](crate::CheckoutFinishedEvent::validate)
//! does the same for a finished event; blazing_sun's `checkout_finished`
//! handler calls it.
//!
//! # Layout
//! - `error.rs`: [`ValidationError`].
//! - `request_id.rs`: [`RequestId`], a UUID, parsed or derived from an idempotency key.
//! - `user_id.rs`: [`UserId`].
//! - `currency.rs`: [`Currency`], the table of supported currencies (Stripe
//!   minimum, decimals) and amounts formatted for people.
//! - `amount.rs`: [`AmountCents`], money in minor units within Stripe's limits.
//! - `purpose.rs`: [`Purpose`].
//! - `redirect_url.rs`: [`RedirectUrl`], `success_url` / `cancel_url`.
//! - `redirect_hosts.rs`: [`HostAllowlist`], the hosts those URLs may point
//!   at, read from `CHECKOUT_REDIRECT_HOSTS`.
//! - `checkout_request.rs`: [`ValidCheckoutRequest`], what `validate` returns.
//! - `checkout_finished.rs`: a finished event's `validate`, and [`MAX_ID_BYTES`].

mod amount;
mod checkout_finished;
mod checkout_request;
mod currency;
mod error;
mod purpose;
mod redirect_hosts;
mod redirect_url;
mod request_id;
mod user_id;

pub use amount::{AmountCents, MAX_AMOUNT_CENTS};
pub use checkout_finished::MAX_ID_BYTES;
pub use checkout_request::ValidCheckoutRequest;
pub use currency::{Currency, DEFAULT_CURRENCY};
pub use error::ValidationError;
pub use purpose::{DEFAULT_PURPOSE, Purpose};
pub use redirect_hosts::{DEFAULT_REDIRECT_HOSTS, HostAllowlist, REDIRECT_HOSTS_VAR};
pub use redirect_url::{MAX_URL_BYTES, RedirectUrl};
pub use request_id::RequestId;
pub use user_id::UserId;
