//! The ledger store suite. Every test is an async fn over a [`Backend`],
//! run once against SQLite and once against PostgreSQL by `both!`.

use std::time::{Duration, Instant};

use blazing_sun::{Outcome, Store};
use checkout_contract::CheckoutStatus;

use crate::helpers::{Backend, TestDb, finished, new_request_id, new_user, store, success};

/// `both!(name)` runs `async fn name(Backend)` as `name::sqlite` and `name::postgres`.
macro_rules! both {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                super::$name(crate::helpers::Backend::Sqlite).await;
            }
            #[tokio::test]
            async fn postgres() {
                super::$name(crate::helpers::Backend::Postgres).await;
            }
        }
    )*};
}

both!(
    success_credits_once_with_a_full_ledger_row,
    the_same_success_five_times_credits_once,
    two_request_ids_credit_twice,
    other_purposes_are_recorded_not_credited,
    a_contradicting_duplicate_is_flagged_not_credited,
    a_success_contradicting_the_requested_checkout_is_flagged,
    a_second_payment_for_a_credited_checkout_is_flagged_not_folded_in,
    failed_and_session_created_are_recorded_without_going_back,
    balances_are_per_currency_and_the_ledger_lists_newest_first,
    a_batch_is_one_transaction,
    a_mixed_batch_reports_each_balance_and_catches_contradictions_within_it,
    the_ledger_is_append_only,
    migrations_run_again_as_a_no_op,
    credit_throughput,
    a_success_and_a_contradicting_success_in_one_batch,
    two_users_interleaved_in_one_batch,
    session_created_then_failed_in_one_batch_keeps_both_fields,
    statuses_a_checkout_refuses_do_not_reach_its_row_in_the_same_batch,
    a_batch_larger_than_one_statement,
);

async fn success_credits_once_with_a_full_ledger_row(backend: Backend) {
    let (store, _db) = store(backend).await;
    let (id, user) = (new_request_id(), new_user());
    let outcomes = store
        .apply_finished(&[success(&id, user, 500)])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Outcome::Credited { balance_cents: 500 }]);
    assert_eq!(store.balance(user, "eur").await.unwrap(), 500);

    let ledger = store.ledger_for(&id).await.unwrap();
    assert_eq!(ledger.len(), 1);
    let entry = &ledger[0];
    assert_eq!(
        (entry.user_id, entry.amount_cents, entry.currency.as_str()),
        (user, 500, "eur")
    );
    assert_eq!(entry.purpose, "balance_topup");
    assert_eq!(entry.session_id.as_deref(), Some("cs_test_abc123"));
    assert_eq!(entry.payment_intent_id.as_deref(), Some("pi_test_xyz789"));
    assert_eq!(entry.event_timestamp, "2024-01-15T10:35:00Z");

    let checkout = store
        .checkout(&id)
        .await
        .unwrap()
        .expect("checkout recorded");
    assert_eq!(checkout.status, "success");
}

async fn the_same_success_five_times_credits_once(backend: Backend) {
    let (store, _db) = store(backend).await;
    let user = new_user();
    // Five deliveries in five transactions...
    let id = new_request_id();
    let mut outcomes = Vec::new();
    for _ in 0..5 {
        outcomes.extend(
            store
                .apply_finished(&[success(&id, user, 500)])
                .await
                .unwrap(),
        );
    }
    assert_eq!(outcomes[0], Outcome::Credited { balance_cents: 500 });
    assert!(
        outcomes[1..].iter().all(|o| *o == Outcome::Duplicate),
        "{outcomes:?}"
    );
    // ...and five copies in one batch.
    let other = new_request_id();
    let batch = vec![success(&other, user, 300); 5];
    let outcomes = store.apply_finished(&batch).await.unwrap();
    assert_eq!(outcomes[0], Outcome::Credited { balance_cents: 800 });
    assert!(
        outcomes[1..].iter().all(|o| *o == Outcome::Duplicate),
        "{outcomes:?}"
    );

    assert_eq!(store.balance(user, "eur").await.unwrap(), 800);
    assert_eq!(store.ledger_for(&id).await.unwrap().len(), 1);
    assert_eq!(store.ledger_for(&other).await.unwrap().len(), 1);
}

