//! The store on PostgreSQL: its [`Backend`], whose batch statements take a
//! whole batch as one array per column (`INSERT ... SELECT FROM UNNEST`):
//! one round trip per table per batch, one statement text prepared once
//! per connection. The rest of the store is `backend.rs`.

use std::collections::{HashMap, HashSet};

use sqlx::{PgConnection, Postgres, Row};

use super::backend::{Backend, Total};
use super::plan::{CheckoutRow, Credit, Known, Recorded};
use super::sql;

impl Backend for Postgres {
    const BEGIN: &'static str = "BEGIN";

    async fn select_known(conn: &mut PgConnection, ids: &[&str]) -> Result<Known, sqlx::Error> {
        let mut known = Known::default();
        for row in sqlx::query(sql::PG_SELECT_CREDITED)
            .bind(ids)
            .fetch_all(&mut *conn)
            .await?
        {
            known
                .credited
                .insert(row.try_get("request_id")?, Self::row_credited(&row)?);
        }
        for row in sqlx::query(sql::PG_SELECT_RECORDED)
            .bind(ids)
            .fetch_all(&mut *conn)
            .await?
        {
            let recorded = Recorded {
                terms: Self::row_terms(&row)?,
                status: row.try_get("status")?,
            };
            known.recorded.insert(row.try_get("request_id")?, recorded);
        }
        Ok(known)
    }

    async fn upsert_checkouts<'a>(
        conn: &mut PgConnection,
        rows: &[CheckoutRow<'a>],
        now: &str,
    ) -> Result<(), sqlx::Error> {
        let column =
            |f: fn(&CheckoutRow<'a>) -> Option<&'a str>| rows.iter().map(f).collect::<Vec<_>>();
        sqlx::query(sql::PG_UPSERT_CHECKOUTS)
            .bind(rows.iter().map(|r| r.request_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.user_id).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.amount_cents).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.currency).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.purpose).collect::<Vec<_>>())
            .bind(rows.iter().map(|r| r.status).collect::<Vec<_>>())
            .bind(column(|r| r.session_id))
            .bind(column(|r| r.session_url))
            .bind(column(|r| r.payment_intent_id))
            .bind(column(|r| r.error_message))
            .bind(now)
            .execute(conn)
            .await?;
        Ok(())
    }

    async fn insert_ledger(
        conn: &mut PgConnection,
        credits: &[Credit<'_>],
        now: &str,
    ) -> Result<HashSet<String>, sqlx::Error> {
        let events = || credits.iter().map(|c| c.event);
        let timestamps: Vec<String> = events()
            .map(|e| checkout_contract::events::iso8601::format(&e.timestamp))
            .collect();
        let inserted = sqlx::query_scalar(sql::PG_INSERT_LEDGER)
            .bind(events().map(|e| e.request_id.as_str()).collect::<Vec<_>>())
            .bind(events().map(|e| e.user_id).collect::<Vec<_>>())
            .bind(events().map(|e| e.amount_cents).collect::<Vec<_>>())
            .bind(events().map(|e| e.currency.as_str()).collect::<Vec<_>>())
            .bind(events().map(|e| e.purpose.as_str()).collect::<Vec<_>>())
            .bind(
                events()
                    .map(|e| e.session_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(
                events()
                    .map(|e| e.payment_intent_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .bind(timestamps)
            .bind(now)
            .fetch_all(conn)
            .await?;
        Ok(inserted.into_iter().collect())
    }

    async fn add_to_balances(
        conn: &mut PgConnection,
        totals: &[Total<'_>],
        now: &str,
    ) -> Result<HashMap<(i64, String), i64>, sqlx::Error> {
        let rows = sqlx::query(sql::PG_ADD_TO_BALANCES)
            .bind(totals.iter().map(|t| t.0).collect::<Vec<_>>())
            .bind(totals.iter().map(|t| t.1).collect::<Vec<_>>())
            .bind(totals.iter().map(|t| t.2).collect::<Vec<_>>())
            .bind(now)
            .fetch_all(conn)
            .await?;
        rows.iter()
            .map(|row| {
                Ok((
                    (row.try_get("user_id")?, row.try_get("currency")?),
                    row.try_get("balance_cents")?,
                ))
            })
            .collect()
    }
}
