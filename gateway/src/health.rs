//! The health probe behind `grpc.health.v1.Health` and the admin `/healthz`:
//! SERVING only while the broker answers the producer's metadata request and
//! both status tails have every partition assigned; NOT_SERVING otherwise.
//! It probes every `interval` and also refreshes the `checkout.finished`
//! tail's high watermarks (for the lag metric).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use checkout_contract::shutdown::Stopping;
use checkout_contract::topics::Topics;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{FutureProducer, Producer};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::metrics::Metrics;
use crate::tail::{TailConsumer, TailState};

/// The name clients check for this service (the empty name means "the whole server").
pub const SERVICE_NAME: &str = "checkout.v1.CheckoutGateway";

/// How long one probe may wait for the broker.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Everything the probe looks at and reports to.
pub struct Probe {
    pub reporter: HealthReporter,
    pub producer: FutureProducer,
    /// The `checkout.finished` tail's consumer.
    pub tail_consumer: Arc<TailConsumer>,
    /// The tails of `checkout.finished` and `checkout.requests`.
    pub tails: [Arc<TailState>; 2],
    pub topics: Topics,
    pub metrics: Arc<Metrics>,
    pub interval: Duration,
    /// Shared with the admin `/healthz`.
    pub serving: Arc<AtomicBool>,
}

impl Probe {
    /// Probes until `stop`, then reports NOT_SERVING.
    pub async fn run(self, mut stop: Stopping) {
        let mut serving = false;
        loop {
            let up = self.broker_up().await;
            self.metrics.set_broker_up(up);
            let now = up
                && self
                    .tails
                    .iter()
                    .all(|t| t.assigned.load(Ordering::Acquire));
            if now != serving {
                serving = now;
                if now {
                    tracing::info!("broker reachable and status tail running: SERVING");
                } else {
                    tracing::warn!("broker unreachable: NOT_SERVING");
                }
                self.serving.store(now, Ordering::Release);
                set(&self.reporter, now).await;
            }
            tokio::select! {
                () = stop.stopped() => break,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
        self.serving.store(false, Ordering::Release);
        set(&self.reporter, false).await;
    }

    /// Does the broker answer the producer, and what are the tail's high watermarks?
    async fn broker_up(&self) -> bool {
        let producer = self.producer.clone();
        let consumer = Arc::clone(&self.tail_consumer);
        let topics = self.topics.clone();
        let partitions = self.tails[0].partitions.load(Ordering::Acquire);
        let metrics = Arc::clone(&self.metrics);
        tokio::task::spawn_blocking(move || {
            let metadata = match producer
                .client()
                .fetch_metadata(Some(&topics.requests), PROBE_TIMEOUT)
            {
                Ok(m) => m,
                Err(e) => {
                    tracing::debug!(error = %e, "broker probe failed");
                    return false;
                }
            };
            if !metadata
                .topics()
                .iter()
                .any(|t| t.name() == topics.requests && t.error().is_none())
            {
                return false;
            }
            for p in 0..partitions {
                match consumer.fetch_watermarks(&topics.finished, p, PROBE_TIMEOUT) {
                    Ok((_, high)) => metrics.tail_high(p, high),
                    Err(e) => {
                        tracing::debug!(error = %e, partition = p, "watermark probe failed");
                        return false;
                    }
                }
            }
            true
        })
        .await
        .unwrap_or(false)
    }
}

/// Reports `serving` for the whole server (`""`) and for [`SERVICE_NAME`].
pub(crate) async fn set(reporter: &HealthReporter, serving: bool) {
    let status = if serving {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    reporter.set_service_status("", status).await;
    reporter.set_service_status(SERVICE_NAME, status).await;
}
