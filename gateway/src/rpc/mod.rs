//! One file per RPC of `checkout.v1.CheckoutGateway`. Each takes the shared
//! [`Shared`] state and the authenticated caller and returns
//! `Result<_, ApiError>`; `crate::service` turns that into gRPC.
//!
//! - [`start_checkout`]: validate, produce to `checkout.requests`, optionally wait.
//! - [`watch_checkout`]: history then live updates from the index.
//! - [`get_checkout`]: the latest known status.
//! - [`idempotency`]: [`KeyLocks`], so concurrent calls with one idempotency
//!   key produce one event.

pub mod get_checkout;
pub mod idempotency;
pub mod start_checkout;
pub mod watch_checkout;

use std::sync::Arc;
use std::time::Duration;

use checkout_contract::HostAllowlist;
use checkout_contract::shutdown::Stopping;
use checkout_contract::topics::Topics;
use rdkafka::producer::FutureProducer;

use crate::index::Index;
use crate::metrics::Metrics;
pub use idempotency::{KeyGuard, KeyLocks};

/// What every RPC works with; one per gateway, behind an `Arc`.
pub struct Shared {
    pub index: Arc<Index>,
    pub producer: FutureProducer,
    pub topics: Topics,
    pub metrics: Arc<Metrics>,
    /// How long StartCheckout waits for the broker's acknowledgement.
    pub produce_timeout: Duration,
    /// The longest a unary call may take (also capped by the call's `grpc-timeout`).
    pub unary_timeout: Duration,
    /// The longest one WatchCheckout stream stays open.
    pub watch_max: Duration,
    /// Says stop when the gateway shuts down: streams end with UNAVAILABLE.
    pub stopping: Stopping,
    /// Idempotency keys being produced right now (concurrent duplicates wait).
    pub in_flight: KeyLocks,
    /// Hosts success_url and cancel_url may point at.
    pub redirect_hosts: HostAllowlist,
}
