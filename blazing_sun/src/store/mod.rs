//! The ledger store: balances per (user_id, currency) in minor units, the
//! append-only ledger, each checkout's status and the flagged events, behind
//! one [`Store`] with two real sqlx implementations.
//!
//! - SQLite, the embedded default (`DATABASE_URL=sqlite://data/blazing_sun.db`;
//!   the file and its directory are created when missing).
//! - PostgreSQL (`DATABASE_URL=postgres://...`).
//!
//! Migrations are embedded (`migrations/sqlite`, `migrations/postgres`, see
//! `migrations.rs`) and run by [`Store::connect`]. Every SQL text lives in
//! [`sql`]. `backend.rs` holds the code both databases share, as the
//! provided functions of its `Backend` trait; `sqlite.rs` and `postgres.rs`
//! implement that trait with what differs: how a write transaction begins
//! and the batch statements.
//!
//! Exactly-once credits: [`Store::apply_finished`] applies a batch of
//! `checkout.finished` events in ONE transaction. The ledger row is unique on
//! request_id and the balance moves only when that row was inserted, so
//! applying the same event again (Kafka redelivery, a crash before the offset
//! was stored) changes nothing. `plan.rs` decides the whole batch in memory
//! from what the database holds, so a batch is a handful of multi-row
//! statements, not two per event.

mod backend;
mod migrations;
mod plan;
mod postgres;
pub mod sql;
mod sqlite;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use checkout_contract::{CheckoutFinishedEvent, CheckoutRequestEvent};
use serde::Serialize;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use self::backend::Backend;
use crate::outcome::Outcome;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("unsupported DATABASE_URL {0:?}: expected sqlite://<path> or postgres://...")]
    UnsupportedUrl(String),
    #[error("cannot create the database directory {path}: {source}")]
    CreateDir {
        path: String,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot run migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl StoreError {
    /// Does the database refuse these values for good, so that no retry can
    /// ever succeed? Only a data or constraint error it raises about what was
    /// written (a CHECK, NOT NULL or foreign key, a value out of range, a
    /// type mismatch, a value too big). Everything else is the database not
    /// able to write now and worth waiting for: connection lost or refused,
    /// locked or busy, read-only, a timeout, a full disk, a serialization
    /// failure or deadlock, a unique violation (another writer got there
    /// first: the next attempt reads it), a pool exhausted, anything unknown.
    pub fn rejects_the_data(&self) -> bool {
        let Self::Database(sqlx::Error::Database(e)) = self else {
            return false;
        };
        if let Some(pg) = e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
            return pg_rejects_the_data(pg.code());
        }
        if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
            return e
                .code()
                .and_then(|code| code.parse::<i32>().ok())
                .is_some_and(sqlite_rejects_the_data);
        }
        false
    }
}

/// PostgreSQL SQLSTATEs about the values: class 22 (data exception) and
/// class 23 (integrity constraint) except 23505 (unique violation).
fn pg_rejects_the_data(sqlstate: &str) -> bool {
    sqlstate.starts_with("22") || (sqlstate.starts_with("23") && sqlstate != "23505")
}

/// SQLite (extended) result codes about the values: SQLITE_TOOBIG (18),
/// SQLITE_MISMATCH (20) and the CHECK (275), FOREIGNKEY (787), NOTNULL
/// (1299), TRIGGER (1811: a trigger's RAISE) and DATATYPE (3091)
/// constraints; not UNIQUE or PRIMARYKEY.
fn sqlite_rejects_the_data(code: i32) -> bool {
    matches!(code, 18 | 20 | 275 | 787 | 1299 | 1811 | 3091)
}

/// The ledger database: SQLite or PostgreSQL. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Runs a [`Backend`] function against whichever pool this store holds.
macro_rules! on_pool {
    ($store:expr, $call:ident ( $($arg:expr),* )) => {
        match $store {
            Store::Sqlite(pool) => sqlx::Sqlite::$call(pool, $($arg),*).await,
            Store::Postgres(pool) => sqlx::Postgres::$call(pool, $($arg),*).await,
        }
    };
}

/// A user's balance in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Balance {
    pub currency: String,
    pub balance_cents: i64,
    pub updated_at: String,
}

/// One credit in the append-only ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct LedgerEntry {
    pub id: i64,
    pub request_id: String,
    pub user_id: i64,
    pub amount_cents: i64,
    pub currency: String,
    pub purpose: String,
    pub session_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub event_timestamp: String,
    pub recorded_at: String,
}

/// A checkout and its latest status (`requested`, `session_created`, `success`, `failed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct CheckoutRecord {
    pub request_id: String,
    pub user_id: i64,
    pub amount_cents: i64,
    pub currency: String,
    pub purpose: String,
    pub status: String,
    pub session_id: Option<String>,
    pub session_url: Option<String>,
    pub payment_intent_id: Option<String>,
    pub error_message: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// An event stored for a person to look at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct FlaggedEvent {
    pub request_id: String,
    pub user_id: i64,
    pub amount_cents: i64,
    pub currency: String,
    pub status: String,
    pub reason: String,
    /// The event as JSON.
    pub payload: String,
    pub flagged_at: String,
}

