//! The store's code for both databases. [`Backend`] is implemented for
//! `sqlx::Sqlite` in `sqlite.rs` and `sqlx::Postgres` in `postgres.rs` for
//! what really differs: how a write transaction begins and the batch
//! statements of `apply_finished`. Everything else is written once here,
//! as the trait's provided functions: the reads, the single-row statements
//! of [`sql`] and `apply_finished` itself, which loads what the database
//! knows, plans the batch (`plan.rs`) and writes the plan.
//!
//! Functions return `sqlx::Error`; `Store` wraps it in `StoreError`.

use std::collections::{BTreeMap, HashMap, HashSet};

use checkout_contract::{CheckoutFinishedEvent, CheckoutRequestEvent};
use sqlx::{
    ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Row,
    Transaction, Type,
};

use super::plan::{CheckoutRow, Credit, Credited, Known, Plan, Terms};
use super::sql;
use super::{Balance, CheckoutRecord, FlaggedEvent, LedgerEntry};
use crate::outcome::Outcome;

/// What one balance moves by in a batch: `(user_id, currency, total)`.
pub(super) type Total<'a> = (i64, &'a str, i64);

/// A ledger database. The `where` clauses are what the shared code needs
/// from sqlx: connections and pools that run queries, and the column types
/// the tables use (`i64`, text, nullable text).
pub(super) trait Backend: Database
where
    for<'c> &'c mut Self::Connection: Executor<'c, Database = Self>,
    for<'q> Self::Arguments<'q>: IntoArguments<'q, Self>,
    for<'r> &'r str: ColumnIndex<Self::Row>,
    for<'q> i64: Encode<'q, Self> + Decode<'q, Self> + Type<Self>,
    for<'q> String: Encode<'q, Self> + Decode<'q, Self> + Type<Self>,
    for<'q> &'q str: Encode<'q, Self> + Type<Self>,
    for<'r> Balance: FromRow<'r, Self::Row>,
    for<'r> LedgerEntry: FromRow<'r, Self::Row>,
    for<'r> CheckoutRecord: FromRow<'r, Self::Row>,
    for<'r> FlaggedEvent: FromRow<'r, Self::Row>,
{
    /// The statement opening a write transaction. SQLite's is `BEGIN
    /// IMMEDIATE`, so a transaction that reads before it writes waits for
    /// the write lock instead of failing.
    const BEGIN: &'static str;

    /// What the database knows about `ids` (sorted, unique).
    async fn select_known(conn: &mut Self::Connection, ids: &[&str]) -> Result<Known, sqlx::Error>;

    /// Writes the batch's checkout rows (at most one per request_id).
    async fn upsert_checkouts(
        conn: &mut Self::Connection,
        rows: &[CheckoutRow<'_>],
        now: &str,
    ) -> Result<(), sqlx::Error>;

    /// Inserts the credits in batch order; returns the request_ids inserted
    /// (a credit another consumer made meanwhile is not).
    async fn insert_ledger(
        conn: &mut Self::Connection,
        credits: &[Credit<'_>],
        now: &str,
    ) -> Result<HashSet<String>, sqlx::Error>;

    /// Adds each total to its balance; returns the new balances.
    async fn add_to_balances(
        conn: &mut Self::Connection,
        totals: &[Total<'_>],
        now: &str,
    ) -> Result<HashMap<(i64, String), i64>, sqlx::Error>;

    /// The terms a ledger or checkouts row was recorded with.
    fn row_terms(row: &Self::Row) -> Result<Terms, sqlx::Error> {
        Ok(Terms {
            user_id: row.try_get("user_id")?,
            amount_cents: row.try_get("amount_cents")?,
            currency: row.try_get("currency")?,
        })
    }

    /// A ledger row: what was credited, and by which payment.
    fn row_credited(row: &Self::Row) -> Result<Credited, sqlx::Error> {
        Ok(Credited {
            terms: Self::row_terms(row)?,
            session_id: row.try_get("session_id")?,
            payment_intent_id: row.try_get("payment_intent_id")?,
        })
    }

    async fn ping(pool: &Pool<Self>) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1").execute(pool).await?;
        Ok(())
    }

    /// One transaction for the whole batch, with a fixed number of
    /// statements whatever its size: what the database knows about the
    /// batch's request_ids (`select_known`), then the plan (`plan.rs`)
    /// written with one multi-row statement per table (`upsert_checkouts`,
    /// `insert_ledger`, `add_to_balances`), plus one insert per flagged
    /// event (rare).
    async fn apply_finished(
        pool: &Pool<Self>,
        events: &[CheckoutFinishedEvent],
        now: &str,
    ) -> Result<Vec<Outcome>, sqlx::Error> {
        let mut tx = pool.begin_with(Self::BEGIN).await?;
        let mut ids: Vec<&str> = events.iter().map(|e| e.request_id.as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        let mut known = Self::select_known(&mut tx, &ids).await?;
        let mut plan = Plan::decide(events, &mut known);

        if !plan.checkouts.is_empty() {
            Self::upsert_checkouts(&mut tx, &plan.checkouts, now).await?;
        }
        for (e, reason) in &plan.flagged {
            Self::flag(&mut tx, e, reason, now).await?;
        }
        if plan.credits.is_empty() {
            tx.commit().await?;
            return Ok(plan.outcomes);
        }
        let inserted = Self::insert_ledger(&mut tx, &plan.credits, now).await?;
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
            let totals: Vec<Total<'_>> = pending
                .iter()
                .map(|((user_id, currency), credits)| {
                    (
                        *user_id,
                        *currency,
                        credits.iter().map(|(_, amount)| amount).sum(),
                    )
                })
                .collect();
            let balances = Self::add_to_balances(&mut tx, &totals, now).await?;
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
        tx: &mut Transaction<'static, Self>,
        e: &CheckoutFinishedEvent,
        reason: &str,
        now: &str,
    ) -> Result<(), sqlx::Error> {
        let payload = serde_json::to_string(e).unwrap_or_default();
        sqlx::query(sql::INSERT_FLAGGED)
            .bind(e.request_id.as_str())
            .bind(e.user_id)
            .bind(e.amount_cents)
            .bind(e.currency.as_str())
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

    async fn record_requested(
        pool: &Pool<Self>,
        e: &CheckoutRequestEvent,
        now: &str,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(sql::INSERT_REQUESTED)
            .bind(e.request_id.as_str())
            .bind(e.user_id)
            .bind(e.amount_cents)
            .bind(e.currency.as_str())
            .bind(e.purpose.as_str())
            .bind(now)
            .execute(pool)
            .await?;
        Ok(())
    }

    async fn balances(pool: &Pool<Self>, user_id: i64) -> Result<Vec<Balance>, sqlx::Error> {
        sqlx::query_as(sql::SELECT_BALANCES)
            .bind(user_id)
            .fetch_all(pool)
            .await
    }

    async fn recent_ledger(
        pool: &Pool<Self>,
        user_id: i64,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>, sqlx::Error> {
        sqlx::query_as(sql::SELECT_RECENT_LEDGER)
            .bind(user_id)
            .bind(limit)
            .fetch_all(pool)
            .await
    }

    async fn ledger_for(
        pool: &Pool<Self>,
        request_id: &str,
    ) -> Result<Vec<LedgerEntry>, sqlx::Error> {
        sqlx::query_as(sql::SELECT_LEDGER_BY_REQUEST)
            .bind(request_id)
            .fetch_all(pool)
            .await
    }

    async fn checkout(
        pool: &Pool<Self>,
        request_id: &str,
    ) -> Result<Option<CheckoutRecord>, sqlx::Error> {
        sqlx::query_as(sql::SELECT_CHECKOUT)
            .bind(request_id)
            .fetch_optional(pool)
            .await
    }

    async fn flagged(
        pool: &Pool<Self>,
        request_id: &str,
    ) -> Result<Vec<FlaggedEvent>, sqlx::Error> {
        sqlx::query_as(sql::SELECT_FLAGGED)
            .bind(request_id)
            .fetch_all(pool)
            .await
    }
}
