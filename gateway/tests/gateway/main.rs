//! Integration tests of the gateway: a real broker (Tansu over TCP), the
//! gateway on port 0, real gRPC clients (tonic, HTTP/1.1 gRPC-Web, grpcurl).
//! There is no checkout worker: tests publish the `checkout.finished` events
//! it would.
//!
//! # Layout
//! - `helpers`: spawning gateways, clients with tokens, reading/producing topics.
//! - `start_checkout`: the seed JSON, validation, idempotency, wait_for_session.
//! - `watch_checkout`: history, live, terminal, resume cursor, GetCheckout, deadlines, shutdown.
//! - `auth`: missing/bad tokens, users acting for others, other users' checkouts.
//! - `replicas`: two gateways on one broker (watches, retries across them); 1,000 concurrent watchers.
//! - `ops`: reflection v1/v1alpha, health with a killed broker, admin metrics.
//! - `grpc_web`: an HTTP/1.1 gRPC-Web POST and a CORS preflight.
//! - `grpcurl`: a grpcurl 1.8.6 session.
//! - `bad_input`: oversized messages and metadata, invalid UTF-8, overflowing amounts, 10,000 watchers of unknown ids.
//! - `trace`: the caller's traceparent onto `checkout.requests` and back in the answer.
//! - `secrets`: the JWT secret stays out of Debug output and logs.
//! - `tail`: answers never go backwards after a terminal status; topics created after the start are read.
//! - `tls`: TLS and mutual TLS with rcgen-generated certificates.

mod auth;
mod bad_input;
mod grpc_web;
mod grpcurl;
mod helpers;
mod ops;
mod replicas;
mod secrets;
mod start_checkout;
mod tail;
mod tls;
mod trace;
mod watch_checkout;
