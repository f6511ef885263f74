//! `checkout-stack`: the whole checkout system in one process, on fixed local
//! ports, for a newcomer's first run; plus the seed's monitoring commands as
//! subcommands that work against any broker.
//!
//! # Layout
//! - [`config`]: the launcher's [`StackConfig`] (fixed local ports, overridable).
//! - [`system`]: starts broker, Stripe emulator, checkout, blazing_sun and the
//!   gateway in order ([`system::start`]) and stops them together.
//! - [`banner`]: the endpoints, demo tokens and walkthrough printed at start.
//! - [`embedded_broker`]: librdkafka's mock cluster behind a fixed bootstrap port.
//! - [`monitor`]: `topics`, `tail`, `lag` (the seed's `kafka-*.sh` commands).
//! - [`dlq`]: `dlq replay`, sending a dead-letter topic's records back to their topic.
//! - [`token`]: `token`, a bearer token signed with `JWT_SECRET` (for compose users).
//! - `main.rs`: argument parsing for the subcommands.

pub mod banner;
pub mod config;
pub mod dlq;
pub mod embedded_broker;
pub mod monitor;
pub mod system;
pub mod token;

pub use config::StackConfig;
