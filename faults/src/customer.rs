//! The customer: finishes every open Stripe session in the emulator, mostly
//! paid, some settling later, some failing later, some expiring — decided
//! by the request_id, so a rerun pays the same way.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use checkout_contract::shutdown::Stopping;
use stripe_emulator::Outcome;
use stripe_emulator::session::Status;

/// How the customer finishes the session of `request_id`: 70 % paid, 10 %
/// paid asynchronously, 10 % failed asynchronously, 10 % expired.
pub fn outcome_for(request_id: &str) -> Outcome {
    let h = request_id
        .bytes()
        .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    match h % 10 {
        0 => Outcome::AsyncFailed,
        1 => Outcome::Expired,
        2 => Outcome::AsyncSucceeded,
        _ => Outcome::Paid,
    }
}

/// Finishes each open session the way [`outcome_for`] says, until `stop`
/// says stop. Returns how many sessions got each outcome.
///
/// # Panics
/// When the emulator refuses to finish an open session.
pub async fn pay_every_session(
    stripe: stripe_emulator::Handle,
    mut stop: Stopping,
) -> BTreeMap<String, u64> {
    let mut acted = HashSet::new();
    let mut counts = BTreeMap::new();
    loop {
        for s in stripe.sessions().sessions {
            if s.status != Status::Open || !acted.insert(s.id.clone()) {
                continue;
            }
            let mut outcome = outcome_for(s.client_reference_id.as_deref().unwrap_or_default());
            // An async failure leaves the session complete and unpaid; only
            // its PaymentIntent tells it failed, and reconciliation reads
            // sessions only: such a session needs its webhook.
            if outcome == Outcome::AsyncFailed && stripe.webhooks_lost(&s.id) {
                outcome = Outcome::Paid;
            }
            stripe
                .pay(&s.id, outcome)
                .unwrap_or_else(|e| panic!("paying {}: {e:?}", s.id));
            *counts.entry(format!("{outcome:?}")).or_insert(0) += 1;
        }
        tokio::select! {
            () = stop.stopped() => return counts,
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
}
