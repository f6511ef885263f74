//! The store's code, written once and instantiated per database by
//! `backend!(Database, "BEGIN statement")` in `store/sqlite.rs` and
//! `store/postgres.rs`. SQLite opens write transactions with `BEGIN
//! IMMEDIATE`, so a transaction that reads before it writes waits for the
//! write lock instead of failing.
//!
//! The batch statements differ per database, so each of those files also
//! defines, next to the expansion (which gives them `row_terms` and `row_credited`), `select_known`, `upsert_checkouts`,
//! `insert_ledger` and `add_to_balances`, which `apply_finished` calls.
//!
//! Functions return `sqlx::Error`; `Store` wraps it in `StoreError`.

macro_rules! backend {
    ($db:ty, $begin:literal) => {
        use std::collections::BTreeMap;

        use checkout_contract::{CheckoutFinishedEvent, CheckoutRequestEvent};
        use sqlx::{Pool, Row, Transaction};

        use super::plan::Plan;
        use super::sql;
        use super::{Balance, CheckoutRecord, FlaggedEvent, LedgerEntry, StoreError};
        use crate::outcome::Outcome;

        type Db = $db;
        type Tx = Transaction<'static, Db>;

        /// The (user_id, amount_cents, currency) a ledger or checkouts row
        /// was recorded with.
        fn row_terms(row: &<Db as sqlx::Database>::Row) -> Result<super::plan::Terms, sqlx::Error> {
            Ok((
                row.try_get("user_id")?,
                row.try_get("amount_cents")?,
                row.try_get("currency")?,
            ))
        }

        /// A ledger row: what was credited, and by which payment.
        fn row_credited(
            row: &<Db as sqlx::Database>::Row,
        ) -> Result<super::plan::Credited, sqlx::Error> {
            Ok(super::plan::Credited {
                terms: row_terms(row)?,
                session_id: row.try_get("session_id")?,
                payment_intent_id: row.try_get("payment_intent_id")?,
            })
        }

        pub(super) async fn ping(pool: &Pool<Db>) -> Result<(), StoreError> {
            sqlx::query("SELECT 1").execute(pool).await?;
            Ok(())
        }

        /// One transaction for the whole batch, with a fixed number of
        /// statements whatever its size: what the database knows about
        /// the batch's request_ids (two look-ups), then the plan
        /// (`plan.rs`) written with one multi-row statement per table
        /// (`upsert_checkouts`, `insert_ledger`, `add_to_balances` of this
        /// backend's file), plus one insert per flagged event (rare).
        pub(super) async fn apply_finished(
            pool: &Pool<Db>,
            events: &[CheckoutFinishedEvent],
            now: &str,
        ) -> Result<Vec<Outcome>, StoreError> {
            let mut tx = pool.begin_with($begin).await?;
            let mut ids: Vec<&str> = events.iter().map(|e| e.request_id.as_str()).collect();
            ids.sort_unstable();
            ids.dedup();
            let mut known = select_known(&mut *tx, &ids).await?;
            let mut plan = Plan::decide(events, &mut known);

            if !plan.checkouts.is_empty() {
                upsert_checkouts(&mut *tx, &plan.checkouts, now).await?;
            }
            for (e, reason) in &plan.flagged {
                flag(&mut tx, e, reason, now).await?;
            }
            if plan.credits.is_empty() {
                tx.commit().await?;
                return Ok(plan.outcomes);
            }
            let inserted = insert_ledger(&mut *tx, &plan.credits, now).await?;
            // Credits per (user_id, currency): (index of the event, amount), in batch order.
            let mut pending: BTreeMap<(i64, &str), Vec<(usize, i64)>> = BTreeMap::new();
            for credit in &plan.credits {
                let e = credit.event;
                if inserted.contains(e.request_id.as_str()) {
                    pending
                        .entry((e.user_id, e.currency.as_str()))
                        .or_default()
                        .push((credit.index, e.amount_cents));
                } else {
                    // Another consumer credited it a moment ago (a rebalance overlap).
                    plan.outcomes[credit.index] = Outcome::Duplicate;
                }
            }
            if !pending.is_empty() {
                let totals: Vec<(i64, &str, i64)> = pending
                    .iter()
                    .map(|((user_id, currency), credits)| {
                        (
                            *user_id,
                            *currency,
                            credits.iter().map(|(_, amount)| amount).sum(),
                        )
                    })
                    .collect();
                let balances = add_to_balances(&mut *tx, &totals, now).await?;
                for ((user_id, currency), credits) in &pending {
                    let mut balance_cents = *balances
                        .get(&(*user_id, (*currency).to_owned()))
                        .ok_or(sqlx::Error::RowNotFound)?;
                    // Each credit reports the balance right after it.
                    for (index, amount) in credits.iter().rev() {
                        plan.outcomes[*index] = Outcome::Credited { balance_cents };
                        balance_cents -= amount;
                    }
                }
            }
            tx.commit().await?;
            Ok(plan.outcomes)
        }

        async fn flag(
            tx: &mut Tx,
            e: &CheckoutFinishedEvent,
            reason: &str,
            now: &str,
        ) -> Result<(), sqlx::Error> {
            let payload = serde_json::to_string(e).unwrap_or_default();
            sqlx::query(sql::INSERT_FLAGGED)
                .bind(&e.request_id)
                .bind(e.user_id)
                .bind(e.amount_cents)
                .bind(&e.currency)
                .bind(e.status.as_str())
                .bind(reason)
                .bind(payload)
                .bind(now)
                .bind(e.session_id.as_deref().unwrap_or_default())
                .bind(e.payment_intent_id.as_deref().unwrap_or_default())
                .execute(&mut **tx)
                .await?;
            Ok(())
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
