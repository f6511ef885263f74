//! The `checkout.requests` consumer: many requests in flight, offsets stored
//! per partition only up to the lowest fully handled message, graceful stop.
//!
//! - Up to `max_in_flight` messages are handled at once (one task each, see
//!   [`crate::checkout_request`]); fetching pauses while the limit is reached.
//! - Each completion goes through the [`OffsetTracker`]; when a partition's
//!   watermark moves, the offset is stored and auto-commit sends it
//!   (`enable.auto.offset.store=false`, rust-rdkafka `at_least_once.rs`).
//!   A crash therefore redelivers at most what was in flight, and the
//!   idempotency key makes redelivery harmless.
//! - Rebalances: revoked partitions are forgotten by the tracker, so a late
//!   completion never stores an offset for a partition we no longer own;
//!   each rebalance also sets this replica's share of the Stripe budget
//!   ([`crate::assignment`]).
//! - Stop (the shutdown future, or a refused Stripe key): stop fetching, let
//!   in-flight messages finish within the grace period, abandon the rest
//!   (they are redelivered), store and commit what is done. Requests that
//!   are waiting for Stripe to come back are told at once and give up
//!   ([`HandleError::Stopping`]): they are redelivered like abandoned ones.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use checkout_contract::metrics::LagRecorder;
use checkout_contract::shutdown::Stop;
use rdkafka::client::ClientContext;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::{Message, TopicPartitionList};
use tokio::task::{Id, JoinError, JoinSet};

use crate::assignment::Assignment;
use crate::checkout_request::{HandleError, Outcome, RequestHandler};
use crate::tracker::{OffsetTracker, Ticket};

/// Why the worker stopped on its own.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    StripeUnauthorized(#[from] HandleError),
    #[error("a request handler panicked: {0}")]
    HandlerPanicked(String),
    #[error("cannot subscribe to {topic}: {source}")]
    Subscribe { topic: String, source: KafkaError },
    /// The consumer cannot go on (e.g. another process took over its
    /// `group.instance.id`): stop so a supervisor notices and restarts us.
    #[error("the Kafka consumer failed for good: {0}")]
    ConsumerFatal(KafkaError),
}

/// Follows librdkafka's rebalances: records revoked partitions for the
/// worker loop to apply before it registers the next message, and keeps the
/// replica's [`Assignment`] (its Stripe budget share) current.
pub struct WorkerContext {
    revoked: Mutex<Vec<i32>>,
    assignment: Arc<Assignment>,
    topic: String,
    /// `CHECKOUT_TOPIC_PARTITIONS`: the total when the broker cannot say.
    configured_partitions: i32,
    /// Sets `kafka_consumer_lag_messages` from librdkafka's statistics.
    lag: LagRecorder,
}

impl ClientContext for WorkerContext {
    fn stats(&self, statistics: Statistics) {
        self.lag.record(&statistics);
    }
}

