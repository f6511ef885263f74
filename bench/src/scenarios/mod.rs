//! One file per scenario of issue 7; each returns a [`crate::Report`].

pub mod e2e;
pub mod ledger;
pub mod start;
pub mod watch;
pub mod worker;
