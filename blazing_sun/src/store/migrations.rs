//! The migrations, embedded in the binary with `include_str!` (one list per
//! backend, from `migrations/sqlite` and `migrations/postgres`), and handed to
//! sqlx's migrator through its public `MigrationSource` trait.
//!
//! Add a migration: a new `NNNN_name.sql` in both directories and one line in
//! both lists below.

use std::borrow::Cow;

use futures::future::BoxFuture;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

/// `(version, description, sql)`.
type Embedded = &'static [(i64, &'static str, &'static str)];

pub const SQLITE: Embedded = &[
    (
        1,
        "ledger",
        include_str!("../../migrations/sqlite/0001_ledger.sql"),
    ),
    (
        2,
        "flagged per payment",
        include_str!("../../migrations/sqlite/0002_flagged_per_payment.sql"),
    ),
];

pub const POSTGRES: Embedded = &[
    (
        1,
        "ledger",
        include_str!("../../migrations/postgres/0001_ledger.sql"),
    ),
    (
        2,
        "flagged per payment",
        include_str!("../../migrations/postgres/0002_flagged_per_payment.sql"),
    ),
];

#[derive(Debug)]
struct Source(Embedded);

impl MigrationSource<'static> for Source {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        let migrations = self
            .0
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(description),
                    MigrationType::Simple,
                    Cow::Borrowed(sql),
                    false,
                )
            })
            .collect();
        Box::pin(async move { Ok(migrations) })
    }
}

/// A migrator over one embedded list.
///
/// # Errors
/// Never in practice (the list is in memory); sqlx's signature allows it.
pub async fn migrator(embedded: Embedded) -> Result<Migrator, sqlx::migrate::MigrateError> {
    Migrator::new(Source(embedded)).await
}