async fn two_request_ids_credit_twice(backend: Backend) {
    let (store, _db) = store(backend).await;
    let user = new_user();
    let outcomes = store
        .apply_finished(&[
            success(&new_request_id(), user, 500),
            success(&new_request_id(), user, 500),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            Outcome::Credited { balance_cents: 500 },
            Outcome::Credited {
                balance_cents: 1000
            }
        ]
    );
    assert_eq!(store.balance(user, "eur").await.unwrap(), 1000);
    assert_eq!(store.recent_ledger(user, 10).await.unwrap().len(), 2);
}

async fn other_purposes_are_recorded_not_credited(backend: Backend) {
    let (store, _db) = store(backend).await;
    let (id, user) = (new_request_id(), new_user());
    let mut event = success(&id, user, 500);
    event.purpose = "gift_card".into();
    for _ in 0..2 {
        let outcomes = store
            .apply_finished(std::slice::from_ref(&event))
            .await
            .unwrap();
        assert_eq!(
            outcomes,
            vec![Outcome::NotCredited {
                purpose: "gift_card".into()
            }]
        );
    }
    assert_eq!(store.balance(user, "eur").await.unwrap(), 0);
    assert!(store.ledger_for(&id).await.unwrap().is_empty());
    let checkout = store.checkout(&id).await.unwrap().expect("recorded");
    assert_eq!(
        (checkout.status.as_str(), checkout.purpose.as_str()),
        ("success", "gift_card")
    );
}

async fn a_contradicting_duplicate_is_flagged_not_credited(backend: Backend) {
    let (store, _db) = store(backend).await;
    let (id, user) = (new_request_id(), new_user());
    store
        .apply_finished(&[success(&id, user, 500)])
        .await
        .unwrap();

    let mut more = success(&id, user, 700);
    let mut other_currency = success(&id, user, 500);
    other_currency.currency = "usd".into();
    for _ in 0..2 {
        let outcomes = store
            .apply_finished(&[more.clone(), other_currency.clone()])
            .await
            .unwrap();
        for outcome in &outcomes {
            assert!(
                matches!(outcome, Outcome::Flagged { reason } if reason.contains("contradicts the credit")),
                "{outcome:?}"
            );
        }
    }
    assert_eq!(store.balance(user, "eur").await.unwrap(), 500);
    assert_eq!(store.balance(user, "usd").await.unwrap(), 0);
    assert_eq!(store.ledger_for(&id).await.unwrap().len(), 1);

    let flagged = store.flagged(&id).await.unwrap();
    assert_eq!(
        flagged.len(),
        2,
        "one row per contradicting event, however often delivered: {flagged:?}"
    );
    assert_eq!(
        (flagged[0].amount_cents, flagged[0].currency.as_str()),
        (700, "eur")
    );
    assert_eq!(
        (flagged[1].amount_cents, flagged[1].currency.as_str()),
        (500, "usd")
    );
    assert!(
        flagged[0].payload.contains("\"amount_cents\":700"),
        "{}",
        flagged[0].payload
    );
    more.amount_cents = 500;
    assert_eq!(
        store.apply_finished(&[more]).await.unwrap(),
        vec![Outcome::Duplicate]
    );
}

