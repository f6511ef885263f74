//! One Stripe session per request, and never a false `failed`: copies of a
//! request with other trace headers, a key first used with other parameters,
//! requests older than Stripe's idempotency window, answers lost to timeouts.

use std::collections::HashMap;
use std::time::Duration;

use checkout::checkout_request::EXPIRED_BEFORE_SESSION;
use checkout_contract::kafka::{HEADER_TRACEPARENT, send_json};
use checkout_contract::trace::TraceContext;
use checkout_contract::{CheckoutRequestEvent, CheckoutStatus};
use stripe::{ClientBuilder, IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_checkout::checkout_session::CreateCheckoutSession;
use stripe_emulator::{Faults, Outcome};

use crate::helpers::{API_KEY, Options, TestApp, WAIT, request, spawn_app, spawn_app_with};

/// Sessions the emulator created for the request, whatever their key.
fn sessions_of(app: &TestApp, request_id: &str) -> u64 {
    app.emulator
        .sessions()
        .created_per_client_reference_id
        .get(request_id)
        .copied()
        .unwrap_or(0)
}

fn statuses(app: &TestApp, request_id: &str) -> Vec<CheckoutStatus> {
    app.events_for(request_id)
        .iter()
        .map(|e| e.status)
        .collect()
}

async fn send_with_trace(app: &TestApp, r: &CheckoutRequestEvent, trace: &TraceContext) {
    let header = trace.header();
    send_json(
        &app.producer,
        &app.topics.requests,
        &r.request_id,
        r,
        &[(HEADER_TRACEPARENT, header.as_str())],
    )
    .await
    .expect("request produced");
}

/// Creates the request's session the way an older worker did: through
/// async-stripe, under `checkout:{request_id}`, with the caller's trace in the
/// metadata, so today's parameters differ from the ones the key was first used with.
async fn create_like_an_older_worker(app: &TestApp, r: &CheckoutRequestEvent) -> String {
    let valid = r.clone().validate().expect("a valid request");
    let metadata = HashMap::from([
        ("request_id".to_owned(), r.request_id.clone()),
        ("user_id".to_owned(), r.user_id.to_string()),
        ("amount_cents".to_owned(), r.amount_cents.to_string()),
        ("currency".to_owned(), r.currency.clone()),
        ("purpose".to_owned(), r.purpose.clone()),
        ("traceparent".to_owned(), TraceContext::new_root().header()),
    ]);
    let params: CreateCheckoutSession = checkout::stripe::session_params(&valid).metadata(metadata);
    let client = ClientBuilder::new(API_KEY)
        .url(app.api_base.clone())
        .build()
        .expect("client");
    let key = format!("checkout:{}", r.request_id);
    let session = params
        .customize()
        .request_strategy(RequestStrategy::Idempotent(
            IdempotencyKey::new(&key).unwrap(),
        ))
        .send(&client)
        .await
        .expect("the older worker's session");
    session.id.as_str().to_owned()
}

#[tokio::test]
async fn the_same_request_with_other_trace_headers_makes_one_session_and_no_failed() {
    let app = spawn_app().await;
    let r = request(700);
    send_with_trace(&app, &r, &TraceContext::new_root()).await;
    send_with_trace(&app, &r, &TraceContext::new_root()).await;

    let created = testkit::eventually("two session_created", WAIT, || async {
        let created: Vec<_> = app
            .events_for(&r.request_id)
            .into_iter()
            .filter(|e| e.status == CheckoutStatus::SessionCreated)
            .collect();
        (created.len() == 2).then_some(created)
    })
    .await;
    assert_eq!(created[0].session_id, created[1].session_id);
    assert_eq!(sessions_of(&app, &r.request_id), 1);
    let stats = app.emulator.stats();
    assert_eq!(stats.sessions_created, 1, "{stats:?}");
    assert!(
        stats.idempotent_replays >= 1,
        "the copy was a replay: {stats:?}"
    );
    let report = app.emulator.sessions();
    assert!(
        !report.sessions[0].metadata.contains_key("traceparent"),
        "no trace in the session: {:?}",
        report.sessions[0].metadata
    );
    assert_eq!(
        statuses(&app, &r.request_id),
        [CheckoutStatus::SessionCreated; 2],
        "never failed"
    );
}

#[tokio::test]
async fn a_key_first_used_with_other_parameters_publishes_the_existing_open_session() {
    let app = spawn_app().await;
    let r = request(900);
    let existing = create_like_an_older_worker(&app, &r).await;
    let creates_before = app.emulator.stats().create_calls;

    app.send(&r).await;
    let created = app
        .wait_for(&r.request_id, CheckoutStatus::SessionCreated)
        .await;
    assert_eq!(created.session_id.as_deref(), Some(existing.as_str()));
    let url = created.session_url.expect("the open session's url");
    assert!(url.ends_with(&existing), "{url}");
    assert_eq!((created.user_id, created.amount_cents), (123, 900));
    assert_eq!(
        app.emulator.stats().create_calls,
        creates_before + 1,
        "one create (answered idempotency_error), not retried"
    );
    assert_eq!(sessions_of(&app, &r.request_id), 1);
    assert_eq!(
        statuses(&app, &r.request_id),
        [CheckoutStatus::SessionCreated]
    );
}

#[tokio::test]
async fn a_key_first_used_with_other_parameters_publishes_the_existing_sessions_payment() {
    let app = spawn_app().await;
    let r = request(1100);
    let existing = create_like_an_older_worker(&app, &r).await;
    // Paid while no webhook can arrive: only the worker can tell.
    app.emulator.set_webhook(None, None);
    app.emulator.pay(&existing, Outcome::Paid).unwrap();

    app.send(&r).await;
    let success = app.wait_for(&r.request_id, CheckoutStatus::Success).await;
    assert_eq!(success.session_id.as_deref(), Some(existing.as_str()));
    assert!(success.payment_intent_id.is_some());
    assert_eq!(success.amount_cents, 1100);
    assert_eq!(statuses(&app, &r.request_id), [CheckoutStatus::Success]);
    assert_eq!(sessions_of(&app, &r.request_id), 1);
}

/// `request` made `hours` ago.
fn made_hours_ago(mut r: CheckoutRequestEvent, hours: i64) -> CheckoutRequestEvent {
    r.timestamp = checkout_contract::events::now() - chrono::TimeDelta::hours(hours);
    r
}

#[tokio::test]
async fn a_request_older_than_the_key_window_fails_without_creating_a_session() {
    let app = spawn_app().await;
    let r = made_hours_ago(request(500), 25);
    app.send(&r).await;
    let failed = app.wait_for(&r.request_id, CheckoutStatus::Failed).await;
    assert_eq!(
        failed.error_message.as_deref(),
        Some(EXPIRED_BEFORE_SESSION)
    );
    assert_eq!((failed.session_id, failed.amount_cents), (None, 500));
    let stats = app.emulator.stats();
    assert_eq!(
        stats.create_calls, 0,
        "Stripe's create never called: {stats:?}"
    );
    assert!(
        stats.api_calls >= 1,
        "its sessions were looked up: {stats:?}"
    );
    assert_eq!(stats.sessions_created, 0);
}

#[tokio::test]
async fn a_request_older_than_the_key_window_with_a_session_gets_that_sessions_state() {
    let app = spawn_app().await;
    let r = made_hours_ago(request(600), 25);
    let existing = create_like_an_older_worker(&app, &r).await;

    app.send(&r).await;
    let created = app
        .wait_for(&r.request_id, CheckoutStatus::SessionCreated)
        .await;
    assert_eq!(created.session_id.as_deref(), Some(existing.as_str()));
    assert_eq!(
        app.emulator.stats().create_calls,
        1,
        "only the older worker's create"
    );
    assert_eq!(
        statuses(&app, &r.request_id),
        [CheckoutStatus::SessionCreated]
    );
}

#[tokio::test]
async fn answers_lost_to_timeouts_are_never_failed_and_find_the_one_session() {
    // Stripe creates the session, then the answer comes too late: every
    // attempt and every lookup times out while the fault lasts.
    let app = spawn_app_with(Options {
        faults: Faults {
            latency_after_ms: 1000,
            ..Faults::default()
        },
        stripe_timeout: Duration::from_millis(200),
        max_attempts: 2,
        ..Options::default()
    })
    .await;
    let r = request(800);
    app.send(&r).await;
    testkit::eventually(
        "the session exists and more calls timed out",
        WAIT,
        || async {
            let stats = app.emulator.stats();
            (stats.sessions_created == 1 && stats.api_calls >= 6).then_some(())
        },
    )
    .await;
    assert!(
        app.events_for(&r.request_id).is_empty(),
        "nothing published while no answer arrives"
    );

    app.emulator.set_faults(Faults::default()).unwrap();
    let created = app
        .wait_for(&r.request_id, CheckoutStatus::SessionCreated)
        .await;
    let report = app.emulator.sessions();
    assert_eq!(report.sessions.len(), 1);
    assert_eq!(
        created.session_id.as_deref(),
        Some(report.sessions[0].id.as_str())
    );
    assert_eq!(
        statuses(&app, &r.request_id),
        [CheckoutStatus::SessionCreated]
    );
}

#[tokio::test]
async fn a_stop_while_stripe_is_down_leaves_the_request_for_redelivery() {
    let mut app = spawn_app_with(Options {
        faults: Faults {
            rate_500: 1.0,
            ..Faults::default()
        },
        max_attempts: 2,
        ..Options::default()
    })
    .await;
    let r = request(500);
    app.send(&r).await;
    testkit::eventually("the request waits on Stripe", WAIT, || async {
        (app.emulator.stats().create_calls >= 4).then_some(())
    })
    .await;

    // The waiting request gives up at once instead of using up the 5 s grace period.
    let stopping = std::time::Instant::now();
    app.stop().await.expect("a clean stop");
    assert!(
        stopping.elapsed() < Duration::from_secs(4),
        "stopped in {:?}",
        stopping.elapsed()
    );
    assert!(app.events_for(&r.request_id).is_empty(), "nothing answered");
    assert_eq!(
        app.committed_total().await,
        0,
        "the waiting request is not committed"
    );

    app.emulator.set_faults(Faults::default()).unwrap();
    app.restart().await;
    app.wait_for(&r.request_id, CheckoutStatus::SessionCreated)
        .await;
    assert_eq!(sessions_of(&app, &r.request_id), 1);
    assert_eq!(
        statuses(&app, &r.request_id),
        [CheckoutStatus::SessionCreated]
    );
}
