//! One file per scenario; each returns a [`crate::Report`].

pub mod e2e;
pub mod ledger;
pub mod scale;
pub mod start;
pub mod stripe_tls;
pub mod tail;
pub mod watch;
pub mod worker;
