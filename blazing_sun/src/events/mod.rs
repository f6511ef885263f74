//! Kafka side of blazing_sun (seed: `bootstrap/events/`).
//!
//! - [`handlers::checkout_finished`]: turns one batch of `checkout.finished`
//!   messages into outcomes (validate, dead-letter, apply in one transaction).
//! - [`consumer`]: the group consumer loop around it: poll a batch, handle it,
//!   store the offsets only after the database commit.

pub mod consumer;
pub mod handlers;
