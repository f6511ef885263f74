//! The checkout contract shared by every blazing_sun checkout service.
//!
//! The source of truth is the seed document `kafka-topics-for-checkout.md`:
//! two topics, two JSON events, three status values, two consumer groups.
//! Everything a service needs to speak that contract lives here, once.
//!
//! # Layout
//! - [`pb`]: the generated protobuf / tonic code (`proto/checkout/v1/`) and the
//!   file descriptor set for server reflection.
//! - [`events`]: the JSON events exactly as they travel on Kafka
//!   (`CheckoutRequestEvent`, `CheckoutFinishedEvent`, `CheckoutStatus`).
//! - [`domain`]: validated values, one file each in `src/domain/` (`RequestId`,
//!   `UserId`, `AmountCents`, `Currency`, `Purpose`, `RedirectUrl`, the
//!   redirect `HostAllowlist`) and the one place validation happens.
//! - [`convert`]: lossless conversions between the JSON events and their protobuf form.
//! - [`topics`]: topic and consumer group names (`CHECKOUT_REQUESTS`, `consumer_groups::MAIN_APP`, ...).
//! - [`kafka`]: producer / consumer settings, `ensure_topics()`, keyed JSON produce with headers.
//! - [`metrics`]: Prometheus plumbing: a registry per service with the
//!   process metrics, the text exposition, consumer lag from librdkafka statistics.
//! - [`inbound`]: reading an inbound message's request_id (payload, else
//!   header) and trace (`traceparent`, else derived) into a span.
//! - [`dead_letter`]: copying a message that is itself wrong to its
//!   dead-letter topic (`dlq-reason`, `dlq-source`), and reading such copies back.
//! - [`auth`]: JWT bearer tokens shared by the gateway and blazing_sun: HS256
//!   with a shared secret, RS256/ES256 against an identity provider's JWKS.
//! - [`http_server`]: HTTP/1.1 serving with header timeouts and graceful
//!   shutdown (the checkout webhook, blazing_sun's API).
//! - [`secret`]: a wrapper that keeps secrets out of `Debug` and logs.
//! - [`cli`]: each binary's command line from its settings table: a flag
//!   per variable, `--help` with variables and defaults, exit 64 on bad usage.
//! - [`env`]: typed configuration from the environment, reporting every bad variable at once.
//! - [`service_main`]: the `main` of every service binary: command line,
//!   config (exit 64), tracing, serve until SIGINT/SIGTERM, flush the spans.
//! - [`shutdown`]: the SIGINT/SIGTERM future every binary waits on; the stop
//!   signal a service gives its parts and the grace-period drain; closing
//!   Kafka clients and exiting without hanging when the broker is gone.
//! - [`telemetry`]: tracing set-up shared by the binaries.
//! - [`trace`]: W3C `traceparent` parsing and generation, carried across Kafka.

pub mod auth;
pub mod cli;
pub mod convert;
pub mod dead_letter;
pub mod domain;
pub mod env;
pub mod events;
pub mod http_server;
pub mod inbound;
pub mod kafka;
pub mod metrics;
pub mod pb;
pub mod secret;
pub mod service_main;
pub mod shutdown;
pub mod telemetry;
pub mod topics;
pub mod trace;

pub use domain::{
    AmountCents, Currency, HostAllowlist, Purpose, RedirectUrl, RequestId, UserId,
    ValidCheckoutRequest, ValidationError,
};
pub use events::{CheckoutFinishedEvent, CheckoutRequestEvent, CheckoutStatus};
