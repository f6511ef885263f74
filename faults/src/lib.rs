//! What the fault suite (`tests/faults/`) and the scale suite
//! (`tests/scale/`) share: the services as real processes, the clients, the
//! customer, and the books they check afterwards.
//!
//! Layout:
//! - `src/main.rs`: `fault-node`, one service (`checkout`, `blazing_sun` or
//!   `gateway`) as a real process, so a suite can SIGKILL it.
//! - [`nodes`]: starting, SIGKILLing and restarting `fault-node` processes.
//! - [`client`]: StartCheckout as a service calls it, retried while unavailable.
//! - [`customer`]: finishes every open Stripe session in the emulator.
//! - [`balancer`]: a round-robin TCP balancer in front of the workers' webhooks.
//! - [`observe`]: the ledger, the groups' lag, waiting for the system to settle.
//! - [`books`]: everything read after a run and the invariants on it.
//! - `tests/faults/`: the fault suite; `tests/scale/`: the scale suite.
//! - `examples/rejoin.rs`: how soon a SIGKILLed consumer's replacement owns
//!   every partition, as a dynamic or a static group member.

pub mod balancer;
pub mod books;
pub mod client;
pub mod customer;
pub mod nodes;
pub mod observe;

/// Builds the Stripe emulator in process and runs it until `stop` says
/// stop. Returns its handle and its API base URL (`STRIPE_API_BASE`).
///
/// # Panics
/// When it cannot be built.
pub async fn start_emulator(
    config: stripe_emulator::Config,
    stop: &checkout_contract::shutdown::Stop,
) -> (stripe_emulator::Handle, String) {
    let emulator = stripe_emulator::Emulator::build(config)
        .await
        .expect("emulator");
    let (stripe, api_base) = (emulator.handle(), emulator.api_base());
    tokio::spawn(emulator.run_until_stopped(stop.when_stopped()));
    (stripe, api_base)
}
