//! One delivery of one event: POST the JSON with a `Stripe-Signature`
//! header, retry non-2xx answers, connection errors and timeouts with
//! doubling backoff up to the configured attempts. The bad-signature and
//! stale-timestamp faults are rolled per attempt, so a retry may succeed.

use std::time::Duration;

use tracing::{debug, warn};

use super::event::{Event, sign};
use crate::state::{App, roll};
use crate::stats::Stats;

/// How far in the past a stale signature timestamp lies (Stripe's libraries tolerate 300 s).
pub const STALE_BY: Duration = Duration::from_secs(600);

/// Delivers `event` until the endpoint answers 2xx (true) or attempts run
/// out or the emulator stops (false).
pub async fn deliver(app: &App, event: &Event) -> bool {
    let policy = app.delivery;
    for attempt in 1..=policy.max_attempts {
        if attempt > 1 {
            tokio::select! {
                () = tokio::time::sleep(policy.backoff(attempt - 1)) => {}
                () = app.stopped() => return false,
            }
        }
        Stats::inc(&app.stats.webhook_attempts);
        app.outbox.update(&event.id, |r| r.attempts += 1);
        let outcome = tokio::select! {
            outcome = attempt_once(app, event) => outcome,
            () = app.stopped() => return false,
        };
        match outcome {
            Ok(()) => {
                Stats::inc(&app.stats.webhooks_delivered);
                app.outbox.update(&event.id, |r| r.delivered += 1);
                debug!(event_id = %event.id, event_type = event.type_, attempt, "webhook delivered");
                return true;
            }
            Err(reason) => {
                Stats::inc(&app.stats.webhook_failed_attempts);
                warn!(event_id = %event.id, event_type = event.type_, attempt, reason = %reason, "webhook attempt failed");
            }
        }
    }
    Stats::inc(&app.stats.webhooks_given_up);
    app.outbox.update(&event.id, |r| r.given_up += 1);
    warn!(event_id = %event.id, event_type = event.type_, attempts = policy.max_attempts, "webhook delivery given up");
    false
}

async fn attempt_once(app: &App, event: &Event) -> Result<(), String> {
    let (url, secret) = app.webhook_endpoint();
    let url = url.ok_or("no webhook endpoint configured")?;
    let faults = app.faults();
    let mut timestamp = chrono::Utc::now().timestamp();
    if roll(faults.webhook_stale_timestamp_rate) {
        timestamp -= i64::try_from(STALE_BY.as_secs()).unwrap_or(600);
    }
    let signature = if roll(faults.webhook_bad_signature_rate) {
        sign(
            &event.payload,
            &format!("{}_not_the_secret", secret.expose()),
            timestamp,
        )
    } else {
        sign(&event.payload, secret.expose(), timestamp)
    };
    let response = app
        .http
        .post(&url)
        .header("content-type", "application/json; charset=utf-8")
        .header(
            "user-agent",
            "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        )
        .header("stripe-signature", signature)
        .body(event.payload.to_string())
        .timeout(app.delivery.attempt_timeout)
        .send()
        .await
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = response.status();
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("POST {url}: HTTP {status}"))
    }
}
