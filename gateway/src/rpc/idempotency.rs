//! [`KeyLocks`]: one async lock per request_id being started, so two
//! concurrent StartCheckout calls with the same idempotency key (which
//! derive the same request_id) produce one event between them. Used by
//! `start_checkout.rs`; it lives in [`super::Shared`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use checkout_contract::RequestId;

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
