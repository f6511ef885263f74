//! The checkout crate's webhook verification (`Stripe-Signature` check and
//! event parser) and what it decides to publish. The first byte picks the
//! mode: a raw signature header from the input (the header parser and the
//! HMAC check), or the payload correctly signed with a current timestamp
//! (so the event parser, `decide` and `traceparent` see arbitrary JSON).
#![no_main]

use checkout::stripe_event::{decide, traceparent};
use checkout::webhook::verify;
use checkout_contract::secret::Secret;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

const SECRET: &str = "whsec_fuzz";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let secrets = [Secret::new(SECRET.to_owned())];
    let Ok(text) = std::str::from_utf8(rest) else { return };
    let result = if mode % 2 == 0 {
        // header \n payload
        let (header, payload) = text.split_once('\n').unwrap_or((text, ""));
        verify(payload, header, &secrets)
    } else {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{now}.{text}").as_bytes());
        let header = format!("t={now},v1={}", hex::encode(mac.finalize().into_bytes()));
        verify(text, &header, &secrets)
    };
    if let Ok(event) = result {
        let _ = decide(&event);
        let _ = traceparent(&event);
    }
});
