//! Poison messages go to the DLQ and never stall their partition.

use checkout_contract::CheckoutStatus;
use checkout_contract::kafka::{HEADER_DLQ_REASON, HEADER_DLQ_SOURCE};

use crate::helpers::{WAIT, metric, request, spawn_app};

#[tokio::test]
async fn poison_messages_are_dead_lettered_and_the_partition_moves_on() {
    let app = spawn_app().await;
    // All on partition 0, in this order: garbage, JSON missing fields, a good request.
    app.send_raw(0, "garbage", b"{this is not json").await;
    let partial = uuid::Uuid::new_v4().to_string();
    let partial_json = format!(r#"{{"request_id":"{partial}","user_id":5,"currency":"usd"}}"#);
    app.send_raw(0, &partial, partial_json.as_bytes()).await;
    let good = request(500);
    app.send_raw(0, &good.request_id, &serde_json::to_vec(&good).unwrap())
        .await;

    app.wait_for(&good.request_id, CheckoutStatus::SessionCreated)
        .await;

    let dead = testkit::eventually("two dead letters", WAIT, || async {
        let records = app.dlq.records();
        (records.len() == 2).then_some(records)
    })
    .await;
    let garbage = dead
        .iter()
        .find(|r| r.key.as_deref() == Some("garbage"))
        .expect("garbage dead-lettered");
    assert_eq!(
        garbage.payload, b"{this is not json",
        "copied byte for byte"
    );
    let reason = garbage.header(HEADER_DLQ_REASON).expect("reason header");
    assert!(reason.contains("not a checkout request"), "{reason}");

    let missing = dead
        .iter()
        .find(|r| r.key.as_deref() == Some(partial.as_str()))
        .expect("partial dead-lettered");
    assert_eq!(missing.payload, partial_json.as_bytes());
    assert!(
        missing
            .header(HEADER_DLQ_REASON)
            .unwrap()
            .contains("missing field"),
        "{missing:?}"
    );
    assert!(
        missing
            .header(HEADER_DLQ_SOURCE)
            .unwrap()
            .starts_with(&format!("{}/0/", app.topics.requests))
    );

    // The recoverable one is answered, so its caller is not left waiting.
    let failed = app.wait_for(&partial, CheckoutStatus::Failed).await;
    assert_eq!(failed.user_id, 5);
    assert_eq!(failed.currency, "usd");
    assert!(failed.error_message.unwrap().contains("missing field"));
    assert_eq!(
        app.emulator.stats().create_calls,
        1,
        "only the good request reached Stripe"
    );
    // Counted once each copy is acknowledged.
    let dead_lettered =
        |reason: &str| format!("checkout_dead_lettered_total{{reason=\"{reason}\"}}");
    let text = testkit::eventually("the dead letters counted", WAIT, || async {
        let text = app.metrics().await;
        (metric::<u64>(&text, &dead_lettered("invalid_json")) == 1
            && metric::<u64>(&text, &dead_lettered("invalid_event")) == 1
            && metric::<u64>(
                &text,
                "checkout_finished_published_total{status=\"session_created\"}",
            ) == 1)
            .then_some(text)
    })
    .await;
    for (reason, count) in [("invalid_json", 1), ("invalid_event", 1), ("empty", 0)] {
        let line = dead_lettered(reason);
        assert_eq!(metric::<u64>(&text, &line), count, "{line}:\n{text}");
    }
    // The recovered request's `failed` and the good one's `session_created`.
    for status in ["failed", "session_created"] {
        let line = format!("checkout_finished_published_total{{status=\"{status}\"}}");
        assert_eq!(metric::<u64>(&text, &line), 1, "{line}:\n{text}");
    }
}
