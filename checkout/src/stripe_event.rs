//! What a Checkout Session means for `checkout.finished` (seed document,
//! "Status Values"), in one place for the webhook, the worker and
//! reconciliation:
//!
//! | session (as retrieved, or in an event)          | finished event                      |
//! |-------------------------------------------------|-------------------------------------|
//! | `payment_status` `paid` or `no_payment_required` | `success` with payment_intent_id   |
//! | `status` `expired`                              | `failed`, "expired"                 |
//! | `status` `open`                                 | still payable: `session_created` with its url |
//! | `status` `complete`, `unpaid`                   | none yet (an async method is pending) |
//!
//! [`from_session`] applies this table; [`decide`] applies it to a verified
//! webhook event, where only `checkout.session.async_payment_failed` says
//! more than the session itself (a failed async payment leaves the session
//! `complete` and `unpaid`):
//!
//! | Stripe event                                   | finished event                      |
//! |------------------------------------------------|-------------------------------------|
//! | `checkout.session.completed`                   | per the session (success, or none yet) |
//! | `checkout.session.async_payment_succeeded`     | `success`                           |
//! | `checkout.session.async_payment_failed`        | `failed`                            |
//! | `checkout.session.expired`                     | `failed`, "expired"                 |
//! | anything else                                  | none (acknowledged and ignored)     |
//!
//! Every field comes from the session's metadata (written by
//! [`crate::stripe::session_params`]), so no local state is needed and a
//! duplicate delivery yields the identical event. Stripe's session state
//! machine never emits two contradicting terminal events for one session
//! (an expired session cannot complete, a paid one cannot expire), so
//! out-of-order delivery cannot make this mapping contradict itself either.
//! Used by [`crate::webhook`] and [`crate::checkout_request`].

use checkout_contract::events::now;
use checkout_contract::trace::{TRACEPARENT, TraceContext};
use checkout_contract::{CheckoutFinishedEvent, CheckoutStatus};
use stripe_shared::{CheckoutSession, CheckoutSessionPaymentStatus, CheckoutSessionStatus};
use stripe_webhook::{Event, EventObject};

pub const EXPIRED_MESSAGE: &str = "checkout session expired";
pub const ASYNC_FAILED_MESSAGE: &str = "asynchronous payment failed";

/// The decision for one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Publish this event, then acknowledge.
    Publish(Box<CheckoutFinishedEvent>),
    /// Acknowledge without publishing; the reason is logged.
    Ignore(&'static str),
}

/// What a session means now, for `checkout.finished`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionState {
    /// Still payable until `expires_at` (Unix seconds): `event` is its
    /// `session_created`, with the session's url.
    Open {
        event: Box<CheckoutFinishedEvent>,
        expires_at: i64,
    },
    /// A terminal outcome: `success` (paid, or nothing to pay) or `failed`
    /// (expired), the same event the webhook publishes.
    Finished(Box<CheckoutFinishedEvent>),
    /// Complete but not paid yet: an asynchronous payment method is still
    /// settling (or failed: only the event or the PaymentIntent says so).
    Pending,
    /// Not one of ours, or not readable: why.
    Unusable(&'static str),
}

/// What a session (retrieved from Stripe, or in an event) means now; see the
/// module's first table.
pub fn from_session(session: &CheckoutSession) -> SessionState {
    match (&session.payment_status, &session.status) {
        (
            CheckoutSessionPaymentStatus::Paid | CheckoutSessionPaymentStatus::NoPaymentRequired,
            _,
        ) => finished(session, CheckoutStatus::Success, None)
            .map_or_else(SessionState::Unusable, |e| {
                SessionState::Finished(Box::new(e))
            }),
        (_, Some(CheckoutSessionStatus::Expired)) => {
            finished(session, CheckoutStatus::Failed, Some(EXPIRED_MESSAGE))
                .map_or_else(SessionState::Unusable, |e| {
                    SessionState::Finished(Box::new(e))
                })
        }
        (_, Some(CheckoutSessionStatus::Open)) => {
            match finished(session, CheckoutStatus::SessionCreated, None) {
                Ok(mut event) => {
                    event.session_url.clone_from(&session.url);
                    SessionState::Open {
                        event: Box::new(event),
                        expires_at: session.expires_at,
                    }
                }
                Err(reason) => SessionState::Unusable(reason),
            }
        }
        (CheckoutSessionPaymentStatus::Unpaid, Some(CheckoutSessionStatus::Complete)) => {
            SessionState::Pending
        }
        _ => SessionState::Unusable("session in a state this service does not know"),
    }
}

