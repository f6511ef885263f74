//! The event JSON decoders of the contract crate, as the consumers use them:
//! `CheckoutRequestEvent` (+ validation) and `CheckoutFinishedEvent` from
//! arbitrary bytes. Must return errors, never panic; what decodes must
//! re-encode to JSON that decodes and re-encodes to the same bytes.
#![no_main]

use checkout_contract::{CheckoutFinishedEvent, CheckoutRequestEvent};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<CheckoutRequestEvent>(data) {
        let _ = request.validate();
        stable::<CheckoutRequestEvent>(&serde_json::to_vec(&request).unwrap());
    }
    if let Ok(finished) = serde_json::from_slice::<CheckoutFinishedEvent>(data) {
        stable::<CheckoutFinishedEvent>(&serde_json::to_vec(&finished).unwrap());
    }
});

/// What we encoded decodes, and encodes to the same bytes again.
fn stable<T: serde::Serialize + serde::de::DeserializeOwned>(encoded: &[u8]) {
    let decoded: T = serde_json::from_slice(encoded).expect("our own encoding decodes");
    assert_eq!(serde_json::to_vec(&decoded).unwrap(), encoded, "encoding is stable");
}
