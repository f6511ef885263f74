//! Webhook events: built when a session changes state, then delivered in
//! the background to the configured endpoint, signed like Stripe does.
//!
//! # Layout
//! - [`event`]: the Stripe event JSON and the `Stripe-Signature` header.
//! - [`dispatch`]: the queue; keeps each session's events in order, applies
//!   the duplicate and out-of-order faults.
//! - [`delivery`]: one delivery: HTTP POST, retries with backoff, the
//!   bad-signature and stale-timestamp faults.

pub mod delivery;
pub mod dispatch;
pub mod event;

pub use dispatch::{Outbox, is_lost};
pub use event::{Event, EventRecord, sign};