/// Maps a verified event to what to publish.
pub fn decide(event: &Event) -> Decision {
    match &event.data.object {
        EventObject::CheckoutSessionCompleted(session)
        | EventObject::CheckoutSessionAsyncPaymentSucceeded(session)
        | EventObject::CheckoutSessionExpired(session) => match from_session(session) {
            SessionState::Finished(event) => Decision::Publish(event),
            SessionState::Pending => Decision::Ignore(
                "completed but not paid yet: waiting for async_payment_succeeded/failed",
            ),
            SessionState::Open { .. } => Decision::Ignore("session still open"),
            SessionState::Unusable(reason) => Decision::Ignore(reason),
        },
        EventObject::CheckoutSessionAsyncPaymentFailed(session) => {
            finished(session, CheckoutStatus::Failed, Some(ASYNC_FAILED_MESSAGE))
                .map_or_else(Decision::Ignore, |e| Decision::Publish(Box::new(e)))
        }
        _ => Decision::Ignore("event type not handled"),
    }
}

/// The trace an older worker wrote into the session's metadata, if any (the
/// worker no longer does: the create call must be the same for every copy
/// of a request).
pub fn traceparent(event: &Event) -> Option<TraceContext> {
    let value = session_of(event)?.metadata.as_ref()?.get(TRACEPARENT)?;
    TraceContext::parse(value)
}

/// The session of a Checkout Session event (`None` for other events).
pub fn session_of(event: &Event) -> Option<&CheckoutSession> {
    match &event.data.object {
        EventObject::CheckoutSessionCompleted(s)
        | EventObject::CheckoutSessionAsyncPaymentSucceeded(s)
        | EventObject::CheckoutSessionAsyncPaymentFailed(s)
        | EventObject::CheckoutSessionExpired(s) => Some(s),
        _ => None,
    }
}

/// The finished event of `session` with `status`, every field from its
/// metadata; `Err` says why the session is not one of ours.
fn finished(
    session: &CheckoutSession,
    status: CheckoutStatus,
    error: Option<&str>,
) -> Result<CheckoutFinishedEvent, &'static str> {
    let Some(metadata) = session.metadata.as_ref() else {
        return Err("session has no metadata: not created by the checkout worker");
    };
    let request_id = metadata
        .get("request_id")
        .or(session.client_reference_id.as_ref());
    let user_id = metadata.get("user_id").and_then(|v| v.parse::<i64>().ok());
    let amount_cents = metadata
        .get("amount_cents")
        .and_then(|v| v.parse::<i64>().ok());
    let (Some(request_id), Some(user_id), Some(amount_cents)) = (request_id, user_id, amount_cents)
    else {
        return Err("session metadata lacks request_id, user_id or amount_cents");
    };
    let currency = metadata
        .get("currency")
        .cloned()
        .unwrap_or_else(|| session.currency_code());
    let purpose = metadata
        .get("purpose")
        .cloned()
        .unwrap_or_else(|| checkout_contract::domain::DEFAULT_PURPOSE.to_owned());
    let payment_intent_id = match status {
        CheckoutStatus::Success => session
            .payment_intent
            .as_ref()
            .map(|pi| pi.id().as_str().to_owned()),
        _ => None,
    };
    Ok(CheckoutFinishedEvent {
        request_id: request_id.clone(),
        user_id,
        amount_cents,
        currency,
        purpose,
        status,
        session_id: Some(session.id.as_str().to_owned()),
        session_url: None,
        payment_intent_id,
        error_message: error.map(str::to_owned),
        timestamp: now(),
    })
}

trait CurrencyCode {
    fn currency_code(&self) -> String;
}

impl CurrencyCode for CheckoutSession {
    fn currency_code(&self) -> String {
        self.currency.as_ref().map_or_else(
            || checkout_contract::domain::DEFAULT_CURRENCY.to_owned(),
            ToString::to_string,
        )
    }
}

