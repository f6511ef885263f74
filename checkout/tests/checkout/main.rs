//! Integration tests of the checkout service: the real worker and webhook,
//! a real broker, and the Stripe emulator spoken to through async-stripe's
//! request types over the service's pooled transport (`stripe_http`), all
//! on port 0 with their own topics.

mod flow;
mod helpers;
mod kafka_down;
mod one_session;
mod poison;
mod reconcile;
mod redirect_allowlist;
mod replicas;
mod retries;
mod secrets;
mod slow_clients;
mod stripe_client;
mod stripe_transport;
mod throughput;
mod trace;
mod webhook;
