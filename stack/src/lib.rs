//! `checkout-stack`: the whole checkout system in one process, on fixed local
//! ports, for a newcomer's first run; plus the seed's monitoring commands as
//! subcommands that work against any broker.
//!
//! # Layout
//! - [`embedded_broker`]: librdkafka's mock cluster behind a fixed bootstrap port.
//! - [`monitor`]: `topics`, `tail`, `lag` (the seed's `kafka-*.sh` commands).

pub mod embedded_broker;
pub mod monitor;
