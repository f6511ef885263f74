//! What `checkout-stack` prints once everything is ready: every endpoint,
//! the demo tokens, and a walkthrough to paste.

use checkout_contract::Currency;

use crate::system::{DEMO_USER_ID, Running};

/// The start-up text.
pub fn banner(r: &Running) -> String {
    let kafka = if r.embedded_kafka {
        "embedded (librdkafka mock cluster)"
    } else {
        "external"
    };
    let stripe = match r.emulator {
        Some(addr) => {
            format!("Stripe emulator           http://{addr}/  (hosted pages at /pay/<session id>)")
        }
        None => "Stripe                    real Stripe (STRIPE_SECRET_KEY)".to_owned(),
    };
    let gw = r.gateway;
    let bs = r.blazing_sun;
    let pay = match r.emulator {
        Some(addr) => format!(
            "# 4. Pay: open the session_url from step 3 in a browser, or:\n\
             curl -s -X POST http://{addr}/_emulator/checkout/sessions/<session_id>/pay -H 'content-type: application/json' -d '{{\"outcome\":\"paid\"}}'"
        ),
        None => "# 4. Pay: open the session_url from step 3 in a browser (Stripe test card 4242 4242 4242 4242)".to_owned(),
    };
    let lines = [
        String::new(),
        "checkout-stack is ready.".to_owned(),
        String::new(),
        format!("  Kafka ({kafka}): {}", r.kafka_bootstrap),
        format!("  gateway (gRPC, gRPC-Web)  {gw}   admin: http://{}/metrics", r.gateway_admin),
        format!("  blazing_sun (HTTP)        http://{bs}/"),
        format!("  checkout webhook          http://{}/webhooks/stripe", r.webhook),
        format!("  {stripe}"),
        format!("  database                  {}", without_password(&r.database_url)),
        String::new(),
        format!("Demo user {DEMO_USER_ID} token (role user):"),
        format!("  export TOKEN={}", r.demo_user_token),
        format!("  balance page (top up in a browser): http://{bs}/#token={}", r.demo_user_token),
        "Service token (role service, may act for any user):".to_owned(),
        format!("  export SERVICE_TOKEN={}", r.service_token),
        String::new(),
        "Walkthrough (grpcurl 1.8+; no .proto files needed, the gateway serves reflection):".to_owned(),
        "# 1. What is there".to_owned(),
        format!("grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" {gw} list"),
        format!("grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" {gw} describe checkout.v1.CheckoutGateway"),
        format!(
            "# 2. Start a checkout of {} for the demo user (amount_cents: minor units; whole yen for jpy)",
            Currency::EUR.format_minor(500)
        ),
        format!(
            "grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{\"user_id\":{DEMO_USER_ID},\"amount_cents\":500,\"currency\":\"eur\",\"success_url\":\"http://{bs}/?checkout=success\",\"cancel_url\":\"http://{bs}/?checkout=cancel\"}}' {gw} checkout.v1.CheckoutGateway/StartCheckout"
        ),
        "# 3. In a second terminal, watch it (request_id from step 2); session_created brings the session_url".to_owned(),
        format!(
            "grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{\"request_id\":\"<request_id>\"}}' {gw} checkout.v1.CheckoutGateway/WatchCheckout"
        ),
        pay,
        "# 5. success arrives on the watch; the balance (minor units) went up by exactly 500".to_owned(),
        format!(
            "#    (no webhook needed: reconciliation asks Stripe about sessions without an outcome after {} s, every {} s)",
            r.reconcile.after.as_secs(),
            r.reconcile.interval.as_secs()
        ),
        format!("curl -s -H \"authorization: Bearer $TOKEN\" http://{bs}/api/v1/balance"),
        String::new(),
        "Monitoring (like the seed's kafka-*.sh):".to_owned(),
        "  checkout-stack topics".to_owned(),
        "  checkout-stack tail checkout.finished --from-beginning".to_owned(),
        "  checkout-stack lag blazing-sun-main".to_owned(),
        "Dead letters, once their cause is fixed (list first, then send back):".to_owned(),
        "  checkout-stack dlq replay checkout.finished.dlq --dry-run".to_owned(),
        "  checkout-stack dlq replay checkout.finished.dlq".to_owned(),
        String::new(),
        "Ctrl-C stops everything.".to_owned(),
    ];
    lines.join("\n")
}

/// `url` with any password replaced by `***` (`postgres://u:p@h/db` -> `postgres://u:***@h/db`).
fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    match rest.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn database_passwords_are_not_printed() {
        assert_eq!(
            without_password("postgres://bs:s3cret@db:5432/bs"),
            "postgres://bs:***@db:5432/bs"
        );
        assert_eq!(
            without_password("sqlite://data/blazing_sun.db"),
            "sqlite://data/blazing_sun.db"
        );
        assert_eq!(
            without_password("postgres://bs@db/bs"),
            "postgres://bs@db/bs"
        );
    }
}