/// The fixture session (as the emulator returns one created by our
/// parameters: open, unpaid), edited, parsed the way async-stripe parses it.
#[cfg(test)]
pub(crate) fn fixture_session(edit: impl FnOnce(&mut serde_json::Value)) -> CheckoutSession {
    let mut session: serde_json::Value =
        serde_json::from_str(include_str!("testdata/checkout_session.json")).unwrap();
    edit(&mut session);
    let event = serde_json::json!({
        "id": "evt_fixture", "object": "event", "api_version": "2026-09-30.endive",
        "created": 1_705_314_600, "data": {"object": session}, "livemode": false,
        "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null},
        "type": "checkout.session.completed",
    });
    match stripe_webhook::Webhook::insecure(&event.to_string())
        .expect("the fixture parses")
        .data
        .object
    {
        EventObject::CheckoutSessionCompleted(session) => *session,
        other => panic!("not a session: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use checkout_contract::secret::Secret;
    use serde_json::{Value, json};
    use stripe_webhook::Webhook;

    use super::*;
    use crate::webhook::{WebhookError, verify};

    /// A session as the Stripe emulator returns it (created by our parameters).
    const SESSION: &str = include_str!("testdata/checkout_session.json");
    const SECRET: &str = "whsec_unit";

    fn payload(type_: &str, edit: impl FnOnce(&mut Value)) -> String {
        let mut session: Value = serde_json::from_str(SESSION).unwrap();
        edit(&mut session);
        json!({
            "id": "evt_unit", "object": "event", "api_version": "2026-09-30.endive",
            "created": 1_705_314_600, "data": {"object": session}, "livemode": false,
            "pending_webhooks": 1, "request": {"id": null, "idempotency_key": null}, "type": type_,
        })
        .to_string()
    }

    fn decide_payload(payload: &str) -> Decision {
        let header = Webhook::generate_test_header(payload, SECRET, None);
        decide(&verify(payload, &header, &[Secret::new(SECRET)]).expect("verifies"))
    }

    fn published(decision: Decision) -> CheckoutFinishedEvent {
        match decision {
            Decision::Publish(event) => *event,
            Decision::Ignore(reason) => panic!("ignored: {reason}"),
        }
    }

    #[test]
    fn completed_and_paid_is_success_with_every_field_from_metadata() {
        let event = published(decide_payload(&payload(
            "checkout.session.completed",
            |s| {
                s["status"] = json!("complete");
                s["payment_status"] = json!("paid");
                s["payment_intent"] = json!("pi_unit");
            },
        )));
        assert_eq!(event.request_id, "550e8400-e29b-41d4-a716-446655440000");
        assert_eq!((event.user_id, event.amount_cents), (123, 500));
        assert_eq!(
            (event.currency.as_str(), event.purpose.as_str()),
            ("eur", "balance_topup")
        );
        assert_eq!(event.status, CheckoutStatus::Success);
        assert_eq!(event.session_id.as_deref(), Some("cs_test_fixture"));
        assert_eq!(event.payment_intent_id.as_deref(), Some("pi_unit"));
        assert_eq!((event.session_url, event.error_message), (None, None));
    }

    #[test]
    fn completed_but_unpaid_waits_for_the_async_result() {
        let decision = decide_payload(&payload("checkout.session.completed", |s| {
            s["status"] = json!("complete")
        }));
        assert!(matches!(decision, Decision::Ignore(_)), "{decision:?}");
    }

    #[test]
    fn async_results_and_expiry_map_to_success_and_failed() {
        let ok = published(decide_payload(&payload(
            "checkout.session.async_payment_succeeded",
            |s| {
                s["payment_status"] = json!("paid");
                s["payment_intent"] = json!("pi_async");
            },
        )));
        assert_eq!(ok.status, CheckoutStatus::Success);
        assert_eq!(ok.payment_intent_id.as_deref(), Some("pi_async"));

        let failed = published(decide_payload(&payload(
            "checkout.session.async_payment_failed",
            |_| {},
        )));
        assert_eq!(failed.status, CheckoutStatus::Failed);
        assert_eq!(failed.error_message.as_deref(), Some(ASYNC_FAILED_MESSAGE));
        assert_eq!(failed.payment_intent_id, None);

        let expired = published(decide_payload(&payload("checkout.session.expired", |s| {
            s["status"] = json!("expired")
        })));
        assert_eq!(expired.status, CheckoutStatus::Failed);
        assert!(expired.error_message.unwrap().contains("expired"));
    }

    #[test]
    fn completed_without_a_payment_to_make_is_success() {
        let event = published(decide_payload(&payload(
            "checkout.session.completed",
            |s| {
                s["status"] = json!("complete");
                s["payment_status"] = json!("no_payment_required");
            },
        )));
        assert_eq!(event.status, CheckoutStatus::Success);
        assert_eq!(event.payment_intent_id, None);
    }

    /// Stripe's webhook payloads for the four event types, in the exact
    /// shape Stripe sends them for the API version async-stripe pins
    /// (2026-09-30.endive: the `checkout.session` properties of that
    /// version's OpenAPI spec, `stripe/openapi` `latest/openapi.spec3.json`,
    /// valued the way Stripe's own 2026 webhook deliveries value them), each
    /// with what a later version could add: an unknown envelope field
    /// (`unknown_envelope_field`), an unknown session field
    /// (`unknown_session_field`) and enum values the client does not know
    /// in fields this service does not read. The emulator's tests check
    /// that it renders exactly these keys.
    const STRIPE_EVENTS: [(&str, &str); 4] = [
        (
            "checkout.session.completed",
            include_str!("testdata/event_checkout_session_completed.json"),
        ),
        (
            "checkout.session.async_payment_succeeded",
            include_str!("testdata/event_checkout_session_async_payment_succeeded.json"),
        ),
        (
            "checkout.session.async_payment_failed",
            include_str!("testdata/event_checkout_session_async_payment_failed.json"),
        ),
        (
            "checkout.session.expired",
            include_str!("testdata/event_checkout_session_expired.json"),
        ),
    ];

    #[test]
    fn stripe_shaped_events_with_unknown_fields_and_values_decode_to_their_outcome() {
        use stripe_shared::{
            CheckoutSessionPaymentMethodCollection, CheckoutSessionSubmitType,
            CheckoutSessionUiMode,
        };

        let mut outcomes = Vec::new();
        for (type_, payload) in STRIPE_EVENTS {
            let header = Webhook::generate_test_header(payload, SECRET, None);
            let event = verify(payload, &header, &[Secret::new(SECRET)])
                .unwrap_or_else(|e| panic!("{type_} does not decode: {e:?}"));
            assert_eq!(event.type_.as_str(), type_);
            let session = session_of(&event).expect("a checkout session event");
            assert_eq!(
                session.metadata.as_ref().map(|m| m.len()),
                Some(5),
                "{type_}"
            );
            let finished = published(decide(&event));
            assert_eq!(
                (
                    finished.request_id.as_str(),
                    finished.user_id,
                    finished.amount_cents
                ),
                ("550e8400-e29b-41d4-a716-446655440000", 123, 500),
                "{type_}"
            );
            assert_eq!(
                (finished.currency.as_str(), finished.purpose.as_str()),
                ("eur", "balance_topup")
            );
            assert_eq!(
                finished.session_id.as_deref(),
                Some("cs_test_a1B2c3D4e5F6g7H8i9J0kLmNoPqRsTuVwXyZ0123456789AbCdEfGhIjKl")
            );
            outcomes.push((
                finished.status,
                finished.payment_intent_id,
                finished.error_message,
            ));

            // The values the client does not know arrive as `Unknown`, not as an error.
            match type_ {
                "checkout.session.completed" => assert_eq!(
                    session.submit_type,
                    Some(CheckoutSessionSubmitType::Unknown("reserve".into()))
                ),
                "checkout.session.async_payment_failed" => assert_eq!(
                    session.payment_method_collection,
                    Some(CheckoutSessionPaymentMethodCollection::Unknown(
                        "never".into()
                    ))
                ),
                "checkout.session.expired" => assert_eq!(
                    session.ui_mode,
                    Some(CheckoutSessionUiMode::Unknown("kiosk_page".into()))
                ),
                _ => {}
            }
        }
        let pi = Some("pi_3TqRsT9x8obd1Gi61AbCdEfG".to_owned());
        assert_eq!(
            outcomes,
            [
                (CheckoutStatus::Success, pi.clone(), None),
                (CheckoutStatus::Success, pi, None),
                (
                    CheckoutStatus::Failed,
                    None,
                    Some(ASYNC_FAILED_MESSAGE.to_owned())
                ),
                (
                    CheckoutStatus::Failed,
                    None,
                    Some(EXPIRED_MESSAGE.to_owned())
                ),
            ]
        );
    }

    #[test]
    fn a_completed_event_still_settling_is_not_an_outcome() {
        // The completed event of a delayed payment method: complete, unpaid.
        let mut event: Value = serde_json::from_str(STRIPE_EVENTS[0].1).unwrap();
        event["data"]["object"]["payment_status"] = json!("unpaid");
        let decision = decide_payload(&event.to_string());
        assert!(matches!(decision, Decision::Ignore(_)), "{decision:?}");
    }

    fn state(edit: impl FnOnce(&mut Value)) -> SessionState {
        from_session(&fixture_session(edit))
    }

    fn terminal(state: SessionState) -> CheckoutFinishedEvent {
        match state {
            SessionState::Finished(event) => *event,
            other => panic!("not terminal: {other:?}"),
        }
    }

    #[test]
    fn a_retrieved_session_says_what_to_publish() {
        let paid = terminal(state(|s| {
            s["status"] = json!("complete");
            s["payment_status"] = json!("paid");
            s["payment_intent"] = json!("pi_retrieved");
        }));
        assert_eq!(paid.status, CheckoutStatus::Success);
        assert_eq!(paid.payment_intent_id.as_deref(), Some("pi_retrieved"));
        assert_eq!(paid.session_id.as_deref(), Some("cs_test_fixture"));
        assert_eq!((paid.user_id, paid.amount_cents), (123, 500));

        let free = terminal(state(|s| {
            s["status"] = json!("complete");
            s["payment_status"] = json!("no_payment_required");
        }));
        assert_eq!(free.status, CheckoutStatus::Success);

        let expired = terminal(state(|s| {
            s["status"] = json!("expired");
            s["url"] = Value::Null;
        }));
        assert_eq!(expired.status, CheckoutStatus::Failed);
        assert_eq!(expired.error_message.as_deref(), Some(EXPIRED_MESSAGE));
        assert_eq!(expired.payment_intent_id, None);

        assert_eq!(
            state(|s| s["status"] = json!("complete")),
            SessionState::Pending,
            "complete and unpaid: an async payment is settling"
        );
    }

    #[test]
    fn an_open_session_is_session_created_with_its_url() {
        let SessionState::Open { event, expires_at } = state(|_| {}) else {
            panic!("the fixture is open")
        };
        assert_eq!(expires_at, 1_705_401_000);
        assert_eq!(event.status, CheckoutStatus::SessionCreated);
        assert_eq!(
            event.session_url.as_deref(),
            Some("http://127.0.0.1:12111/pay/cs_test_fixture")
        );
        assert_eq!(event.request_id, "550e8400-e29b-41d4-a716-446655440000");
        assert_eq!((event.payment_intent_id, event.error_message), (None, None));
    }

    #[test]
    fn a_session_that_is_not_ours_is_unusable() {
        let state = state(|s| {
            s["metadata"] = json!({});
            s["client_reference_id"] = Value::Null;
            s["status"] = json!("complete");
            s["payment_status"] = json!("paid");
        });
        assert!(matches!(state, SessionState::Unusable(_)), "{state:?}");
    }

    #[test]
    fn sessions_without_our_metadata_are_ignored() {
        let decision = decide_payload(&payload("checkout.session.expired", |s| {
            s["metadata"] = json!({});
            s["client_reference_id"] = Value::Null;
        }));
        assert!(matches!(decision, Decision::Ignore(_)), "{decision:?}");
    }

    #[test]
    fn verify_accepts_any_configured_secret_and_rejects_the_rest() {
        let body = payload("checkout.session.expired", |_| {});
        let secrets = [Secret::new("whsec_old"), Secret::new(SECRET)];
        let good = Webhook::generate_test_header(&body, SECRET, None);
        assert!(
            verify(&body, &good, &secrets).is_ok(),
            "the second secret of a rotation verifies"
        );

        let wrong = Webhook::generate_test_header(&body, "whsec_other", None);
        assert!(matches!(
            verify(&body, &wrong, &secrets),
            Err(WebhookError::BadSignature)
        ));
        let stale = Webhook::generate_test_header(
            &body,
            SECRET,
            Some(chrono::Utc::now().timestamp() - 301),
        );
        assert!(matches!(
            verify(&body, &stale, &secrets),
            Err(WebhookError::Stale(_))
        ));
        assert!(matches!(
            verify(&body, "v1=abc", &secrets),
            Err(WebhookError::BadSignature)
        ));
        assert!(matches!(
            verify(&body, "t=x,v1=abc", &secrets),
            Err(WebhookError::BadHeader)
        ));
        let broken = "{\"id\":1}";
        let signed = Webhook::generate_test_header(broken, SECRET, None);
        assert!(matches!(
            verify(broken, &signed, &secrets),
            Err(WebhookError::Malformed(_))
        ));
    }
}