async fn a_second_payment_for_a_credited_checkout_is_flagged_not_folded_in(backend: Backend) {
    let (store, _db) = store(backend).await;
    let (id, user) = (new_request_id(), new_user());
    let first = success(&id, user, 500);
    let mut second = first.clone();
    second.session_id = Some("cs_test_second".into());
    second.payment_intent_id = Some("pi_test_second".into());
    // Also within one batch: the first credits, the second is flagged.
    let outcomes = store
        .apply_finished(&[first.clone(), second.clone()])
        .await
        .unwrap();
    assert_eq!(outcomes[0], Outcome::Credited { balance_cents: 500 });
    assert!(
        matches!(&outcomes[1], Outcome::Flagged { reason } if reason.contains("second payment") && reason.contains("cs_test_second")),
        "{outcomes:?}"
    );
    // Later, alone: flagged again (stored once), never credited.
    let mut third = first.clone();
    third.payment_intent_id = Some("pi_test_third".into());
    let outcomes = store.apply_finished(&[third]).await.unwrap();
    assert!(
        matches!(&outcomes[0], Outcome::Flagged { reason } if reason.contains("pi_test_third")),
        "{outcomes:?}"
    );
    assert_eq!(store.balance(user, "eur").await.unwrap(), 500);
    assert_eq!(store.ledger_for(&id).await.unwrap().len(), 1);
    assert_eq!(store.flagged(&id).await.unwrap().len(), 2);
    // The same payment again, even without its payment intent, is a duplicate.
    let mut same = first.clone();
    same.payment_intent_id = None;
    assert_eq!(
        store.apply_finished(&[first, same]).await.unwrap(),
        vec![Outcome::Duplicate, Outcome::Duplicate]
    );
}

async fn a_success_contradicting_the_requested_checkout_is_flagged(backend: Backend) {
    let (store, _db) = store(backend).await;
    let (id, user) = (new_request_id(), new_user());
    store
        .apply_finished(&[finished(&id, user, 500, CheckoutStatus::SessionCreated)])
        .await
        .unwrap();
    let outcomes = store
        .apply_finished(&[success(&id, user, 50_000)])
        .await
        .unwrap();
    assert!(
        matches!(&outcomes[0], Outcome::Flagged { reason } if reason.contains("session_created")),
        "{outcomes:?}"
    );
    assert_eq!(store.balance(user, "eur").await.unwrap(), 0);
    assert_eq!(store.flagged(&id).await.unwrap().len(), 1);
    // The matching success still credits.
    let outcomes = store
        .apply_finished(&[success(&id, user, 500)])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Outcome::Credited { balance_cents: 500 }]);
}

async fn failed_and_session_created_are_recorded_without_going_back(backend: Backend) {
    let (store, _db) = store(backend).await;
    let user = new_user();

    // requested -> session_created -> failed
    let id = new_request_id();
    let request = checkout_contract::CheckoutRequestEvent {
        request_id: id.clone(),
        user_id: user,
        amount_cents: 500,
        currency: "eur".into(),
        purpose: "balance_topup".into(),
        timestamp: checkout_contract::events::now(),
        success_url: "https://example.com/s".into(),
        cancel_url: "https://example.com/c".into(),
    };
    store.record_requested(&request).await.unwrap();
    assert_eq!(
        store.checkout(&id).await.unwrap().unwrap().status,
        "requested"
    );
    let outcomes = store
        .apply_finished(&[finished(&id, user, 500, CheckoutStatus::SessionCreated)])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Outcome::SessionRecorded]);
    store.record_requested(&request).await.unwrap(); // late: changes nothing
    let checkout = store.checkout(&id).await.unwrap().unwrap();
    assert_eq!(checkout.status, "session_created");
    assert_eq!(
        checkout.session_url.as_deref(),
        Some("https://checkout.stripe.com/c/pay/cs_test_abc123")
    );
    let outcomes = store
        .apply_finished(&[finished(&id, user, 500, CheckoutStatus::Failed)])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Outcome::FailedRecorded]);
    let checkout = store.checkout(&id).await.unwrap().unwrap();
    assert_eq!(checkout.status, "failed");
    assert_eq!(checkout.error_message.as_deref(), Some("card_declined"));
    assert_eq!(
        checkout.session_url.as_deref(),
        Some("https://checkout.stripe.com/c/pay/cs_test_abc123"),
        "kept"
    );

    // success, then a late failed or session_created does not undo it.
    let paid = new_request_id();
    let outcomes = store
        .apply_finished(&[
            finished(&paid, user, 700, CheckoutStatus::SessionCreated),
            success(&paid, user, 700),
            finished(&paid, user, 700, CheckoutStatus::Failed),
            finished(&paid, user, 700, CheckoutStatus::SessionCreated),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            Outcome::SessionRecorded,
            Outcome::Credited { balance_cents: 700 },
            Outcome::FailedAfterSuccess,
            Outcome::SessionAfterEnd
        ]
    );
    assert_eq!(
        store.checkout(&paid).await.unwrap().unwrap().status,
        "success"
    );
    assert_eq!(store.balance(user, "eur").await.unwrap(), 700);
}

