//! What `checkout-stack` prints once everything is ready: every endpoint,
//! the demo tokens, and a walkthrough to paste.

use crate::system::{DEMO_USER_ID, Running};

/// The start-up text.
pub fn banner(r: &Running) -> String {
    let kafka = if r.embedded_kafka { "embedded (librdkafka mock cluster)" } else { "external" };
    let stripe = match r.emulator {
        Some(addr) => format!("Stripe emulator          http://{addr}/  (hosted pages at /pay/<session id>)"),
        None => "Stripe                   real Stripe (STRIPE_SECRET_KEY)".to_owned(),
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
    format!(
        "\n\
checkout-stack is ready.\n\
\n\
  Kafka ({kafka})   {kafka_addr}\n\
  gateway (gRPC, gRPC-Web)   {gw}      admin: http://{admin}/metrics\n\
  blazing_sun (HTTP)       http://{bs}/\n\
  checkout webhook         http://{webhook}/webhooks/stripe\n\
  {stripe}\n\
  database                 {db}\n\
\n\
Demo user {DEMO_USER_ID} token (role user):\n\
  export TOKEN={user}\n\
Service token (role service, may act for any user):\n\
  export SERVICE_TOKEN={service}\n\
\n\
Walkthrough (grpcurl 1.8+; no .proto files needed, the gateway serves reflection):\n\
# 1. What is there\n\
grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" {gw} list\n\
grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" {gw} describe checkout.v1.CheckoutGateway\n\
# 2. Start a checkout of EUR 5.00 for the demo user\n\
grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{\"user_id\":{DEMO_USER_ID},\"amount_cents\":500,\"currency\":\"eur\",\"success_url\":\"http://{bs}/?checkout=success\",\"cancel_url\":\"http://{bs}/?checkout=cancel\"}}' {gw} checkout.v1.CheckoutGateway/StartCheckout\n\
# 3. In a second terminal, watch it (request_id from step 2); session_created brings the session_url\n\
grpcurl -plaintext -H \"authorization: Bearer $TOKEN\" -d '{{\"request_id\":\"<request_id>\"}}' {gw} checkout.v1.CheckoutGateway/WatchCheckout\n\
{pay}\n\
# 5. success arrives on the watch; the balance went up by exactly 500\n\
curl -s -H \"authorization: Bearer $TOKEN\" http://{bs}/api/v1/balance\n\
\n\
Monitoring (like the seed's kafka-*.sh):\n\
  checkout-stack topics\n\
  checkout-stack tail checkout.finished --from-beginning\n\
  checkout-stack lag blazing-sun-main\n\
\n\
Ctrl-C stops everything.\n",
        kafka_addr = r.kafka_bootstrap,
        admin = r.gateway_admin,
        webhook = r.webhook,
        db = r.database_url,
        user = r.demo_user_token,
        service = r.service_token,
    )
}
