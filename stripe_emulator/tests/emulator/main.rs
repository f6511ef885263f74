//! Integration tests: the real emulator on port 0 over real HTTP, driven by
//! the real async-stripe client, webhooks received by a real axum server and
//! verified with async-stripe-webhook.
//!
//! - `helpers`: spawn the emulator, a webhook receiver, an async-stripe client.
//! - `stripe_api`: create / retrieve / expire through async-stripe.
//! - `stripe_shape`: sessions and events have exactly the keys of Stripe's (the checkout crate's fixtures).
//! - `errors`: 401 and every 400 class with `param`.
//! - `idempotency`: replay, mismatch, 500 replay, unsaved 400.
//! - `webhooks`: the four event types verified and typed; retries.
//! - `faults`: latency, 429, duplicate, out-of-order, bad signature, stale timestamp.
//! - `rate_limit`: the account rate limit and the per-second request log.
//! - `hosted_page`: the HTML page and its redirects; the control API.

mod errors;
mod faults;
mod helpers;
mod hosted_page;
mod idempotency;
mod rate_limit;
mod stripe_api;
mod stripe_shape;
mod webhooks;