async fn balances_are_per_currency_and_the_ledger_lists_newest_first(backend: Backend) {
    let (store, _db) = store(backend).await;
    let (user, other_user) = (new_user(), new_user());
    let mut usd = success(&new_request_id(), user, 1000);
    usd.currency = "usd".into();
    let events = [
        success(&new_request_id(), user, 500),
        usd.clone(),
        success(&new_request_id(), other_user, 9_999),
    ];
    store.apply_finished(&events).await.unwrap();

    let balances = store.balances(user).await.unwrap();
    let pairs: Vec<(&str, i64)> = balances
        .iter()
        .map(|b| (b.currency.as_str(), b.balance_cents))
        .collect();
    assert_eq!(pairs, vec![("eur", 500), ("usd", 1000)]);
    let ledger = store.recent_ledger(user, 10).await.unwrap();
    assert_eq!(ledger.len(), 2);
    assert_eq!(ledger[0].request_id, usd.request_id, "newest first");
    assert!(ledger[0].id > ledger[1].id);
    assert_eq!(store.recent_ledger(user, 1).await.unwrap().len(), 1);
}

async fn a_batch_is_one_transaction(backend: Backend) {
    let (store, _db) = store(backend).await;
    let user = new_user();
    let good = success(&new_request_id(), user, 500);
    // The handler rejects this before the store sees it; here it makes the
    // ledger's CHECK (amount_cents > 0) fail in the middle of the batch.
    let bad = success(&new_request_id(), user, -5);
    let after = success(&new_request_id(), user, 700);
    let err = store
        .apply_finished(&[good.clone(), bad, after])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("database"), "{err}");
    assert_eq!(
        store.balance(user, "eur").await.unwrap(),
        0,
        "nothing of the failed batch stays"
    );
    assert!(store.ledger_for(&good.request_id).await.unwrap().is_empty());
    assert!(store.checkout(&good.request_id).await.unwrap().is_none());
    // The same event applies fine on its own afterwards.
    assert_eq!(
        store.apply_finished(&[good]).await.unwrap(),
        vec![Outcome::Credited { balance_cents: 500 }]
    );
}

async fn a_mixed_batch_reports_each_balance_and_catches_contradictions_within_it(backend: Backend) {
    let (store, _db) = store(backend).await;
    let (u1, u2) = (new_user(), new_user());
    store
        .apply_finished(&[success(&new_request_id(), u1, 1000)])
        .await
        .unwrap();

    let [a, b, c, d, e] = std::array::from_fn(|_| new_request_id());
    let mut usd = success(&c, u1, 50);
    usd.currency = "usd".into();
    let outcomes = store
        .apply_finished(&[
            success(&a, u1, 100),
            success(&b, u2, 200),
            usd,
            success(&a, u1, 100),
            success(&d, u1, 300),
            success(&a, u1, 999),
            finished(&e, u1, 400, CheckoutStatus::SessionCreated),
            success(&e, u1, 401),
            success(&e, u1, 400),
        ])
        .await
        .unwrap();
    let labels: Vec<&str> = outcomes.iter().map(Outcome::label).collect();
    assert_eq!(
        labels,
        [
            "credited",
            "credited",
            "credited",
            "duplicate",
            "credited",
            "flagged",
            "session_recorded",
            "flagged",
            "credited"
        ]
    );
    let balances: Vec<_> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Credited { balance_cents } => Some(*balance_cents),
            _ => None,
        })
        .collect();
    // a, b (u2), c (usd), d, e: each the balance right after it.
    assert_eq!(balances, [1100, 200, 50, 1400, 1800]);
    assert_eq!(store.balance(u1, "eur").await.unwrap(), 1800);
    assert_eq!(store.balance(u1, "usd").await.unwrap(), 50);
    assert_eq!(store.balance(u2, "eur").await.unwrap(), 200);
    assert_eq!(store.flagged(&a).await.unwrap().len(), 1);
    assert!(
        store.flagged(&e).await.unwrap()[0]
            .reason
            .contains("session_created")
    );
}