impl ConsumerContext for WorkerContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(list) => {
                let partitions = self.partitions_of(list);
                self.assignment.revoke(partitions.iter().copied());
                let mut revoked = self
                    .revoked
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                revoked.extend(partitions);
                tracing::info!(partitions = ?revoked, "partitions revoked");
            }
            Rebalance::Assign(list) => {
                let partitions = self.partitions_of(list);
                let total = self.total_partitions(consumer);
                tracing::info!(?partitions, total, "partitions assigned");
                self.assignment.assign(partitions, total);
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

impl WorkerContext {
    pub fn new(
        assignment: Arc<Assignment>,
        topic: String,
        configured_partitions: i32,
        lag: LagRecorder,
    ) -> Self {
        Self {
            revoked: Mutex::default(),
            assignment,
            topic,
            configured_partitions,
            lag,
        }
    }

    fn partitions_of(&self, list: &TopicPartitionList) -> Vec<i32> {
        list.elements_for_topic(&self.topic)
            .iter()
            .map(|e| e.partition())
            .collect()
    }

    /// The topic's partition count from the broker (a topic may have grown
    /// past the setting), else the setting.
    fn total_partitions(&self, consumer: &BaseConsumer<Self>) -> i32 {
        match consumer.fetch_metadata(Some(&self.topic), METADATA_TIMEOUT) {
            Ok(metadata) => metadata
                .topics()
                .iter()
                .find(|t| t.name() == self.topic)
                .map(|t| i32::try_from(t.partitions().len()).unwrap_or(i32::MAX))
                .filter(|n| *n > 0)
                .unwrap_or(self.configured_partitions),
            Err(e) => {
                tracing::warn!(error = %e, partitions = self.configured_partitions, "cannot read the partition count: using CHECKOUT_TOPIC_PARTITIONS");
                self.configured_partitions
            }
        }
    }

    fn take_revoked(&self) -> Vec<i32> {
        std::mem::take(
            &mut *self
                .revoked
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

pub type WorkerConsumer = StreamConsumer<WorkerContext>;

/// The consumer loop.
pub struct Worker {
    pub consumer: WorkerConsumer,
    pub topic: String,
    pub handler: Arc<RequestHandler>,
    pub max_in_flight: usize,
    pub shutdown_grace: Duration,
}

type Completion = Result<Outcome, HandleError>;

/// Why and until when the loop is stopping: the first failure (none for
/// the shutdown future) and the end of the grace period.
#[derive(Default)]
struct StopState {
    failure: Option<WorkerError>,
    deadline: Option<tokio::time::Instant>,
}

impl StopState {
    /// Starts the grace period unless it runs already; the first failure is
    /// the one reported.
    fn begin(&mut self, grace: Duration, failure: Option<WorkerError>) {
        if self.failure.is_none() {
            self.failure = failure;
        }
        self.deadline
            .get_or_insert_with(|| tokio::time::Instant::now() + grace);
    }

    /// What [`Worker::run`] returns once stopped, logged.
    fn report(self) -> Result<(), WorkerError> {
        match self.failure {
            Some(e) => {
                tracing::error!(error = %e, "checkout worker stopped");
                Err(e)
            }
            None => {
                tracing::info!("checkout worker stopped");
                Ok(())
            }
        }
    }
}

/// The final commit and the close (dropping the consumer leaves the group)
/// wait for the broker, for ever once it is gone: off the runtime, for at
/// most [`CLOSE_TIMEOUT`](checkout_contract::shutdown::CLOSE_TIMEOUT).
async fn close(consumer: WorkerConsumer) {
    let close = move || {
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => {
                tracing::warn!(error = %e, "final commit failed (auto-commit may have sent it already)")
            }
        }
        consumer.unsubscribe();
        drop(consumer);
    };
    checkout_contract::shutdown::close_within(
        "checkout.requests consumer",
        checkout_contract::shutdown::CLOSE_TIMEOUT,
        close,
    )
    .await;
}

/// How long a rebalance waits for the topic's partition count.
const METADATA_TIMEOUT: Duration = Duration::from_secs(5);

impl Worker {
    /// Consumes until `shutdown` resolves or a stop-worthy error happens.
    ///
    /// # Errors
    /// A refused Stripe key, a panicking handler, or a failed subscription.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<(), WorkerError> {
        self.consumer
            .subscribe(&[&self.topic])
            .map_err(|source| WorkerError::Subscribe {
                topic: self.topic.clone(),
                source,
            })?;
        tracing::info!(topic = %self.topic, max_in_flight = self.max_in_flight, "checkout worker consuming");

        let mut tracker = OffsetTracker::new();
        let mut tasks: JoinSet<Completion> = JoinSet::new();
        let mut tickets: HashMap<Id, Ticket> = HashMap::new();
        let mut stop = StopState::default();
        // Tells handlers waiting on Stripe to give up (see `HandleError::Stopping`).
        let stop_handlers = Stop::new();
        tokio::pin!(shutdown);

        loop {
            if stop.deadline.is_some() {
                stop_handlers.stop();
                if tasks.is_empty() {
                    break;
                }
            }
            let grace_over = async {
                match stop.deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = &mut shutdown, if stop.deadline.is_none() => {
                    tracing::info!(in_flight = tasks.len(), "stopping: no more fetches, finishing in-flight requests");
                    stop.begin(self.shutdown_grace, None);
                }
                Some(joined) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let (id, result) = match joined {
                        Ok((id, result)) => (id, Ok(result)),
                        Err(e) => (e.id(), Err(e)),
                    };
                    let ticket = tickets.remove(&id).expect("every task has a ticket");
                    if let Some(failure) = self.completed(&mut tracker, ticket, result) {
                        stop.begin(self.shutdown_grace, Some(failure));
                    }
                }
                () = grace_over => {
                    tracing::warn!(abandoned = tasks.len(), "grace period over: abandoning in-flight requests (they will be redelivered)");
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    break;
                }
                received = self.consumer.recv(), if stop.deadline.is_none() && tasks.len() < self.max_in_flight => {
                    match received {
                        Ok(message) => {
                            self.apply_revocations(&mut tracker);
                            let message = message.detach();
                            let ticket = tracker.start(message.partition(), message.offset());
                            let handler = Arc::clone(&self.handler);
                            let stopping = stop_handlers.stopping();
                            let handle = tasks.spawn(async move { handler.handle(&message, stopping).await });
                            tickets.insert(handle.id(), ticket);
                        }
                        Err(e @ KafkaError::MessageConsumptionFatal(_)) => {
                            tracing::error!(error = %e, "consumer failed for good: finishing in-flight requests, then stopping");
                            stop.begin(self.shutdown_grace, Some(WorkerError::ConsumerFatal(e)));
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "consumer error");
                        }
                    }
                }
            }
        }

        self.apply_revocations(&mut tracker);
        close(self.consumer).await;
        stop.report()
    }

    /// Accounts for one finished handler task: stores the offset its
    /// partition reached, or returns the failure that stops the worker.
    fn completed(
        &self,
        tracker: &mut OffsetTracker,
        ticket: Ticket,
        result: Result<Completion, JoinError>,
    ) -> Option<WorkerError> {
        match result {
            Ok(Ok(_)) => {
                // The outcome is logged in the message's span (request_id, trace_id).
                tracing::debug!(
                    partition = ticket.partition,
                    offset = ticket.offset,
                    "handled: offset tracked"
                );
                self.apply_revocations(tracker);
                if let Some(offset) = tracker.complete(ticket) {
                    self.store(ticket.partition, offset);
                }
                None
            }
            Ok(Err(HandleError::Stopping)) => {
                // Unhandled: redelivered to whoever consumes next.
                tracing::debug!(
                    partition = ticket.partition,
                    offset = ticket.offset,
                    "left for redelivery: stopping while waiting on Stripe"
                );
                None
            }
            // Unhandled on purpose: redelivered once the key is fixed.
            Ok(Err(e)) => Some(e.into()),
            Err(e) if e.is_panic() => {
                tracing::error!(partition = ticket.partition, offset = ticket.offset, error = %e, "handler panicked");
                Some(WorkerError::HandlerPanicked(e.to_string()))
            }
            Err(_) => None, // aborted at the end of the grace period
        }
    }

    fn apply_revocations(&self, tracker: &mut OffsetTracker) {
        for partition in self.consumer.context().take_revoked() {
            tracker.revoke(partition);
        }
    }

    fn store(&self, partition: i32, offset: i64) {
        if let Err(e) = self.consumer.store_offset(&self.topic, partition, offset) {
            // Not assigned any more: the new owner redelivers; idempotency makes that harmless.
            tracing::debug!(partition, offset, error = %e, "cannot store offset");
        }
    }
}
