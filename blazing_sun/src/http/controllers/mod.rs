//! One file per controller (seed: `app/http/api/controllers/`).

pub mod balance;
pub mod health;
pub mod page;
