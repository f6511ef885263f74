//! The `checkout.v1.CheckoutGateway` tonic service: hands each call to its
//! file in [`crate::rpc`], maps `ApiError` to `tonic::Status` (the mapping
//! itself is `From<ApiError> for Status` in [`crate::error`]), computes each
//! call's deadline, and records RPC metrics.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use checkout_contract::pb;
use checkout_contract::pb::checkout_gateway_server::CheckoutGateway;
use checkout_contract::trace::{TRACEPARENT, TraceContext};
use futures::{Stream, StreamExt};
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tracing::Instrument as _;
use tracing::field::Empty;

use crate::auth::caller;
use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::rpc::{Shared, get_checkout, start_checkout, watch_checkout};

/// Kept free at the end of a unary call's budget (a tenth of it, within
/// these bounds), so a wait ends with an answer rather than the client's
/// DEADLINE_EXCEEDED.
const ANSWER_MARGIN: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_millis(500));

/// The service; cheap to clone.
#[derive(Clone)]
pub struct CheckoutService {
    shared: Arc<Shared>,
}

impl CheckoutService {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Records a finished unary call and turns its error into a status.
    fn finish<T>(
        &self,
        method: &str,
        started: Instant,
        result: Result<T, ApiError>,
    ) -> Result<Response<T>, Status> {
        let code = result
            .as_ref()
            .map_or_else(ApiError::code, |_| tonic::Code::Ok);
        self.shared
            .metrics
            .record_rpc(method, code, started.elapsed());
        if let Err(e) = &result {
            tracing::debug!(method, error = %e, "call failed");
        }
        result.map(Response::new).map_err(Status::from)
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<pb::CheckoutUpdate, Status>> + Send>>;

#[tonic::async_trait]
impl CheckoutGateway for CheckoutService {
    async fn start_checkout(
        &self,
        request: Request<pb::StartCheckoutRequest>,
    ) -> Result<Response<pb::StartCheckoutResponse>, Status> {
        let started = Instant::now();
        let budget = client_timeout(&request).map_or(self.shared.unary_timeout, |t| {
            t.min(self.shared.unary_timeout)
        });
        let deadline =
            started + budget.saturating_sub((budget / 10).clamp(ANSWER_MARGIN.0, ANSWER_MARGIN.1));
        // Continue the caller's trace (or start one); it travels on with the
        // request as a Kafka header and comes back in the response metadata.
        let span = tracing::info_span!("StartCheckout", request_id = Empty, trace_id = Empty);
        let trace = TraceContext::continue_in(
            request
                .metadata()
                .get(TRACEPARENT)
                .and_then(|v| v.to_str().ok())
                .and_then(TraceContext::parse),
            &span,
        );
        let result = match caller(&request) {
            Ok(p) => {
                start_checkout::start_checkout(
                    &self.shared,
                    &p,
                    request.into_inner(),
                    deadline,
                    &trace,
                )
                .instrument(span.clone())
                .await
            }
            Err(e) => Err(e),
        };
        span.in_scope(|| self.finish("StartCheckout", started, result))
            .map(|r| with_traceparent(r, Some(&trace)))
    }

    type WatchCheckoutStream = WatchStream;

    async fn watch_checkout(
        &self,
        request: Request<pb::WatchCheckoutRequest>,
    ) -> Result<Response<Self::WatchCheckoutStream>, Status> {
        let started = Instant::now();
        let deadline = client_timeout(&request).map(|t| started + t);
        // The handler fills in request_id and trace_id; the stream logs in it.
        let span = tracing::info_span!("WatchCheckout", request_id = Empty, trace_id = Empty);
        span.in_scope(|| {
            let watching = caller(&request).and_then(|p| {
                watch_checkout::watch_checkout(&self.shared, p, request.into_inner(), deadline)
            });
            match watching {
                Ok(w) => Ok(with_traceparent(
                    Response::new(recorded(
                        w.stream,
                        Arc::clone(&self.shared.metrics),
                        started,
                    )),
                    w.trace.as_ref(),
                )),
                Err(e) => self.finish("WatchCheckout", started, Err(e)),
            }
        })
    }

    async fn get_checkout(
        &self,
        request: Request<pb::GetCheckoutRequest>,
    ) -> Result<Response<pb::CheckoutUpdate>, Status> {
        let started = Instant::now();
        // The handler fills in request_id and trace_id.
        let span = tracing::info_span!("GetCheckout", request_id = Empty, trace_id = Empty);
        span.in_scope(|| {
            let found = caller(&request)
                .and_then(|p| get_checkout::get_checkout(&self.shared, &p, request.into_inner()));
            let trace = found.as_ref().ok().and_then(|f| f.trace);
            self.finish("GetCheckout", started, found.map(|f| f.update))
                .map(|r| with_traceparent(r, trace.as_ref()))
        })
    }
}

/// Adds `traceparent` to the answer's metadata, when there is a trace.
fn with_traceparent<T>(mut response: Response<T>, trace: Option<&TraceContext>) -> Response<T> {
    if let Some(value) = trace.and_then(|t| t.header().parse().ok()) {
        response.metadata_mut().insert(TRACEPARENT, value);
    }
    response
}

/// Records a WatchCheckout call when its stream ends: OK, the error's code,
/// or CANCELLED when the client went away first.
struct StreamRecord {
    metrics: Arc<Metrics>,
    started: Instant,
    code: Option<tonic::Code>,
}

impl Drop for StreamRecord {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(tonic::Code::Cancelled);
        self.metrics
            .record_rpc("WatchCheckout", code, self.started.elapsed());
    }
}

fn recorded(
    inner: watch_checkout::UpdateStream,
    metrics: Arc<Metrics>,
    started: Instant,
) -> WatchStream {
    let record = StreamRecord {
        metrics,
        started,
        code: None,
    };
    Box::pin(futures::stream::unfold(
        (inner, record),
        |(mut inner, mut record)| async move {
            match inner.next().await {
                Some(Ok(update)) => Some((Ok(update), (inner, record))),
                Some(Err(e)) => {
                    record.code = Some(e.code());
                    Some((Err(Status::from(e)), (inner, record)))
                }
                None => {
                    record.code.get_or_insert(tonic::Code::Ok);
                    None
                }
            }
        },
    ))
}

/// The client's `grpc-timeout`, if it sent one.
fn client_timeout<T>(request: &Request<T>) -> Option<Duration> {
    let raw = request.metadata().get("grpc-timeout")?.to_str().ok()?;
    parse_grpc_timeout(raw)
}

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H M S m u n).
fn parse_grpc_timeout(raw: &str) -> Option<Duration> {
    if raw.len() < 2 || raw.len() > 9 {
        return None;
    }
    let (digits, unit) = raw.split_at(raw.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n * 3600),
        "M" => Duration::from_secs(n * 60),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_timeout_units() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5x"), None);
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
    }
}
