//! One fresh PostgreSQL database per test, on the server `scripts/test.sh`
//! starts and names in `TEST_DATABASE_URL` (an admin URL such as
//! `postgres://postgres@127.0.0.1:54329/postgres`).

use sqlx::{Connection, Executor, PgConnection};

/// Creates an empty database with a unique name and returns its URL.
///
/// # Panics
/// When `TEST_DATABASE_URL` is unset or the server cannot be reached: the
/// test fails loudly rather than skipping.
pub async fn fresh_database() -> String {
    let admin = std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!("TEST_DATABASE_URL is not set: run the tests with scripts/test.sh, which starts PostgreSQL")
    });
    let mut conn = PgConnection::connect(&admin)
        .await
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at TEST_DATABASE_URL={admin}: {e}"));
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
    let _ = conn.close().await;
    match admin.rfind('/') {
        Some(slash)
            if admin[..slash].contains('@')
                || admin[..slash].ends_with(|c: char| c.is_ascii_digit()) =>
        {
            let query = admin.find('?').map(|q| &admin[q..]).unwrap_or("");
            format!("{}/{name}{query}", &admin[..slash])
        }
        _ => panic!("TEST_DATABASE_URL={admin} must end in /<database>"),
    }
}
