//! The worker refuses redirect URLs outside `CHECKOUT_REDIRECT_HOSTS`,
//! whoever produced the request: it publishes `failed` naming the field and
//! never asks Stripe for a session.

use checkout_contract::CheckoutStatus;

use crate::helpers::{request, spawn_app};

#[tokio::test]
async fn a_request_redirecting_outside_the_allowlist_fails_without_a_session() {
    let app = spawn_app().await;
    let mut evil_success = request(500);
    evil_success.success_url = "https://evil.test/phish".into();
    let mut evil_cancel = request(500);
    evil_cancel.cancel_url = "https://example.com.evil.test/back".into();
    let fine = request(500);
    for r in [&evil_success, &evil_cancel, &fine] {
        app.send(r).await;
    }

    for (r, field) in [(&evil_success, "success_url"), (&evil_cancel, "cancel_url")] {
        let failed = app.wait_for(&r.request_id, CheckoutStatus::Failed).await;
        let error = failed.error_message.unwrap_or_default();
        assert!(
            error.contains(field) && error.contains("allowlist"),
            "{error}"
        );
    }
    // The allowed one in the same batch goes through, so the refusals were not an outage.
    app.wait_for(&fine.request_id, CheckoutStatus::SessionCreated)
        .await;
    for r in [&evil_success, &evil_cancel] {
        assert_eq!(app.sessions_created_for(&r.request_id), 0);
        assert!(
            app.events_for(&r.request_id)
                .iter()
                .all(|e| e.status == CheckoutStatus::Failed),
            "only failed for {}",
            r.request_id
        );
    }
}