impl Store {
    /// Opens the database named by `url`, creating an SQLite file (and its
    /// directory) when missing, and runs the embedded migrations.
    ///
    /// # Errors
    /// When the URL is neither `sqlite:` nor `postgres:`, the database cannot
    /// be reached or a migration fails.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let store = if url.starts_with("sqlite:") {
            let options = SqliteConnectOptions::from_str(url)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // A commit is on disk before the Kafka offset is stored.
                .synchronous(SqliteSynchronous::Full)
                .busy_timeout(Duration::from_secs(10));
            if let Some(dir) = Path::new(options.get_filename())
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
            {
                std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                    path: dir.display().to_string(),
                    source,
                })?;
            }
            let pool = SqlitePoolOptions::new()
                .max_connections(4)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(options)
                .await?;
            migrations::migrator(migrations::SQLITE)
                .await?
                .run(&pool)
                .await?;
            Self::Sqlite(pool)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            let pool = PgPoolOptions::new()
                .max_connections(10)
                .acquire_timeout(Duration::from_secs(5))
                .connect(url)
                .await?;
            migrations::migrator(migrations::POSTGRES)
                .await?
                .run(&pool)
                .await?;
            Self::Postgres(pool)
        } else {
            return Err(StoreError::UnsupportedUrl(redact(url)));
        };
        tracing::info!(
            backend = store.backend(),
            "database ready, migrations applied"
        );
        Ok(store)
    }

    /// `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Sqlite(_) => "sqlite",
            Self::Postgres(_) => "postgres",
        }
    }

    /// Runs the embedded migrations again (a no-op when they all ran).
    ///
    /// # Errors
    /// When a migration fails.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        match self {
            Self::Sqlite(pool) => {
                migrations::migrator(migrations::SQLITE)
                    .await?
                    .run(pool)
                    .await?
            }
            Self::Postgres(pool) => {
                migrations::migrator(migrations::POSTGRES)
                    .await?
                    .run(pool)
                    .await?
            }
        }
        Ok(())
    }

    /// Is the database answering?
    ///
    /// # Errors
    /// When it is not.
    pub async fn ping(&self) -> Result<(), StoreError> {
        on_pool!(self, ping())?;
        Ok(())
    }

    /// Applies `events` in order, in one transaction, and returns one outcome
    /// per event. Either every effect is committed or none is.
    ///
    /// The caller validates the events first (the `checkout_finished` handler does).
    ///
    /// # Errors
    /// When the database fails; nothing was written then.
    pub async fn apply_finished(
        &self,
        events: &[CheckoutFinishedEvent],
    ) -> Result<Vec<Outcome>, StoreError> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let now = now();
        Ok(on_pool!(self, apply_finished(events, &now))?)
    }

    /// Records a checkout the HTTP API sent, as `requested`. A no-op when the
    /// consumer already recorded it.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn record_requested(&self, event: &CheckoutRequestEvent) -> Result<(), StoreError> {
        let now = now();
        on_pool!(self, record_requested(event, &now))?;
        Ok(())
    }

    /// The user's balances, by currency.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn balances(&self, user_id: i64) -> Result<Vec<Balance>, StoreError> {
        Ok(on_pool!(self, balances(user_id))?)
    }

    /// The user's balance in `currency` (0 when never credited).
    ///
    /// # Errors
    /// When the database fails.
    pub async fn balance(&self, user_id: i64, currency: &str) -> Result<i64, StoreError> {
        Ok(self
            .balances(user_id)
            .await?
            .into_iter()
            .find(|b| b.currency == currency)
            .map_or(0, |b| b.balance_cents))
    }

    /// The user's latest ledger entries, newest first.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn recent_ledger(
        &self,
        user_id: i64,
        limit: i64,
    ) -> Result<Vec<LedgerEntry>, StoreError> {
        Ok(on_pool!(self, recent_ledger(user_id, limit))?)
    }

    /// The ledger entries of one checkout (at most one, by construction).
    ///
    /// # Errors
    /// When the database fails.
    pub async fn ledger_for(&self, request_id: &str) -> Result<Vec<LedgerEntry>, StoreError> {
        Ok(on_pool!(self, ledger_for(request_id))?)
    }

    /// One checkout's record.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn checkout(&self, request_id: &str) -> Result<Option<CheckoutRecord>, StoreError> {
        Ok(on_pool!(self, checkout(request_id))?)
    }

    /// The events flagged for one checkout.
    ///
    /// # Errors
    /// When the database fails.
    pub async fn flagged(&self, request_id: &str) -> Result<Vec<FlaggedEvent>, StoreError> {
        Ok(on_pool!(self, flagged(request_id))?)
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

fn now() -> String {
    checkout_contract::events::iso8601::format(&checkout_contract::events::now())
}

/// The URL without a password, for error messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://[redacted]@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_errors_about_the_values_reject_the_data() {
        for code in ["22003", "22P02", "23502", "23503", "23514"] {
            assert!(pg_rejects_the_data(code), "{code}");
        }
        // unique violation, serialization failure, deadlock, read-only
        // transaction, disk full, admin shutdown, lock not available
        for code in [
            "23505", "40001", "40P01", "25006", "53100", "57P01", "55P03",
        ] {
            assert!(!pg_rejects_the_data(code), "{code}");
        }
        for code in [18, 20, 275, 787, 1299, 1811, 3091] {
            assert!(sqlite_rejects_the_data(code), "{code}");
        }
        // busy, locked, read-only, I/O error, disk full, unique, primary key
        for code in [5, 6, 8, 10, 13, 2067, 1555, 517] {
            assert!(!sqlite_rejects_the_data(code), "{code}");
        }
        let timeout = StoreError::Database(sqlx::Error::PoolTimedOut);
        assert!(!timeout.rejects_the_data());
    }
}
