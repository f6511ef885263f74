//! Integration tests of the contract crate against real parts: the Kafka
//! helpers and dead-lettering on a real broker, the descriptor set for
//! reflection, token verification against an identity provider's JWKS
//! served over HTTP, and spans exported to an OTLP receiver.

mod auth;
mod dead_letter;
mod descriptor;
mod kafka;
mod otel;
