//! The scale suite: every service replicated as separate OS
//! processes on one broker and one PostgreSQL — 2 gateways, 3 checkout
//! workers sharing one Stripe budget, 2 blazing_sun — with one of each
//! SIGKILLed and restarted mid-run; then the books, the watches and the
//! Stripe emulator's per-second series are checked.
//!
//! - `suite`: the run and its assertions.
//! - `budget`: the per-second windows: backlog, ceiling and floor.
//! - `watch`: a WatchCheckout client that reconnects when its replica dies.
//!
//! The processes, clients, customer and books are the crate's library
//! (`faults::*`, shared with `tests/faults/`).

mod budget;
mod suite;
mod watch;

/// The `fault-node` binary the suite runs the services with.
const FAULT_NODE: &str = env!("CARGO_BIN_EXE_fault-node");
