//! The Stripe emulator's form parser (`application/x-www-form-urlencoded`
//! bodies with Stripe's `a[b][0]=c` nesting) and the session parameter
//! parser on top of it: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stripe_emulator::form;

fuzz_target!(|data: &[u8]| {
    if let Ok(pairs) = form::pairs(data) {
        if let Ok(tree) = form::parse(&pairs) {
            let _ = tree.items();
            let _ = stripe_emulator::create_params::parse(&tree);
        }
    }
});
