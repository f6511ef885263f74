//! Stripe's idempotent requests: the first response to a POST with an
//! `Idempotency-Key` is saved and replayed for every later request with the
//! same key and the same parameters (even a 500); other parameters get 400
//! `idempotency_error`; a request arriving while the first one still runs
//! gets 409 `idempotency_key_in_use` (Stripe's answer to concurrent use of
//! one key; its 429 `lock_timeout` is for concurrent requests on one object,
//! see [`crate::api`]). Stripe saves a result "only after the execution of an
//! endpoint begins": every answer of the endpoint itself is saved, 400s
//! included (a missing session, a state that forbids the call, a business
//! rule such as `amount_too_small`); a request refused before that (its
//! parameters failed validation, [`crate::error::ApiError::before_execution`],
//! or 401 / 409 / 429) saves nothing, so the client may fix it or retry.

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
    /// Saves the response when `executed` (the endpoint began executing),
    /// else frees the key for a retry.
    pub fn finish(mut self, status: StatusCode, body: &Value, executed: bool) {
        self.finished = true;
        let mut entries = self.store.entries.lock().expect("idempotency lock");
        if !executed {
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
        g.finish(StatusCode::INTERNAL_SERVER_ERROR, &Value::Null, true);
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
        g.finish(StatusCode::BAD_REQUEST, &Value::Null, false);
        assert!(
            matches!(store.begin("v", fp("2")), Begin::Run(_)),
            "a 400 before execution is not saved, and the dropped guard frees the key"
        );
        assert!(matches!(store.begin("v", fp("3")), Begin::Run(_)));
        assert_eq!(store.saved(), 1);

        let Begin::Run(g) = store.begin("e", fp("1")) else {
            panic!()
        };
        g.finish(StatusCode::BAD_REQUEST, &Value::Null, true);
        assert!(
            matches!(
                store.begin("e", fp("1")),
                Begin::Replay(StatusCode::BAD_REQUEST, _)
            ),
            "a 400 the endpoint answered is saved"
        );
    }
}
