//! What the suites read while and after they run: the ledger and balances
//! in PostgreSQL, the consumer groups' lag, and when the system has settled.
//! (Every record on a topic is `testkit::broker::read_all`.)

use std::collections::BTreeMap;
use std::time::Duration;

use checkout_contract::kafka::KafkaConfig;
use checkout_contract::topics::{Topics, consumer_groups};
use sqlx::PgPool;
use stripe_emulator::session::PaymentStatus;
use testkit::eventually;

/// Ledger rows per request_id.
pub async fn ledger_rows(db: &PgPool) -> BTreeMap<String, (i64, i64)> {
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT request_id, COUNT(*), SUM(amount_cents)::BIGINT FROM ledger GROUP BY request_id",
    )
    .fetch_all(db)
    .await
    .expect("ledger query");
    rows.into_iter()
        .map(|(id, n, sum)| (id, (n, sum)))
        .collect()
}

/// The sum of every balance.
pub async fn balance_sum(db: &PgPool) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>("SELECT SUM(balance_cents)::BIGINT FROM balances")
        .fetch_one(db)
        .await
        .expect("balances query")
        .unwrap_or(0)
}

/// How many checkouts blazing_sun holds in a terminal state.
pub async fn terminal_checkouts(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM checkouts WHERE status IN ('success', 'failed')")
        .fetch_one(db)
        .await
        .unwrap_or(0)
}

/// Total lag of `group` on `topic` when every partition with messages has a
/// committed offset; `None` while some partition was never committed.
pub async fn lag(kafka: &KafkaConfig, group: &str, topic: &str) -> Option<i64> {
    let rows = stack::monitor::lag(kafka, group, &[topic.to_owned()])
        .await
        .ok()?;
    if rows.is_empty() || rows.iter().any(|r| r.end > 0 && r.committed.is_none()) {
        return None;
    }
    Some(rows.iter().map(|r| r.lag).sum())
}

/// The end offset of each partition of `topic` (read with `group`'s lag).
pub async fn end_offsets(kafka: &KafkaConfig, group: &str, topic: &str) -> BTreeMap<i32, i64> {
    stack::monitor::lag(kafka, group, &[topic.to_owned()])
        .await
        .expect("end offsets")
        .into_iter()
        .map(|r| (r.partition, r.end))
        .collect()
}

/// Whether `group` has committed at least `offsets` on every partition of
/// `topic` named there (a partition at 0 needs no commit).
pub async fn committed_at_least(
    kafka: &KafkaConfig,
    group: &str,
    topic: &str,
    offsets: &BTreeMap<i32, i64>,
) -> bool {
    let Ok(rows) = stack::monitor::lag(kafka, group, &[topic.to_owned()]).await else {
        return false;
    };
    offsets.iter().all(|(partition, offset)| {
        *offset == 0
            || rows
                .iter()
                .any(|r| r.partition == *partition && r.committed.is_some_and(|c| c >= *offset))
    })
}

/// Waits until blazing_sun holds `checkouts` terminal checkouts, every
/// session the emulator has paid is in the ledger, and both consumer groups
/// have zero lag.
///
/// # Panics
/// When that does not happen `within` (each of the two waits).
pub async fn wait_settled(
    kafka: &KafkaConfig,
    topics: &Topics,
    db: &PgPool,
    stripe: &stripe_emulator::Handle,
    checkouts: usize,
    within: Duration,
) {
    eventually(
        "every checkout terminal and every paid session credited",
        within,
        || async {
            // The cheap count first: the check runs every 20 ms, in the
            // process that may host the emulator under test.
            let terminal = usize::try_from(terminal_checkouts(db).await).ok()?;
            if terminal < checkouts {
                return None;
            }
            let paid = stripe
                .sessions()
                .sessions
                .iter()
                .filter(|s| s.payment_status == PaymentStatus::Paid)
                .count();
            let credited = ledger_rows(db).await.len();
            (credited >= paid).then_some(())
        },
    )
    .await;
    for (group, topic) in [
        (consumer_groups::CHECKOUT_SERVICE, &topics.requests),
        (consumer_groups::MAIN_APP, &topics.finished),
    ] {
        eventually(&format!("zero lag for {group}"), within, || async {
            (lag(kafka, group, topic).await == Some(0)).then_some(())
        })
        .await;
    }
}

/// Waits until `GET http://{addr}/healthz` answers 2xx (blazing_sun healthy,
/// a gateway SERVING).
///
/// # Panics
/// When it does not within 60 s; the message names `what` was awaited.
pub async fn healthy(what: &str, addr: impl std::fmt::Display) {
    let (http, url) = (reqwest::Client::new(), format!("http://{addr}/healthz"));
    eventually(what, Duration::from_secs(60), || async {
        http.get(&url)
            .send()
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ())
    })
    .await;
}
