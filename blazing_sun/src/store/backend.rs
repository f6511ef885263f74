//! The store's code, written once and instantiated per database by
//! `backend!(Database, "BEGIN statement")` in `store/mod.rs`. SQLite opens
//! write transactions with `BEGIN IMMEDIATE`, so a transaction that reads
//! before it writes waits for the write lock instead of failing.
//!
//! Functions return `sqlx::Error`; `Store` wraps it in `StoreError`.

macro_rules! backend {
    ($db:ty, $begin:literal) => {
        use checkout_contract::{CheckoutFinishedEvent, CheckoutRequestEvent, CheckoutStatus};
        use sqlx::{Pool, Row, Transaction};

        use super::sql;
        use super::{Balance, CheckoutRecord, FlaggedEvent, Known, LedgerEntry, StoreError};
        use crate::outcome::Outcome;

        type Db = $db;
        type Tx = Transaction<'static, Db>;

        pub(super) async fn ping(pool: &Pool<Db>) -> Result<(), StoreError> {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        }

        /// One transaction for the whole batch: two look-ups for every
        /// request_id of its `success` events, two statements per new
        /// credit (checkout, ledger row), one balance update per
        /// (user, currency).
        pub(super) async fn apply_finished(
            pool: &Pool<Db>,
            events: &[CheckoutFinishedEvent],
            now: &str,
        ) -> Result<Vec<Outcome>, StoreError> {
            let mut tx = pool.begin_with($begin).await?;
            let mut known = Known::default();
            prefetch(&mut tx, events, &mut known).await?;
            let mut outcomes = Vec::with_capacity(events.len());
            for (index, event) in events.iter().enumerate() {
                outcomes.push(apply_one(&mut tx, event, now, &mut known, index).await?);
            }
            for ((user_id, currency), credits) in known.pending {
                let total: i64 = credits.iter().map(|(_, amount)| amount).sum();
                let mut balance_cents: i64 = sqlx::query_scalar(sql::ADD_TO_BALANCE)
                    .bind(user_id)
                    .bind(&currency)
                    .bind(total)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await?;
                // Each credit reports the balance right after it.
                for (index, amount) in credits.iter().rev() {
                    outcomes[*index] = Outcome::Credited { balance_cents };
                    balance_cents -= amount;
                }
            }
            tx.commit().await?;
            Ok(outcomes)
        }

        /// Loads what the database knows about the batch's `success` request_ids.
        async fn prefetch(
            tx: &mut Tx,
            events: &[CheckoutFinishedEvent],
            known: &mut Known,
        ) -> Result<(), sqlx::Error> {
            let mut ids: Vec<&str> = events
                .iter()
                .filter(|e| e.status == CheckoutStatus::Success)
                .map(|e| e.request_id.as_str())
                .collect();
            ids.sort_unstable();
            ids.dedup();
            for chunk in ids.chunks(sql::PREFETCH_CHUNK) {
                let statement = sql::select_credited_in(chunk.len());
                let mut query = sqlx::query(&statement).persistent(false);
                for id in chunk {
                    query = query.bind(*id);
                }
                for row in query.fetch_all(&mut **tx).await? {
                    let terms = (
                        row.try_get("user_id")?,
                        row.try_get("amount_cents")?,
                        row.try_get("currency")?,
                    );
                    known.credited.insert(row.try_get("request_id")?, terms);
                }
                let statement = sql::select_recorded_in(chunk.len());
                let mut query = sqlx::query(&statement).persistent(false);
                for id in chunk {
                    query = query.bind(*id);
                }
                for row in query.fetch_all(&mut **tx).await? {
                    let terms = (
                        row.try_get("user_id")?,
                        row.try_get("amount_cents")?,
                        row.try_get("currency")?,
                    );
                    known
                        .recorded
                        .insert(row.try_get("request_id")?, (terms, row.try_get("status")?));
                }
            }
            Ok(())
        }

        async fn apply_one(
            tx: &mut Tx,
            e: &CheckoutFinishedEvent,
            now: &str,
            known: &mut Known,
            index: usize,
        ) -> Result<Outcome, sqlx::Error> {
            match e.status {
                CheckoutStatus::SessionCreated => {
                    if upsert_checkout(tx, sql::UPSERT_SESSION_CREATED, e, now, known).await? {
                        Ok(Outcome::SessionRecorded)
                    } else {
                        Ok(Outcome::SessionAfterEnd)
                    }
                }
                CheckoutStatus::Failed => {
                    if upsert_checkout(tx, sql::UPSERT_FAILED, e, now, known).await? {
                        Ok(Outcome::FailedRecorded)
                    } else {
                        Ok(Outcome::FailedAfterSuccess)
                    }
                }
                CheckoutStatus::Success => success(tx, e, now, known, index).await,
            }
        }

        async fn success(
            tx: &mut Tx,
            e: &CheckoutFinishedEvent,
            now: &str,
            known: &mut Known,
            index: usize,
        ) -> Result<Outcome, sqlx::Error> {
            let terms = (e.user_id, e.amount_cents, e.currency.clone());
            // An earlier credit decides: the same event again is a no-op, a different one is flagged.
            if let Some(credited) = known.credited.get(&e.request_id) {
                if *credited == terms {
                    return Ok(Outcome::Duplicate);
                }
                let reason = format!(
                    "success contradicts the credit already recorded (user {}, {} {})",
                    credited.0, credited.1, credited.2
                );
                return flag(tx, e, reason, now).await;
            }
            // An earlier record of the checkout (requested, session_created, failed) must agree too.
            if let Some((recorded, status)) = known.recorded.get(&e.request_id)
                && *recorded != terms
            {
                let reason = format!(
                    "success contradicts the checkout recorded as {status} (user {}, {} {})",
                    recorded.0, recorded.1, recorded.2
                );
                return flag(tx, e, reason, now).await;
            }
            upsert_checkout(tx, sql::UPSERT_SUCCESS, e, now, known).await?;
            if e.purpose != checkout_contract::domain::DEFAULT_PURPOSE {
                return Ok(Outcome::NotCredited {
                    purpose: e.purpose.clone(),
                });
            }
            let inserted = sqlx::query(sql::INSERT_LEDGER)
                .bind(&e.request_id)
                .bind(e.user_id)
                .bind(e.amount_cents)
                .bind(&e.currency)
                .bind(&e.purpose)
                .bind(&e.session_id)
                .bind(&e.payment_intent_id)
                .bind(checkout_contract::events::iso8601::format(&e.timestamp))
                .bind(now)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            known.credited.insert(e.request_id.clone(), terms);
            if inserted == 0 {
                // Another consumer credited it a moment ago (a rebalance overlap).
                return Ok(Outcome::Duplicate);
            }
            known
                .pending
                .entry((e.user_id, e.currency.clone()))
                .or_default()
                .push((index, e.amount_cents));
            // The balance is added once per (user, currency) at the end of the batch.
            Ok(Outcome::Credited { balance_cents: 0 })
        }

        async fn flag(
            tx: &mut Tx,
            e: &CheckoutFinishedEvent,
            reason: String,
            now: &str,
        ) -> Result<Outcome, sqlx::Error> {
            let payload = serde_json::to_string(e).unwrap_or_default();
            sqlx::query(sql::INSERT_FLAGGED)
                .bind(&e.request_id)
                .bind(e.user_id)
                .bind(e.amount_cents)
                .bind(&e.currency)
                .bind(e.status.as_str())
                .bind(&reason)
                .bind(payload)
                .bind(now)
                .execute(&mut **tx)
                .await?;
            Ok(Outcome::Flagged { reason })
        }

        /// Inserts or updates the checkout; false when `statement`'s guard kept the old row.
        async fn upsert_checkout(
            tx: &mut Tx,
            statement: &'static str,
            e: &CheckoutFinishedEvent,
            now: &str,
            known: &mut Known,
        ) -> Result<bool, sqlx::Error> {
            let changed = sqlx::query(statement)
                .bind(&e.request_id)
                .bind(e.user_id)
                .bind(e.amount_cents)
                .bind(&e.currency)
                .bind(&e.purpose)
                .bind(e.status.as_str())
                .bind(&e.session_id)
                .bind(&e.session_url)
                .bind(&e.payment_intent_id)
                .bind(&e.error_message)
                .bind(now)
                .execute(&mut **tx)
                .await?
                .rows_affected();
            if changed > 0 {
                // The first record's terms stay; only the status moves.
                known
                    .recorded
                    .entry(e.request_id.clone())
                    .and_modify(|(_, status)| *status = e.status.as_str().to_owned())
                    .or_insert_with(|| {
                        (
                            (e.user_id, e.amount_cents, e.currency.clone()),
                            e.status.as_str().to_owned(),
                        )
                    });
            }
            Ok(changed > 0)
        }

        pub(super) async fn record_requested(
            pool: &Pool<Db>,
            e: &CheckoutRequestEvent,
            now: &str,
        ) -> Result<(), StoreError> {
            sqlx::query(sql::INSERT_REQUESTED)
                .bind(&e.request_id)
                .bind(e.user_id)
                .bind(e.amount_cents)
                .bind(&e.currency)
                .bind(&e.purpose)
                .bind(now)
                .execute(pool)
                .await?;
            Ok(())
        }

        pub(super) async fn balances(
            pool: &Pool<Db>,
            user_id: i64,
        ) -> Result<Vec<Balance>, StoreError> {
            let rows = sqlx::query(sql::SELECT_BALANCES)
                .bind(user_id)
                .fetch_all(pool)
                .await?;
            let balances = rows
                .iter()
                .map(|row| {
                    Ok(Balance {
                        currency: row.try_get("currency")?,
                        balance_cents: row.try_get("balance_cents")?,
                        updated_at: row.try_get("updated_at")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()?;
            Ok(balances)
        }

        pub(super) async fn recent_ledger(
            pool: &Pool<Db>,
            user_id: i64,
            limit: i64,
        ) -> Result<Vec<LedgerEntry>, StoreError> {
            let rows = sqlx::query(sql::SELECT_RECENT_LEDGER)
                .bind(user_id)
                .bind(limit)
                .fetch_all(pool)
                .await?;
            Ok(rows.iter().map(ledger_entry).collect::<Result<_, _>>()?)
        }

        pub(super) async fn ledger_for(
            pool: &Pool<Db>,
            request_id: &str,
        ) -> Result<Vec<LedgerEntry>, StoreError> {
            let rows = sqlx::query(sql::SELECT_LEDGER_BY_REQUEST)
                .bind(request_id)
                .fetch_all(pool)
                .await?;
            Ok(rows.iter().map(ledger_entry).collect::<Result<_, _>>()?)
        }

        pub(super) async fn checkout(
            pool: &Pool<Db>,
            request_id: &str,
        ) -> Result<Option<CheckoutRecord>, StoreError> {
            let row = sqlx::query(sql::SELECT_CHECKOUT)
                .bind(request_id)
                .fetch_optional(pool)
                .await?;
            Ok(row.as_ref().map(checkout_record).transpose()?)
        }

        pub(super) async fn flagged(
            pool: &Pool<Db>,
            request_id: &str,
        ) -> Result<Vec<FlaggedEvent>, StoreError> {
            let rows = sqlx::query(sql::SELECT_FLAGGED)
                .bind(request_id)
                .fetch_all(pool)
                .await?;
            let flagged = rows
                .iter()
                .map(|row| {
                    Ok(FlaggedEvent {
                        request_id: row.try_get("request_id")?,
                        user_id: row.try_get("user_id")?,
                        amount_cents: row.try_get("amount_cents")?,
                        currency: row.try_get("currency")?,
                        status: row.try_get("status")?,
                        reason: row.try_get("reason")?,
                        payload: row.try_get("payload")?,
                        flagged_at: row.try_get("flagged_at")?,
                    })
                })
                .collect::<Result<_, sqlx::Error>>()?;
            Ok(flagged)
        }

        fn ledger_entry(row: &<Db as sqlx::Database>::Row) -> Result<LedgerEntry, sqlx::Error> {
            Ok(LedgerEntry {
                id: row.try_get("id")?,
                request_id: row.try_get("request_id")?,
                user_id: row.try_get("user_id")?,
                amount_cents: row.try_get("amount_cents")?,
                currency: row.try_get("currency")?,
                purpose: row.try_get("purpose")?,
                session_id: row.try_get("session_id")?,
                payment_intent_id: row.try_get("payment_intent_id")?,
                event_timestamp: row.try_get("event_timestamp")?,
                recorded_at: row.try_get("recorded_at")?,
            })
        }

        fn checkout_record(
            row: &<Db as sqlx::Database>::Row,
        ) -> Result<CheckoutRecord, sqlx::Error> {
            Ok(CheckoutRecord {
                request_id: row.try_get("request_id")?,
                user_id: row.try_get("user_id")?,
                amount_cents: row.try_get("amount_cents")?,
                currency: row.try_get("currency")?,
                purpose: row.try_get("purpose")?,
                status: row.try_get("status")?,
                session_id: row.try_get("session_id")?,
                session_url: row.try_get("session_url")?,
                payment_intent_id: row.try_get("payment_intent_id")?,
                error_message: row.try_get("error_message")?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        }
    };
}
