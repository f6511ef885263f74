//! The emulator renders sessions and events with exactly the keys Stripe
//! sends for the API version async-stripe pins: the same top-level keys as
//! the checkout crate's Stripe-shaped fixtures (`checkout/src/testdata/`,
//! which its webhook tests decode), so the emulator cannot drift from
//! Stripe's shape again unnoticed. The fixtures' deliberately unknown
//! fields (`unknown_*`) are the only keys the emulator does not send.

use std::collections::BTreeSet;

use serde_json::Value;
use stripe_emulator::session::API_VERSION;
use stripe_emulator::{Config, Outcome};

use crate::helpers::{TestEmulator, create_body, with_receiver};

const OPEN_SESSION: &str = include_str!("../../../checkout/src/testdata/checkout_session.json");
const EVENTS: [(&str, &str); 4] = [
    (
        "checkout.session.completed",
        include_str!("../../../checkout/src/testdata/event_checkout_session_completed.json"),
    ),
    (
        "checkout.session.async_payment_succeeded",
        include_str!(
            "../../../checkout/src/testdata/event_checkout_session_async_payment_succeeded.json"
        ),
    ),
    (
        "checkout.session.async_payment_failed",
        include_str!(
            "../../../checkout/src/testdata/event_checkout_session_async_payment_failed.json"
        ),
    ),
    (
        "checkout.session.expired",
        include_str!("../../../checkout/src/testdata/event_checkout_session_expired.json"),
    ),
];

/// The keys of an object, without the fixtures' planted unknown ones.
fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .filter(|k| !k.starts_with("unknown_"))
        .cloned()
        .collect()
}

fn fixture(type_: &str) -> Value {
    let (_, text) = EVENTS.iter().find(|(t, _)| *t == type_).unwrap();
    serde_json::from_str(text).unwrap()
}

fn assert_same_keys(what: &str, emulator: &Value, stripe: &Value) {
    let (ours, theirs) = (keys(emulator), keys(stripe));
    assert_eq!(
        ours,
        theirs,
        "{what}: the emulator sends {:?} that Stripe does not, and lacks {:?}",
        ours.difference(&theirs).collect::<Vec<_>>(),
        theirs.difference(&ours).collect::<Vec<_>>()
    );
}

/// Creates a session with a raw request: its JSON.
async fn create(emu: &TestEmulator, request_id: &str) -> Value {
    let (status, created) = emu
        .post_form(
            "v1/checkout/sessions",
            &create_body(request_id, 500, "eur"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{created}");
    created
}

fn id(session: &Value) -> String {
    session["id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn sessions_and_events_have_exactly_stripes_keys() {
    let (emu, receiver) = with_receiver(Config::default()).await;
    let open: Value = serde_json::from_str(OPEN_SESSION).unwrap();

    // Create, retrieve, list: the open session.
    let created = create(&emu, "shape-a").await;
    assert_same_keys("created session", &created, &open);
    assert_eq!(created["ui_mode"], "hosted_page");
    let (_, retrieved) = emu
        .get_json(&format!("v1/checkout/sessions/{}", id(&created)))
        .await;
    assert_same_keys("retrieved session", &retrieved, &open);
    let (_, listed) = emu.get_json("v1/checkout/sessions?limit=1").await;
    assert_same_keys("listed session", &listed["data"][0], &open);

    // The four events, each next to Stripe's: completed (paid), completed +
    // async_payment_succeeded, completed + async_payment_failed, and
    // expired through the API.
    for (request_id, outcome) in [
        ("shape-b", Outcome::AsyncSucceeded),
        ("shape-c", Outcome::AsyncFailed),
    ] {
        let session = create(&emu, request_id).await;
        emu.handle.pay(&id(&session), outcome).unwrap();
    }
    emu.handle.pay(&id(&created), Outcome::Paid).unwrap();
    let to_expire = create(&emu, "shape-d").await;
    let (status, expired) = emu
        .post_form(
            &format!("v1/checkout/sessions/{}/expire", id(&to_expire)),
            "",
            Some("shape-expire"),
        )
        .await;
    assert_eq!(status, 200, "{expired}");
    assert_same_keys("expired session", &expired, &open);

    let deliveries = receiver.wait_for(6).await;
    let mut checked = BTreeSet::new();
    for delivery in &deliveries {
        let event = delivery.json();
        let type_ = event["type"].as_str().unwrap().to_owned();
        let stripe = fixture(&type_);
        assert_same_keys(&format!("{type_} event"), &event, &stripe);
        assert_same_keys(&format!("{type_} data"), &event["data"], &stripe["data"]);
        assert_same_keys(
            &format!("{type_} session"),
            &event["data"]["object"],
            &stripe["data"]["object"],
        );
        assert_eq!(event["api_version"], API_VERSION);
        assert_eq!(
            stripe["api_version"], API_VERSION,
            "the fixtures' version is the pinned one"
        );
        let (ours, theirs) = (
            &event["data"]["object"]["customer_details"],
            &stripe["data"]["object"]["customer_details"],
        );
        if !ours.is_null() && !theirs.is_null() {
            assert_same_keys(&format!("{type_} customer_details"), ours, theirs);
        }
        if type_ == "checkout.session.expired" {
            assert_eq!(event["request"]["idempotency_key"], "shape-expire");
            assert!(event["request"]["id"].as_str().unwrap().starts_with("req_"));
        }
        checked.insert(type_);
    }
    assert_eq!(checked.len(), 4, "{checked:?}");
}
