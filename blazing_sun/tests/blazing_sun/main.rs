//! blazing_sun's integration tests: one binary, real parts only (the shared
//! Tansu broker over TCP, SQLite files in temp dirs, one fresh PostgreSQL
//! database per test, real HTTP).
//!
//! # Layout
//! - `helpers`: databases per backend, spawning the app, events, reading topics back.
//! - `store`: the ledger store suite, run against SQLite and PostgreSQL.
//! - `consumer`: `checkout.finished` end to end: exactly-once, crash safety, DLQ (only what the database refuses for good).
//! - `outage`: the database stopped, locked or read-only for longer than any timeout: events wait, none is lost.
//! - `backlog`: a new group credits a backlog too big for one fetch within its session (Tansu).
//! - `api`: the HTTP API: the produced event, validation, auth, 503, health.
//! - `binary`: the `blazing_sun` binary's exit code on bad configuration.
//! - `process`: the real process killed with SIGKILL mid-stream and restarted.
//! - `trace`: a credit is logged under the trace id of its event's traceparent.
//! - `secrets`: the JWT secret and the database password stay out of Debug output and logs.

mod api;
mod backlog;
mod binary;
mod consumer;
mod helpers;
mod outage;
mod process;
mod secrets;
mod store;
mod trace;
