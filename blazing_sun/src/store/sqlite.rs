//! The store on SQLite: its [`Backend`], whose batch statements are one
//! multi-row `VALUES` statement per table per batch (per
//! [`sql::SQLITE_ROWS_PER_STATEMENT`] rows): each statement is a round trip
//! to sqlx's SQLite worker thread, so fewer statements is what counts. The
//! rest of the store is `backend.rs`.

use std::collections::{HashMap, HashSet};

use sqlx::{Row, Sqlite, SqliteConnection};

use super::backend::{Backend, Total};
use super::plan::{CheckoutRow, Credit, Known, Recorded};
use super::sql;

impl Backend for Sqlite {
    const BEGIN: &'static str = "BEGIN IMMEDIATE";

    async fn select_known(conn: &mut SqliteConnection, ids: &[&str]) -> Result<Known, sqlx::Error> {
        let mut known = Known::default();
        for chunk in ids.chunks(sql::PREFETCH_CHUNK) {
            let statement = sql::select_credited_in(chunk.len());
            let mut query = sqlx::query(&statement);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut *conn).await? {
                known
                    .credited
                    .insert(row.try_get("request_id")?, Self::row_credited(&row)?);
            }
            let statement = sql::select_recorded_in(chunk.len());
            let mut query = sqlx::query(&statement);
            for id in chunk {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&mut *conn).await? {
                let recorded = Recorded {
                    terms: Self::row_terms(&row)?,
                    status: row.try_get("status")?,
                };
                known.recorded.insert(row.try_get("request_id")?, recorded);
            }
        }
        Ok(known)
    }

    async fn upsert_checkouts(
        conn: &mut SqliteConnection,
        rows: &[CheckoutRow<'_>],
        now: &str,
    ) -> Result<(), sqlx::Error> {
        for chunk in rows.chunks(sql::SQLITE_ROWS_PER_STATEMENT) {
            let statement = sql::sqlite_upsert_checkouts(chunk.len());
            let mut query = sqlx::query(&statement);
            for r in chunk {
                query = query
                    .bind(r.request_id)
                    .bind(r.user_id)
                    .bind(r.amount_cents)
                    .bind(r.currency)
                    .bind(r.purpose)
                    .bind(r.status)
                    .bind(r.session_id)
                    .bind(r.session_url)
                    .bind(r.payment_intent_id)
                    .bind(r.error_message)
                    .bind(now)
                    .bind(now);
            }
            query.execute(&mut *conn).await?;
        }
        Ok(())
    }

    async fn insert_ledger(
        conn: &mut SqliteConnection,
        credits: &[Credit<'_>],
        now: &str,
    ) -> Result<HashSet<String>, sqlx::Error> {
        let mut inserted = HashSet::with_capacity(credits.len());
        for chunk in credits.chunks(sql::SQLITE_ROWS_PER_STATEMENT) {
            let statement = sql::sqlite_insert_ledger(chunk.len());
            let mut query = sqlx::query_scalar(&statement);
            for credit in chunk {
                let e = credit.event;
                query = query
                    .bind(e.request_id.as_str())
                    .bind(e.user_id)
                    .bind(e.amount_cents)
                    .bind(e.currency.as_str())
                    .bind(e.purpose.as_str())
                    .bind(e.session_id.as_deref())
                    .bind(e.payment_intent_id.as_deref())
                    .bind(checkout_contract::events::iso8601::format(&e.timestamp))
                    .bind(now);
            }
            inserted.extend(query.fetch_all(&mut *conn).await?);
        }
        Ok(inserted)
    }

    async fn add_to_balances(
        conn: &mut SqliteConnection,
        totals: &[Total<'_>],
        now: &str,
    ) -> Result<HashMap<(i64, String), i64>, sqlx::Error> {
        let mut balances = HashMap::with_capacity(totals.len());
        for chunk in totals.chunks(sql::SQLITE_ROWS_PER_STATEMENT) {
            let statement = sql::sqlite_add_to_balances(chunk.len());
            let mut query = sqlx::query(&statement);
            for (user_id, currency, total) in chunk {
                query = query.bind(*user_id).bind(*currency).bind(*total).bind(now);
            }
            for row in query.fetch_all(&mut *conn).await? {
                balances.insert(
                    (row.try_get("user_id")?, row.try_get("currency")?),
                    row.try_get("balance_cents")?,
                );
            }
        }
        Ok(balances)
    }
}
