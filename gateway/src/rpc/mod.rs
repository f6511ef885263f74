//! One file per RPC of `checkout.v1.CheckoutGateway`. Each takes the shared
//! [`Shared`] state and the authenticated caller and returns
//! `Result<_, ApiError>`; `crate::service` turns that into gRPC.
//!
//! - [`start_checkout`]: validate, produce to `checkout.requests`, optionally wait.
//! - [`watch_checkout`]: history then live updates from the index.
//! - [`get_checkout`]: the latest known status.

pub mod get_checkout;
pub mod start_checkout;
pub mod watch_checkout;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use checkout_contract::topics::Topics;
use checkout_contract::{HostAllowlist, RequestId};
use rdkafka::producer::FutureProducer;
use tokio::sync::watch;

use crate::index::Index;
use crate::metrics::Metrics;

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
    /// Turns true when the gateway shuts down: streams end with UNAVAILABLE.
    pub stopping: watch::Receiver<bool>,
    /// Idempotency keys being produced right now (concurrent duplicates wait).
    pub in_flight: KeyLocks,
    /// Hosts success_url and cancel_url may point at.
    pub redirect_hosts: HostAllowlist,
}

/// One async lock per request_id being started, so two concurrent calls
/// with the same idempotency key produce one event between them.
#[derive(Default)]
pub struct KeyLocks(Mutex<HashMap<RequestId, Arc<tokio::sync::Mutex<()>>>>);

/// Holds the lock of one request_id; removes it from the map when the last
/// holder or waiter is gone.
pub struct KeyGuard<'a> {
    locks: &'a KeyLocks,
    id: RequestId,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl KeyLocks {
    pub async fn lock(&self, id: RequestId) -> KeyGuard<'_> {
        let lock = Arc::clone(self.map().entry(id).or_default());
        let guard = lock.lock_owned().await;
        KeyGuard {
            locks: self,
            id,
            guard: Some(guard),
        }
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<RequestId, Arc<tokio::sync::Mutex<()>>>> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keys locked or waited for right now.
    pub fn len(&self) -> usize {
        self.map().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        let mut map = self.locks.map();
        if map.get(&self.id).is_some_and(|l| Arc::strong_count(l) == 1) {
            map.remove(&self.id);
        }
    }
}

/// Resolves once `stopping` turns true (or its sender is gone).
pub(crate) async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|s| *s).await;
}
