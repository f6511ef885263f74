//! The fault suite: the whole checkout system on its own durable
//! broker, driven through the gateway while processes and the broker are
//! SIGKILLed and the Stripe emulator misbehaves; then the books are checked.
//!
//! - `suite`: the run and its assertions; the processes, clients, customer
//!   and books are the crate's library (`faults::*`, shared with `tests/scale/`).

mod suite;

/// The `fault-node` binary the suite runs the services with.
const FAULT_NODE: &str = env!("CARGO_BIN_EXE_fault-node");
