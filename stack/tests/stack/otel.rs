//! One checkout is one exported trace: the `checkout-stack` binary, run as
//! an operator runs it with `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at an
//! OTLP receiver (testkit's, speaking the protocol), exports the spans of
//! all three services for a paid checkout, all in the caller's trace, each
//! hop the child of the one before it: StartCheckout -> produce -> the
//! worker's consume -> the Stripe call and the `session_created` produce ->
//! the webhook -> the `success` produce -> blazing_sun's credit; the
//! gateway's stream a child of StartCheckout. The batch delay is set longer
//! than the test, so the spans arrive only through the exit's flush.

use std::process::Stdio;
use std::time::Duration;

use checkout_contract::auth::{JwtIssuer, Role};
use checkout_contract::pb::checkout_gateway_client::CheckoutGatewayClient;
use checkout_contract::secret::Secret;
use checkout_contract::trace::TraceContext;
use stack::system::DEMO_USER_ID;
use testkit::otlp::{OtlpReceiver, ReceivedSpan};

use crate::observability::{Endpoints, paid_checkout};

const SECRET: &str = "otel-test-secret-0123456789abcdef";

/// The span `name` whose parent is `parent` (the first one, when `parent`
/// is `None`); fails listing the trace when there is none.
fn span<'a>(trace: &'a [ReceivedSpan], name: &str, parent: Option<&str>) -> &'a ReceivedSpan {
    trace
        .iter()
        .find(|s| s.name == name && parent.is_none_or(|p| s.parent_span_id == p))
        .unwrap_or_else(|| {
            panic!(
                "a span {name} under {parent:?} in {:#?}",
                trace
                    .iter()
                    .map(|s| format!(
                        "{} {}<-{} {:?}",
                        s.name,
                        s.span_id,
                        s.parent_span_id,
                        s.attribute("topic")
                    ))
                    .collect::<Vec<_>>()
            )
        })
}

/// The `produce` span under `parent` whose record went to `topic`.
fn produce<'a>(trace: &'a [ReceivedSpan], parent: &str, topic: &str) -> &'a ReceivedSpan {
    let under: Vec<_> = trace
        .iter()
        .filter(|s| s.name == "produce" && s.attribute("topic") == Some(topic))
        .cloned()
        .collect();
    let found = span(&under, "produce", Some(parent)).span_id.clone();
    trace.iter().find(|s| s.span_id == found).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paid_checkout_is_one_trace_across_the_three_services() {
    let receiver = OtlpReceiver::start().await;
    let data = tempfile::tempdir().unwrap();
    let free = || format!("127.0.0.1:{}", testkit::free_port());
    let (gateway, blazing_sun, emulator) = (free(), free(), free());
    let mut stack = tokio::process::Command::new(env!("CARGO_BIN_EXE_checkout-stack"))
        .env_remove("KAFKA_BOOTSTRAP_SERVERS")
        .env("STACK_DATA_DIR", data.path())
        .env("STACK_KAFKA_LISTEN", free())
        .env("STRIPE_EMULATOR_LISTEN", &emulator)
        .env("CHECKOUT_WEBHOOK_LISTEN", free())
        .env("BLAZING_SUN_LISTEN", &blazing_sun)
        .env("GATEWAY_ADMIN_LISTEN", free())
        .env("GATEWAY_LISTEN", &gateway)
        .env("JWT_SECRET", SECRET)
        .env("RUST_LOG", "info")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_SERVICE_NAME", "checkout-stack-under-test")
        // Nothing is exported on the batch timer during the test: the spans
        // arrive through the flush on exit.
        .env("OTEL_BSP_SCHEDULE_DELAY", "600000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("checkout-stack starts");

    let token = JwtIssuer::new(&Secret::new(SECRET)).issue(
        &DEMO_USER_ID.to_string(),
        Role::User,
        Duration::from_secs(600),
    );
    let at = Endpoints {
        gateway: gateway.parse().unwrap(),
        blazing_sun: blazing_sun.parse().unwrap(),
        emulator: emulator.parse().unwrap(),
        token: &token,
    };
    testkit::eventually(
        "the launcher's gateway answers",
        Duration::from_secs(60),
        || async {
            CheckoutGatewayClient::connect(format!("http://{gateway}"))
                .await
                .ok()
        },
    )
    .await;
    let sent = TraceContext::new_root();
    let request_id = paid_checkout(&at, 900, Some(&sent.header())).await;

    // SIGTERM, as an operator stops it: the exit flushes the batched spans.
    let pid = stack.id().expect("running").to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let exit = tokio::time::timeout(Duration::from_secs(60), stack.wait())
        .await
        .expect("the launcher exits within 60 s of SIGTERM")
        .unwrap();
    assert!(exit.success(), "{exit:?}");

    let in_trace = |spans: &[ReceivedSpan]| -> Vec<ReceivedSpan> {
        spans
            .iter()
            .filter(|s| s.trace_id == sent.trace_id())
            .cloned()
            .collect()
    };
    let trace = in_trace(
        &receiver
            .wait_for("the checkout's spans", Duration::from_secs(30), |spans| {
                in_trace(spans)
                    .iter()
                    .any(|s| s.name == "checkout_finished")
            })
            .await,
    );
    assert!(
        trace
            .iter()
            .all(|s| s.service == "checkout-stack-under-test")
    );
    let ids: Vec<&str> = trace.iter().map(|s| s.span_id.as_str()).collect();
    for s in &trace {
        assert!(
            s.parent_span_id == sent.span_id() || ids.contains(&s.parent_span_id.as_str()),
            "every span's parent is in the trace (or is the caller's): {s:#?}"
        );
    }

    let start = span(&trace, "StartCheckout", Some(&sent.span_id()));
    let requested = produce(&trace, &start.span_id, "checkout.requests");
    let consumed = span(&trace, "checkout_request", Some(&requested.span_id));
    let stripe = span(&trace, "stripe", Some(&consumed.span_id));
    assert_eq!(stripe.attribute("http.request.method"), Some("POST"));
    assert_eq!(stripe.attribute("url.path"), Some("/v1/checkout/sessions"));
    let session_created = produce(&trace, &consumed.span_id, "checkout.finished");
    let webhook = span(&trace, "stripe_webhook", Some(&session_created.span_id));
    let success = produce(&trace, &webhook.span_id, "checkout.finished");
    let credit = span(&trace, "checkout_finished", Some(&success.span_id));
    span(&trace, "watch_stream", Some(&start.span_id));

    // The three services, by the module that opened each span; every span
    // of the chain names the checkout.
    for (service, s) in [
        ("gateway::", start),
        ("checkout_contract::kafka", requested),
        ("checkout::", consumed),
        ("checkout::", webhook),
        ("blazing_sun::", credit),
    ] {
        let module = s.attribute("code.module.name").unwrap_or_default();
        assert!(module.starts_with(service), "{} from {module}", s.name);
        assert_eq!(
            s.attribute("request_id"),
            Some(request_id.as_str()),
            "{s:#?}"
        );
    }
}
