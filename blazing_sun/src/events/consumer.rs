//! The `checkout.finished` group consumer (group `blazing-sun-main`).
//!
//! At-least-once delivery made exactly-once by the store (rust-rdkafka
//! `examples/at_least_once.rs`): `enable.auto.offset.store=false`, and each
//! batch's offsets are stored only after [`CheckoutFinished::handle`]
//! committed its database transaction; auto-commit then sends them to the
//! broker. A crash in between redelivers the batch, which the store turns
//! into no-ops. A batch the database cannot take now is retried with
//! backoff for as long as it takes, never skipped (`/healthz` and
//! `blazing_sun_consumer_waiting` say so meanwhile); only an
//! event the database refuses for good is dead-lettered.

use std::time::Duration;

use checkout_contract::kafka::{KafkaConfig, ensure_topics};
use checkout_contract::metrics::LagConsumer;
use checkout_contract::shutdown::{CLOSE_TIMEOUT, Stopping};
use checkout_contract::topics::Topics;
use futures::FutureExt as _;
use rdkafka::Message as _;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;

use super::handlers::checkout_finished::{CheckoutFinished, message_span};

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// At most this many messages per batch (one database transaction).
    pub batch_size: usize,
    /// How long a batch waits for more messages after its first one.
    pub batch_linger: Duration,
    /// Create the topics first (`Some`), retrying until the broker answers.
    pub create_topics: Option<KafkaConfig>,
    /// Test hook: stop right after the first database commit, before the offsets are stored.
    pub crash_after_db_commit: bool,
}

/// Why the consumer stopped other than by shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error("cannot subscribe to {topic}: {source}")]
    Subscribe { topic: String, source: KafkaError },
    #[error(
        "stopped by the crash_after_db_commit test hook, after the database commit and before storing offsets"
    )]
    CrashHook,
    /// The consumer cannot go on (e.g. another process took over its
    /// `group.instance.id`): stop so a supervisor notices and restarts us.
    #[error("the Kafka consumer failed for good: {0}")]
    Fatal(KafkaError),
}

/// Consumes `topics.finished` until `shutdown` says stop, finishing the batch in hand.
///
/// # Errors
/// When the subscription fails, the consumer fails for good, or the crash
/// test hook fires.
pub async fn run(
    consumer: LagConsumer,
    handler: CheckoutFinished,
    topics: Topics,
    settings: Settings,
    mut shutdown: Stopping,
) -> Result<(), ConsumerError> {
    if let Some(kafka) = &settings.create_topics
        && !create_topics(kafka, &topics, &mut shutdown).await
    {
        return Ok(());
    }
    consumer
        .subscribe(&[&topics.finished])
        .map_err(|source| ConsumerError::Subscribe {
            topic: topics.finished.clone(),
            source,
        })?;
    tracing::info!(topic = %topics.finished, batch_size = settings.batch_size, "consuming");

    let batch_size = settings.batch_size.max(1);
    let mut batch: Vec<OwnedMessage> = Vec::with_capacity(batch_size);
    loop {
        let first = tokio::select! {
            () = shutdown.stopped() => break,
            received = consumer.recv() => received.map(|m| m.detach()),
        };
        match first {
            Ok(message) => batch.push(message),
            Err(e @ KafkaError::MessageConsumptionFatal(_)) => {
                return stop_fatal(consumer, e).await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "kafka consumer error");
                backoff(Duration::from_millis(200), &mut shutdown).await;
                continue;
            }
        }
        if let Err(e) = fill(&consumer, &mut batch, batch_size, settings.batch_linger).await {
            // The batch in hand is not applied: nothing of it is stored,
            // so the partition's next owner gets it again.
            return stop_fatal(consumer, e).await;
        }
        tracing::debug!(messages = batch.len(), "batch polled");

        if !handle_with_retry(&handler, &batch, &mut shutdown).await {
            break; // shutdown during retries: nothing stored, the batch is redelivered.
        }
        if settings.crash_after_db_commit {
            tracing::warn!("test hook: stopping after the database commit, before storing offsets");
            close(consumer).await;
            return Err(ConsumerError::CrashHook);
        }
        store_offsets(&consumer, &mut batch);
    }

    // Dropping the consumer closes it, and closing commits the stored
    // offsets (never merely consumed ones: a batch cut short by shutdown is
    // redelivered).
    close(consumer).await;
    tracing::info!("consumer stopped");
    Ok(())
}

/// Adds to `batch` what the consumer has at once or within `linger`, until
/// it holds `batch_size`: one commit (one fsync) then covers them all.
///
/// # Errors
/// The consumer failed for good.
async fn fill(
    consumer: &LagConsumer,
    batch: &mut Vec<OwnedMessage>,
    batch_size: usize,
    linger: Duration,
) -> Result<(), KafkaError> {
    let linger_until = tokio::time::Instant::now() + linger;
    while batch.len() < batch_size {
        let next = match consumer.recv().now_or_never() {
            Some(next) => next,
            None => match tokio::time::timeout_at(linger_until, consumer.recv()).await {
                Ok(next) => next,
                Err(_) => break,
            },
        };
        match next {
            Ok(message) => batch.push(message.detach()),
            Err(e @ KafkaError::MessageConsumptionFatal(_)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "kafka consumer error");
                break;
            }
        }
    }
    Ok(())
}

/// Stores the offset of every message of the applied `batch`, emptying it.
fn store_offsets(consumer: &LagConsumer, batch: &mut Vec<OwnedMessage>) {
    for message in batch.drain(..) {
        if let Err(e) =
            consumer.store_offset(message.topic(), message.partition(), message.offset())
        {
            // The partition was revoked meanwhile: its new owner re-applies (a no-op).
            tracing::warn!(error = %e, partition = message.partition(), "cannot store offset");
        }
    }
}

