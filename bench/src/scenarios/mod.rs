//! One file per scenario of issue 7; each returns a [`crate::Report`].

pub mod ledger;
pub mod start;
