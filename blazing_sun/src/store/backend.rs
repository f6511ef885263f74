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
        use super::{Balance, CheckoutRecord, FlaggedEvent, LedgerEntry, StoreError};
        use crate::outcome::Outcome;

        type Db = $db;
        type Tx = Transaction<'static, Db>;

        pub(super) async fn ping(pool: &Pool<Db>) -> Result<(), StoreError> {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        }

        pub(super) async fn apply_finished(
            pool: &Pool<Db>,
            events: &[CheckoutFinishedEvent],
            now: &str,
        ) -> Result<Vec<Outcome>, StoreError> {
            let mut tx = pool.begin_with($begin).await?;
            let mut outcomes = Vec::with_capacity(events.len());
            for event in events {
                outcomes.push(apply_one(&mut tx, event, now).await?);
            }
            tx.commit().await?;
            Ok(outcomes)
        }

        async fn apply_one(
            tx: &mut Tx,
            e: &CheckoutFinishedEvent,
            now: &str,
        ) -> Result<Outcome, sqlx::Error> {
            match e.status {
                CheckoutStatus::SessionCreated => {
                    if upsert_checkout(tx, sql::UPSERT_SESSION_CREATED, e, now).await? {
                        Ok(Outcome::SessionRecorded)
                    } else {
                        Ok(Outcome::SessionAfterEnd)
                    }
                }
                CheckoutStatus::Failed => {
                    if upsert_checkout(tx, sql::UPSERT_FAILED, e, now).await? {
                        Ok(Outcome::FailedRecorded)
                    } else {
                        Ok(Outcome::FailedAfterSuccess)
                    }
                }
                CheckoutStatus::Success => success(tx, e, now).await,
            }
        }

        async fn success(
            tx: &mut Tx,
            e: &CheckoutFinishedEvent,
            now: &str,
        ) -> Result<Outcome, sqlx::Error> {
            // An earlier credit decides: the same event again is a no-op, a different one is flagged.
            if let Some(row) = sqlx::query(sql::SELECT_LEDGER_BY_REQUEST)
                .bind(&e.request_id)
                .fetch_optional(&mut **tx)
                .await?
            {
                let credited = ledger_entry(&row)?;
                if (
                    credited.user_id,
                    credited.amount_cents,
                    credited.currency.as_str(),
                ) == (e.user_id, e.amount_cents, e.currency.as_str())
                {
                    return Ok(Outcome::Duplicate);
                }
                let reason = format!(
                    "success contradicts the credit already recorded (user {}, {} {})",
                    credited.user_id, credited.amount_cents, credited.currency
                );
                return flag(tx, e, reason, now).await;
            }
            // An earlier record of the checkout (requested, session_created, failed) must agree too.
            if let Some(row) = sqlx::query(sql::SELECT_CHECKOUT)
                .bind(&e.request_id)
                .fetch_optional(&mut **tx)
                .await?
            {
                let known = checkout_record(&row)?;
                if (known.user_id, known.amount_cents, known.currency.as_str())
                    != (e.user_id, e.amount_cents, e.currency.as_str())
                {
                    let reason = format!(
                        "success contradicts the checkout recorded as {} (user {}, {} {})",
                        known.status, known.user_id, known.amount_cents, known.currency
                    );
                    return flag(tx, e, reason, now).await;
                }
            }
            upsert_checkout(tx, sql::UPSERT_SUCCESS, e, now).await?;
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
            if inserted == 0 {
                // Another consumer credited it a moment ago (a rebalance overlap).
                return Ok(Outcome::Duplicate);
            }
            let balance_cents: i64 = sqlx::query_scalar(sql::ADD_TO_BALANCE)
                .bind(e.user_id)
                .bind(&e.currency)
                .bind(e.amount_cents)
                .bind(now)
                .fetch_one(&mut **tx)
                .await?;
            Ok(Outcome::Credited { balance_cents })
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