async fn the_ledger_is_append_only(backend: Backend) {
    let (store, _db) = store(backend).await;
    let id = new_request_id();
    store
        .apply_finished(&[success(&id, new_user(), 500)])
        .await
        .unwrap();
    let (update, delete) = match &store {
        Store::Sqlite(pool) => (
            sqlx::query("UPDATE ledger SET amount_cents = 1")
                .execute(pool)
                .await
                .map(|_| ()),
            sqlx::query("DELETE FROM ledger")
                .execute(pool)
                .await
                .map(|_| ()),
        ),
        Store::Postgres(pool) => (
            sqlx::query("UPDATE ledger SET amount_cents = 1")
                .execute(pool)
                .await
                .map(|_| ()),
            sqlx::query("DELETE FROM ledger")
                .execute(pool)
                .await
                .map(|_| ()),
        ),
    };
    for result in [update, delete] {
        let err = result.expect_err("the ledger refuses changes");
        assert!(err.to_string().contains("append-only"), "{err}");
    }
    assert_eq!(store.ledger_for(&id).await.unwrap()[0].amount_cents, 500);
}

async fn migrations_run_again_as_a_no_op(backend: Backend) {
    let db = TestDb::new(backend).await;
    let store = db.store().await;
    let (id, user) = (new_request_id(), new_user());
    store
        .apply_finished(&[success(&id, user, 500)])
        .await
        .unwrap();
    store.migrate().await.unwrap();
    store.close().await;
    // A restart: connect (and migrate) again, the data is still there.
    let again = db.store().await;
    assert_eq!(again.balance(user, "eur").await.unwrap(), 500);
    assert_eq!(
        again.backend(),
        if backend == Backend::Sqlite {
            "sqlite"
        } else {
            "postgres"
        }
    );
}

/// Credits per second, batched as the consumer batches (256 per transaction)
/// and one per transaction; prints the figures (`--nocapture` shows them).
async fn credit_throughput(backend: Backend) {
    let (store, _db) = store(backend).await;
    let user = new_user();
    let mut expected = 0;
    for (batch_size, events) in [(1_usize, 200_usize), (256, 4096)] {
        let all: Vec<_> = (0..events)
            .map(|_| success(&new_request_id(), user, 100))
            .collect();
        let started = Instant::now();
        for batch in all.chunks(batch_size) {
            store.apply_finished(batch).await.unwrap();
        }
        let elapsed = started.elapsed();
        expected += 100 * i64::try_from(events).unwrap();
        println!(
            "credit throughput [{}] batch {batch_size:>3}: {events} credits in {elapsed:.2?} = {:.0} credits/s",
            store.backend(),
            events as f64 / elapsed.as_secs_f64()
        );
    }
    assert_eq!(store.balance(user, "eur").await.unwrap(), expected);
}

// The store plans a whole batch in memory and writes it with one multi-row
// statement per table: the edge cases of that below.

