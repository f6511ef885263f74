//! Stripe's idempotent requests: the first response to a POST with an
//! `Idempotency-Key` is saved and replayed for every later request with the
//! same key and the same parameters (even a 500); other parameters get 400
//! `idempotency_error`; a request arriving while the first one still runs
//! gets 409 `idempotency_key_in_use`. Validation failures (400), 401, 409 and
//! 429 are not saved, so the client may fix the request or retry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::StatusCode;
use serde_json::Value;

use crate::error::ApiError;

/// What the store knows about one key.
#[derive(Debug, Clone)]
enum Entry {
    InFlight {
        fingerprint: String,
    },
    Done {
        fingerprint: String,
        status: StatusCode,
        body: Value,
    },
}

/// Saved responses by idempotency key.
#[derive(Debug, Default, Clone)]
pub struct Store {
    entries: Arc<Mutex<HashMap<String, Entry>>>,
}

/// The outcome of [`Store::begin`].
#[derive(Debug)]
pub enum Begin {
    /// First use: run the request, then call [`Guard::finish`].
    Run(Guard),
    /// A saved response to send again.
    Replay(StatusCode, Value),
    /// A mismatch or a concurrent request.
    Reject(ApiError),
}

/// Holds a key while its first request runs; dropping it without
/// [`Guard::finish`] (the client went away) frees the key again.
#[derive(Debug)]
pub struct Guard {
    store: Store,
    key: String,
    fingerprint: String,
    finished: bool,
}

/// A canonical form of a request: method, path and sorted parameters.
pub fn fingerprint(route: &str, pairs: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort();
    let mut out = route.to_owned();
    for (k, v) in sorted {
        out.push('\n');
        out.push_str(k);
        out.push('=');
        out.push_str(v);
    }
    out
}

impl Store {
    pub fn begin(&self, key: &str, fingerprint: String) -> Begin {
        let mut entries = self.entries.lock().expect("idempotency lock");
        match entries.get(key) {
            None => {
                entries.insert(
                    key.to_owned(),
                    Entry::InFlight {
                        fingerprint: fingerprint.clone(),
                    },
                );
                Begin::Run(Guard {
                    store: self.clone(),
                    key: key.to_owned(),
                    fingerprint,
                    finished: false,
                })
            }
            Some(Entry::InFlight { fingerprint: first }) if *first == fingerprint => {
                Begin::Reject(ApiError::idempotency_in_use(key))
            }
            Some(Entry::Done {
                fingerprint: first,
                status,
                body,
            }) if *first == fingerprint => Begin::Replay(*status, body.clone()),
            Some(_) => Begin::Reject(ApiError::idempotency_mismatch(key)),
        }
    }

    /// Number of saved responses (for tests of the store itself).
    pub fn saved(&self) -> usize {
        self.entries
            .lock()
            .expect("idempotency lock")
            .values()
            .filter(|e| matches!(e, Entry::Done { .. }))
            .count()
    }
}

impl Guard {
    /// Saves the response unless it is one Stripe does not save.
    pub fn finish(mut self, status: StatusCode, body: &Value) {
        self.finished = true;
        let mut entries = self.store.entries.lock().expect("idempotency lock");
        let unsaved = matches!(
            status,
            StatusCode::BAD_REQUEST
                | StatusCode::UNAUTHORIZED
                | StatusCode::CONFLICT
                | StatusCode::TOO_MANY_REQUESTS
        );
        if unsaved {
            entries.remove(&self.key);
        } else {
            let fingerprint = std::mem::take(&mut self.fingerprint);
            entries.insert(
                self.key.clone(),
                Entry::Done {
                    fingerprint,
                    status,
                    body: body.clone(),
                },
            );
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.finished
            && let Ok(mut entries) = self.store.entries.lock()
        {
            entries.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_mismatch_in_flight_and_unsaved_errors() {
        let store = Store::default();
        let fp = |v: &str| fingerprint("POST /x", &[("a".into(), v.into())]);
        let Begin::Run(g) = store.begin("k", fp("1")) else {
            panic!()
        };
        assert!(
            matches!(store.begin("k", fp("1")), Begin::Reject(e) if e.status == StatusCode::CONFLICT)
        );
        g.finish(StatusCode::INTERNAL_SERVER_ERROR, &Value::Null);
        assert!(matches!(
            store.begin("k", fp("1")),
            Begin::Replay(StatusCode::INTERNAL_SERVER_ERROR, _)
        ));
        assert!(
            matches!(store.begin("k", fp("2")), Begin::Reject(e) if e.type_ == "idempotency_error")
        );

        let Begin::Run(g) = store.begin("v", fp("1")) else {
            panic!()
        };
        g.finish(StatusCode::BAD_REQUEST, &Value::Null);
        assert!(
            matches!(store.begin("v", fp("2")), Begin::Run(_)),
            "a 400 is not saved, and the dropped guard frees the key"
        );
        assert!(matches!(store.begin("v", fp("3")), Begin::Run(_)));
        assert_eq!(store.saved(), 1);
    }
}
