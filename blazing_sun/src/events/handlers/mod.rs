//! One file per consumed topic (seed: `bootstrap/events/handlers/`).

pub mod checkout_finished;