async fn a_success_and_a_contradicting_success_in_one_batch(backend: Backend) {
    let (store, _db) = store(backend).await;
    let (id, user) = (new_request_id(), new_user());
    let mut usd = success(&id, user, 500);
    usd.currency = "usd".into();
    let outcomes = store
        .apply_finished(&[success(&id, user, 500), success(&id, user, 700), usd])
        .await
        .unwrap();
    assert_eq!(outcomes[0], Outcome::Credited { balance_cents: 500 });
    for outcome in &outcomes[1..] {
        assert!(
            matches!(outcome, Outcome::Flagged { reason } if reason.contains("contradicts the credit")),
            "{outcome:?}"
        );
    }
    assert_eq!(store.balance(user, "eur").await.unwrap(), 500);
    assert_eq!(store.balance(user, "usd").await.unwrap(), 0);
    assert_eq!(store.ledger_for(&id).await.unwrap().len(), 1);
    assert_eq!(store.flagged(&id).await.unwrap().len(), 2);
    // The contradicting one first, then the credit: the first success of the batch decides.
    let other = new_request_id();
    let outcomes = store
        .apply_finished(&[success(&other, user, 700), success(&other, user, 500)])
        .await
        .unwrap();
    assert_eq!(
        outcomes[0],
        Outcome::Credited {
            balance_cents: 1200
        }
    );
    assert_eq!(outcomes[1].label(), "flagged");
    assert_eq!(store.ledger_for(&other).await.unwrap()[0].amount_cents, 700);
}

async fn two_users_interleaved_in_one_batch(backend: Backend) {
    let (store, _db) = store(backend).await;
    let (u1, u2) = (new_user(), new_user());
    let [a, b, c, d] = std::array::from_fn(|_| new_request_id());
    let outcomes = store
        .apply_finished(&[
            success(&a, u1, 100),
            success(&b, u2, 200),
            success(&c, u1, 300),
            success(&b, u2, 200),
            success(&d, u2, 400),
            success(&a, u1, 100),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            Outcome::Credited { balance_cents: 100 },
            Outcome::Credited { balance_cents: 200 },
            Outcome::Credited { balance_cents: 400 },
            Outcome::Duplicate,
            Outcome::Credited { balance_cents: 600 },
            Outcome::Duplicate,
        ]
    );
    assert_eq!(store.balance(u1, "eur").await.unwrap(), 400);
    assert_eq!(store.balance(u2, "eur").await.unwrap(), 600);
    // The ledger ids follow the batch order.
    let ledger: Vec<String> = store
        .recent_ledger(u2, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.request_id)
        .collect();
    assert_eq!(ledger, [d, b]);
}

async fn session_created_then_failed_in_one_batch_keeps_both_fields(backend: Backend) {
    let (store, _db) = store(backend).await;
    let (id, user) = (new_request_id(), new_user());
    let outcomes = store
        .apply_finished(&[
            finished(&id, user, 500, CheckoutStatus::SessionCreated),
            finished(&id, user, 500, CheckoutStatus::Failed),
            finished(&id, user, 500, CheckoutStatus::SessionCreated),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            Outcome::SessionRecorded,
            Outcome::FailedRecorded,
            Outcome::SessionAfterEnd
        ]
    );
    let checkout = store.checkout(&id).await.unwrap().unwrap();
    assert_eq!(checkout.status, "failed");
    assert_eq!(
        checkout.session_url.as_deref(),
        Some("https://checkout.stripe.com/c/pay/cs_test_abc123")
    );
    assert_eq!(checkout.error_message.as_deref(), Some("card_declined"));
}

async fn statuses_a_checkout_refuses_do_not_reach_its_row_in_the_same_batch(backend: Backend) {
    let (store, _db) = store(backend).await;
    let (id, user) = (new_request_id(), new_user());
    store
        .apply_finished(&[finished(&id, user, 500, CheckoutStatus::Failed)])
        .await
        .unwrap();
    // The session_created after failed is ignored, its session_url too; the success still counts.
    let outcomes = store
        .apply_finished(&[
            finished(&id, user, 500, CheckoutStatus::SessionCreated),
            success(&id, user, 500),
            finished(&id, user, 500, CheckoutStatus::Failed),
        ])
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            Outcome::SessionAfterEnd,
            Outcome::Credited { balance_cents: 500 },
            Outcome::FailedAfterSuccess
        ]
    );
    let checkout = store.checkout(&id).await.unwrap().unwrap();
    assert_eq!(checkout.status, "success");
    assert_eq!(checkout.session_url, None);
    assert_eq!(
        checkout.payment_intent_id.as_deref(),
        Some("pi_test_xyz789")
    );
    assert_eq!(
        checkout.error_message.as_deref(),
        Some("card_declined"),
        "kept"
    );
}