/// Stops on an error the consumer cannot recover from.
async fn stop_fatal(consumer: LagConsumer, e: KafkaError) -> Result<(), ConsumerError> {
    tracing::error!(error = %e, "kafka consumer failed for good: stopping");
    close(consumer).await;
    Err(ConsumerError::Fatal(e))
}

/// Drops the consumer off the async threads, waiting at most
/// [`CLOSE_TIMEOUT`]: closing leaves the group and commits, which waits for
/// the broker, for ever when the broker is gone.
async fn close(consumer: LagConsumer) {
    checkout_contract::shutdown::drop_within("checkout.finished consumer", CLOSE_TIMEOUT, consumer)
        .await;
}

/// While the database cannot take a batch, one warning per this interval
/// (the first failure is logged at once).
const WAITING_LOG_INTERVAL: Duration = Duration::from_secs(30);
/// The longest pause between two attempts at a batch.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(5);

/// Handles the batch until it is committed (true) or shutdown asks to stop
/// (false). Failures are told apart by what the database said, never by a
/// probe: while it cannot write (down, locked, read-only, full, timing
/// out, anything unknown) the same batch is retried for as long as it
/// takes, and its offsets stay unstored. Only an event the database
/// refuses for good (`HandleError::rejects_the_data`) is dead-lettered:
/// a batch refused that way is applied one message at a time, so only
/// the refused event leaves and the others are credited.
async fn handle_with_retry(
    handler: &CheckoutFinished,
    batch: &[OwnedMessage],
    shutdown: &mut Stopping,
) -> bool {
    match retry(handler, batch, shutdown).await {
        Retried::Done => true,
        Retried::Shutdown => false,
        Retried::Rejected(_) if batch.len() > 1 => {
            tracing::warn!(
                messages = batch.len(),
                "the database refuses an event of this batch: applying its messages one by one"
            );
            for message in batch {
                match retry(handler, std::slice::from_ref(message), shutdown).await {
                    Retried::Done => {}
                    Retried::Shutdown => return false,
                    Retried::Rejected(e) => {
                        if !dead_letter_until_done(handler, message, &e, shutdown).await {
                            return false;
                        }
                    }
                }
            }
            true
        }
        Retried::Rejected(e) => dead_letter_until_done(handler, &batch[0], &e, shutdown).await,
    }
}

enum Retried {
    Done,
    Shutdown,
    /// The database refuses the batch's data for good: this error.
    Rejected(String),
}

async fn retry(
    handler: &CheckoutFinished,
    batch: &[OwnedMessage],
    shutdown: &mut Stopping,
) -> Retried {
    let mut delay = Duration::from_millis(100);
    let mut failures: u64 = 0;
    let waiting_since = tokio::time::Instant::now();
    let mut next_warning = waiting_since;
    // A batch of one is about one checkout: logged in its span.
    let span = || match batch {
        [one] => message_span(one),
        _ => tracing::Span::none(),
    };
    loop {
        let e = match handler.handle(batch).await {
            Ok(_) => {
                if failures > 0 {
                    handler.metrics().consumer_moving();
                    span().in_scope(|| {
                        tracing::info!(
                            failures,
                            waited_ms = waiting_since.elapsed().as_millis(),
                            "the batch is handled: consuming again"
                        );
                    });
                }
                return Retried::Done;
            }
            Err(e) => e,
        };
        handler.metrics().batch_error();
        failures += 1;
        if e.rejects_the_data() {
            handler.metrics().consumer_moving();
            span().in_scope(|| {
                tracing::error!(error = %e, messages = batch.len(), "the database refuses the batch's data");
            });
            return Retried::Rejected(e.to_string());
        }
        handler.metrics().consumer_waiting(&e.to_string());
        let now = tokio::time::Instant::now();
        if now >= next_warning {
            next_warning = now + WAITING_LOG_INTERVAL;
            span().in_scope(|| {
                tracing::warn!(
                    error = %e, messages = batch.len(), failures,
                    waited_ms = waiting_since.elapsed().as_millis(),
                    "cannot handle the batch now: its partition waits, retrying"
                );
            });
        }
        if !backoff(delay, shutdown).await {
            return Retried::Shutdown;
        }
        delay = (delay * 2).min(MAX_RETRY_DELAY);
    }
}

async fn dead_letter_until_done(
    handler: &CheckoutFinished,
    message: &OwnedMessage,
    error: &str,
    shutdown: &mut Stopping,
) -> bool {
    let reason = format!("the database rejects this event: {error}");
    loop {
        match handler.dead_letter_rejected(message, &reason).await {
            Ok(()) => return true,
            Err(e) => {
                message_span(message).in_scope(|| {
                    tracing::error!(error = %e, "cannot dead-letter a rejected event; retrying");
                });
                if !backoff(Duration::from_secs(1), shutdown).await {
                    return false;
                }
            }
        }
    }
}

/// Creates the topics, retrying; false when shutdown came first.
async fn create_topics(kafka: &KafkaConfig, topics: &Topics, shutdown: &mut Stopping) -> bool {
    let mut delay = Duration::from_millis(200);
    let names = topics.all();
    loop {
        let created = tokio::select! {
            () = shutdown.stopped() => return false,
            created = ensure_topics(kafka, &names, topics.partitions) => created,
        };
        match created {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(error = %e, retry_in = ?delay, "cannot create topics yet");
                if !backoff(delay, shutdown).await {
                    return false;
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Waits `delay`; false when shutdown came first.
async fn backoff(delay: Duration, shutdown: &mut Stopping) -> bool {
    tokio::select! {
        () = shutdown.stopped() => false,
        () = tokio::time::sleep(delay) => true,
    }
}
