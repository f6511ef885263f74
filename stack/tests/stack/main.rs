//! Tests of the all-in-one launcher's parts on real brokers.

mod browser;
mod command_line;
mod deployment;
mod dlq;
mod embedded;
mod launcher;
mod monitoring;
mod observability;
mod otel;
mod reconcile;
mod stopping;
mod token;
mod trace;