/// More rows than one SQLite statement takes, duplicates spread over the
/// chunks and two users.
async fn a_batch_larger_than_one_statement(backend: Backend) {
    let (store, _db) = store(backend).await;
    let (u1, u2) = (new_user(), new_user());
    let rows = blazing_sun::store::sql::SQLITE_ROWS_PER_STATEMENT;
    let events: Vec<_> = (0..2 * rows + 10)
        .map(|i| success(&new_request_id(), if i % 3 == 0 { u2 } else { u1 }, 1))
        .collect();
    let duplicates = events[..rows / 2].to_vec();
    let batch: Vec<_> = events.iter().chain(&duplicates).cloned().collect();
    let outcomes = store.apply_finished(&batch).await.unwrap();
    let credited = outcomes.iter().filter(|o| o.label() == "credited").count();
    let duplicate = outcomes.iter().filter(|o| o.label() == "duplicate").count();
    assert_eq!((credited, duplicate), (events.len(), duplicates.len()));
    let expected_u2 = i64::try_from(events.len().div_ceil(3)).unwrap();
    let expected_u1 = i64::try_from(events.len()).unwrap() - expected_u2;
    assert_eq!(store.balance(u1, "eur").await.unwrap(), expected_u1);
    assert_eq!(store.balance(u2, "eur").await.unwrap(), expected_u2);
    assert_eq!(
        outcomes[events.len() - 1],
        Outcome::Credited {
            balance_cents: if (events.len() - 1) % 3 == 0 {
                expected_u2
            } else {
                expected_u1
            }
        }
    );
    // The whole batch again: all duplicates.
    let again = store.apply_finished(&batch).await.unwrap();
    assert!(again.iter().all(|o| *o == Outcome::Duplicate));
    assert_eq!(store.balance(u1, "eur").await.unwrap(), expected_u1);
}

/// A rebalance overlap on PostgreSQL: another consumer inserted the ledger
/// row after this batch looked it up and before it inserted its own. The
/// batch then waits for that transaction, inserts nothing and reports a
/// duplicate, with no balance move. (SQLite's `BEGIN IMMEDIATE` makes such
/// an overlap impossible there.)
#[tokio::test]
async fn a_credit_committed_meanwhile_by_another_consumer_is_a_duplicate() {
    let (store, _db) = store(Backend::Postgres).await;
    let Store::Postgres(pool) = &store else {
        unreachable!("a PostgreSQL store")
    };
    let (id, user) = (new_request_id(), new_user());
    let mut other = pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO ledger (request_id, user_id, amount_cents, currency, purpose, event_timestamp, recorded_at) \
         VALUES ($1, $2, 500, 'eur', 'balance_topup', '2024-01-15T10:35:00Z', '2024-01-15T10:35:01Z')",
    )
    .bind(&id)
    .bind(user)
    .execute(&mut *other)
    .await
    .unwrap();

    let applying = tokio::spawn({
        let store = store.clone();
        let event = success(&id, user, 500);
        async move { store.apply_finished(&[event]).await }
    });
    // The batch is blocked on the other transaction's ledger row.
    testkit::eventually("the batch to wait for the other consumer's row", Duration::from_secs(10), || {
        let pool = pool.clone();
        async move {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
            )
            .fetch_one(&pool)
            .await
            .ok()?;
            (waiting > 0).then_some(())
        }
    })
    .await;
    other.commit().await.unwrap();

    let outcomes = applying.await.unwrap().unwrap();
    assert_eq!(outcomes, vec![Outcome::Duplicate]);
    assert_eq!(
        store.balance(user, "eur").await.unwrap(),
        0,
        "no second balance move"
    );
    assert_eq!(store.ledger_for(&id).await.unwrap().len(), 1);
}
