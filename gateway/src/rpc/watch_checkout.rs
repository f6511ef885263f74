//! WatchCheckout: every status of one checkout, first what the index already
//! holds, then live updates, each exactly once and in order; ends OK right
//! after a terminal status.
//!
//! The stream is a small state machine over the index's per-checkout
//! broadcast receiver (no task and no Kafka consumer per watcher). Its queue
//! is the receiver's bounded slot count: a client that falls further behind
//! gets RESOURCE_EXHAUSTED, never a silent end. It also ends with
//! DEADLINE_EXCEEDED at the call's deadline or the server's maximum, and with
//! UNAVAILABLE when the gateway shuts down, so the client reconnects with
//! `resume_after`.
//!
//! The stream continues the checkout's trace: it lives in a span with the
//! request_id and the trace_id (recorded on the span the caller,
//! `crate::service`, opened for the call; when the trace is known at the
//! start, the stream logs in its own `watch_stream` span inside it, the
//! stream's span in the exported trace), every line it logs carries both,
//! the answer's metadata gets a `traceparent` with the stream's own span id,
//! and each update the `traceparent` its record carried on Kafka. A watch
//! that starts before anything is known about the checkout learns the trace
//! from the first update that carries one.

use std::collections::VecDeque;
use std::pin::Pin;

use checkout_contract::auth::Principal;
use checkout_contract::shutdown::Stopping;
use checkout_contract::trace::TraceContext;
use checkout_contract::{RequestId, pb};
use futures::Stream;
use tokio::sync::broadcast;
use tokio::time::Instant;
use tracing::{Instrument as _, Span};

use crate::auth::may_see;
use crate::error::ApiError;
use crate::index::{Position, Update};
use crate::metrics::StreamGuard;
use crate::rpc::Shared;

/// The stream WatchCheckout answers with.
pub type UpdateStream = Pin<Box<dyn Stream<Item = Result<pb::CheckoutUpdate, ApiError>> + Send>>;

/// A watch that started: its stream and, when the checkout's trace is
/// known, the stream's own place in it (for the answer's metadata).
pub struct Watching {
    pub stream: UpdateStream,
    pub trace: Option<TraceContext>,
}

/// Opens the watch inside the current span (the call's, with empty
/// `request_id` and `trace_id` fields that this fills in).
///
/// # Errors
/// INVALID_ARGUMENT for a request_id that is not a UUID, NOT_FOUND for a
/// checkout the caller may not see.
pub fn watch_checkout(
    shared: &Shared,
    caller: Principal,
    request: pb::WatchCheckoutRequest,
    deadline: Option<Instant>,
) -> Result<Watching, ApiError> {
    let id = RequestId::parse(&request.request_id)?;
    let call = Span::current();
    call.record("request_id", tracing::field::display(id));
    let (snapshot, rx) = shared.index.subscribe(id);
    // The call's span was entered before the checkout's trace was known:
    // the stream gets a span of its own in that trace when it is known.
    let (span, trace) = match snapshot.trace(id) {
        Some(parent) => {
            let stream = tracing::info_span!("watch_stream", trace_id = tracing::field::Empty);
            let trace = TraceContext::continue_in(Some(parent), &stream);
            call.record("trace_id", tracing::field::display(trace.trace_id()));
            (stream, Some(trace))
        }
        None => (call, None),
    };
    if !may_see(&caller, snapshot.owner()) {
        return Err(ApiError::NotFound(id.to_string()));
    }
    tracing::debug!(
        known = snapshot.updates.len(),
        resume_after = ?request.resume_after,
        "watch started"
    );
    let server_deadline = Instant::now() + shared.watch_max;
    let watch = Watch {
        id,
        caller,
        pending: snapshot.updates.into(),
        rx,
        last: request.resume_after.map(Position::from),
        deadline: deadline.map_or(server_deadline, |d| d.min(server_deadline)),
        stopping: shared.stopping.clone(),
        done: false,
        traced: trace.is_some(),
        span,
        _open: shared.metrics.stream_opened(),
    };
    let stream = futures::stream::unfold(watch, |mut w| {
        let span = w.span.clone();
        async move {
            let item = w.next().await?;
            Some((item, w))
        }
        .instrument(span)
    });
    Ok(Watching {
        stream: Box::pin(stream),
        trace,
    })
}

struct Watch {
    id: RequestId,
    caller: Principal,
    /// Updates to send, oldest first (history, then whatever arrived).
    pending: VecDeque<Update>,
    rx: broadcast::Receiver<Update>,
    /// The last position the client has (sent by us or given as resume_after).
    last: Option<Position>,
    deadline: Instant,
    stopping: Stopping,
    done: bool,
    /// The span's trace_id is recorded (it is recorded once).
    traced: bool,
    /// The call's span: every line about this watch is logged in it.
    span: Span,
    _open: StreamGuard,
}

impl Drop for Watch {
    fn drop(&mut self) {
        if !self.done {
            self.span
                .in_scope(|| tracing::debug!("watch ended: the client went away"));
        }
    }
}

