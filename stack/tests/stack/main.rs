//! Tests of the all-in-one launcher's parts on real brokers.

mod browser;
mod command_line;
mod deployment;
mod dlq;
mod embedded;
mod launcher;
mod monitoring;
mod observability;
mod otel;
mod reconcile;
mod stopping;
mod token;
mod trace;

use checkout_contract::events::{
    CheckoutFinishedEvent, CheckoutRequestEvent, CheckoutStatus, iso8601,
};

pub fn finished(id: &str, status: CheckoutStatus) -> CheckoutFinishedEvent {
    let request = CheckoutRequestEvent {
        request_id: id.to_owned(),
        user_id: 7,
        amount_cents: 500,
        currency: "eur".into(),
        purpose: "balance_topup".into(),
        timestamp: iso8601::parse("2024-01-15T10:30:00Z").unwrap(),
        success_url: "https://example.com/ok".into(),
        cancel_url: "https://example.com/cancel".into(),
    };
    CheckoutFinishedEvent::for_request(&request, status)
}
