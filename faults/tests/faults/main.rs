//! The fault suite (issue 8): the whole checkout system on its own durable
//! broker, driven through the gateway while processes and the broker are
//! SIGKILLed and the Stripe emulator misbehaves; then the books are checked.
//!
//! - `nodes`: the checkout worker and blazing_sun as real `fault-node` processes.
//! - `observe`: what the suite reads afterwards (topics, ledger, lag).
//! - `suite`: the run and its assertions.

mod nodes;
mod observe;
mod suite;