impl Watch {
    /// The next item, or `None` once the stream has ended.
    async fn next(&mut self) -> Option<Result<pb::CheckoutUpdate, ApiError>> {
        if self.done {
            return None;
        }
        let item = self.step().await;
        match &item {
            Some(Ok(_)) if self.done => tracing::debug!("watch ended: terminal status sent"),
            Some(Ok(_)) => {}
            Some(Err(e)) => tracing::debug!(code = ?e.code(), error = %e, "watch ended"),
            None => {}
        }
        if item.as_ref().is_none_or(Result::is_err) {
            self.done = true;
        }
        item
    }

    async fn step(&mut self) -> Option<Result<pb::CheckoutUpdate, ApiError>> {
        loop {
            while let Some(update) = self.pending.pop_front() {
                if update.position.seen_by(self.last) {
                    continue;
                }
                if !may_see(&self.caller, Some(update.event.user_id)) {
                    return Some(Err(ApiError::NotFound(self.id.to_string())));
                }
                self.last = Some(update.position);
                if let Some(trace) = update.trace.filter(|_| !self.traced) {
                    self.span
                        .record("trace_id", tracing::field::display(trace.trace_id()));
                    self.traced = true;
                }
                tracing::debug!(
                    status = %update.event.status,
                    partition = update.position.partition,
                    offset = update.position.offset,
                    "update sent"
                );
                if update.event.status.is_terminal() {
                    self.done = true;
                }
                return Some(Ok(pb::CheckoutUpdate::from(&update)));
            }
            tokio::select! {
                biased;
                () = self.stopping.stopped() => return Some(Err(ApiError::ShuttingDown)),
                received = self.rx.recv() => match received {
                    Ok(update) => self.pending.push_back(update),
                    Err(broadcast::error::RecvError::Lagged(n)) => return Some(Err(ApiError::Lagged(n))),
                    Err(broadcast::error::RecvError::Closed) => return Some(Err(ApiError::ShuttingDown)),
                },
                () = tokio::time::sleep_until(self.deadline) => {
                    return Some(Err(ApiError::WatchDeadline(self.id.to_string())));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use checkout_contract::CheckoutStatus;
    use checkout_contract::shutdown::Stop;
    use futures::StreamExt;

    use crate::index::{Index, test_update as update};

    fn shared(queue: usize) -> (Shared, Stop) {
        let stop = Stop::new();
        let stopping = stop.stopping();
        let producer = rdkafka::ClientConfig::new()
            .set("bootstrap.servers", "127.0.0.1:1")
            .create()
            .unwrap();
        let shared = Shared {
            index: Arc::new(Index::new(Duration::from_secs(60), 100, queue)),
            producer,
            topics: checkout_contract::topics::Topics::default(),
            metrics: Arc::default(),
            produce_timeout: Duration::from_secs(1),
            unary_timeout: Duration::from_secs(1),
            watch_max: Duration::from_secs(60),
            stopping,
            in_flight: crate::rpc::KeyLocks::default(),
            redirect_hosts: checkout_contract::HostAllowlist::local_default(),
        };
        (shared, stop)
    }

    fn service() -> Principal {
        Principal {
            subject: "test".into(),
            role: checkout_contract::auth::Role::Service,
        }
    }

    #[tokio::test]
    async fn a_client_that_falls_behind_gets_resource_exhausted() {
        let (shared, _stop) = shared(1);
        let id = RequestId::new_random();
        let mut stream = watch_checkout(
            &shared,
            service(),
            pb::WatchCheckoutRequest {
                request_id: id.to_string(),
                resume_after: None,
            },
            None,
        )
        .unwrap()
        .stream;
        for offset in 1..=3 {
            shared
                .index
                .record_update(id, update(id, offset, CheckoutStatus::SessionCreated));
        }
        let err = stream.next().await.unwrap().unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err}");
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn shutdown_ends_streams_with_unavailable() {
        let (shared, stop) = shared(4);
        let id = RequestId::new_random();
        shared
            .index
            .record_update(id, update(id, 1, CheckoutStatus::SessionCreated));
        let mut stream = watch_checkout(
            &shared,
            service(),
            pb::WatchCheckoutRequest {
                request_id: id.to_string(),
                resume_after: None,
            },
            None,
        )
        .unwrap()
        .stream;
        assert!(stream.next().await.unwrap().is_ok());
        assert_eq!(shared.metrics.open_streams(), 1);
        stop.stop();
        assert_eq!(
            stream.next().await.unwrap().unwrap_err().code(),
            tonic::Code::Unavailable
        );
        assert!(stream.next().await.is_none());
        drop(stream);
        assert_eq!(shared.metrics.open_streams(), 0);
    }

    #[tokio::test]
    async fn the_deadline_ends_a_watch_of_an_unknown_checkout() {
        let (shared, _stop) = shared(4);
        let id = RequestId::new_random();
        let deadline = Instant::now() + Duration::from_millis(50);
        let mut stream = watch_checkout(
            &shared,
            service(),
            pb::WatchCheckoutRequest {
                request_id: id.to_string(),
                resume_after: None,
            },
            Some(deadline),
        )
        .unwrap()
        .stream;
        assert_eq!(
            stream.next().await.unwrap().unwrap_err().code(),
            tonic::Code::DeadlineExceeded
        );
    }
}
