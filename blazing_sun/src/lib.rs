//! blazing_sun: the balance service of the checkout system.
//!
//! It consumes `checkout.finished` in group `blazing-sun-main` and credits
//! each successful `balance_topup` exactly once per request_id into a ledger
//! (SQLite or PostgreSQL), and serves the balance HTTP API that produces
//! `CheckoutRequestEvent`s to `checkout.requests`. The event formats, topic
//! names, validation and JWT verification come from the contract crate
//! (`checkout_contract`).
//!
//! Entry points: [`Config`] (from the environment or [`Config::new`]), then
//! [`Application::build`] and [`Application::run_until_stopped`].
//!
//! # Layout
//! - [`config`]: the typed [`Config`] read from the environment.
//! - [`startup`]: [`Application`]: build every part, run HTTP + consumer, shut down.
//! - [`store`]: the ledger store, one [`Store`] over SQLite and PostgreSQL (sqlx),
//!   with embedded migrations in `migrations/{sqlite,postgres}`.
//! - [`events::handlers::checkout_finished`]: the `checkout_finished` handler:
//!   a batch of messages in, one [`Outcome`] per message out.
//! - [`events::consumer`]: the consumer loop; offsets stored after the database commit.
//! - [`http`]: the axum router and server; [`http::controllers::balance`] is the
//!   `balance` controller, [`http::controllers::page`] the balance page,
//!   [`http::controllers::health`] `/healthz` and `/metrics`,
//!   [`http::auth`] the bearer-token extractor, [`http::error`] the JSON errors.
//! - [`outcome`]: what handling one `checkout.finished` message did.
//! - [`metrics`]: Prometheus metrics (outcomes, credits and their batch time, dead letters, lag, process).

pub mod config;
pub mod events;
pub mod http;
pub mod metrics;
pub mod outcome;
pub mod startup;
pub mod store;

pub use config::Config;
pub use events::handlers::checkout_finished::CheckoutFinished;
pub use metrics::Metrics;
pub use outcome::Outcome;
pub use startup::{Application, Error};
pub use store::Store;
