//! A client watching one checkout to its end on a gateway replica
//! (WatchCheckout), reconnecting with `resume_after` when the replica is
//! SIGKILLed, as a browser would.

use std::time::{Duration, Instant};

use checkout_contract::CheckoutStatus;
use checkout_contract::pb::checkout_gateway_client::CheckoutGatewayClient;
use checkout_contract::pb::{self, WatchCheckoutRequest};
use faults::client::{authorized, is_transient};
use tonic::transport::Channel;

/// What one watch saw.
#[derive(Debug)]
pub struct Watched {
    pub request_id: String,
    /// Every status received, in order.
    pub statuses: Vec<CheckoutStatus>,
    /// Streams that broke (the replica was killed) and were opened again.
    pub reconnects: u32,
}

impl Watched {
    pub fn terminal(&self) -> Option<CheckoutStatus> {
        self.statuses.last().copied().filter(|s| s.is_terminal())
    }

    /// Counts a call or stream that failed because the replica went away.
    ///
    /// # Panics
    /// When it failed for another reason.
    fn broke(&mut self, status: &tonic::Status) {
        assert!(
            is_transient(status),
            "watch of {}: unexpected {status:?}",
            self.request_id
        );
        self.reconnects += 1;
    }
}

/// Watches `request_id` until its terminal status, reconnecting after the
/// last update seen when the stream breaks.
///
/// # Panics
/// On an error that is not the replica going away, or no terminal status `within`.
pub async fn watch_to_end(
    channel: Channel,
    token: String,
    request_id: String,
    within: Duration,
) -> Watched {
    let deadline = Instant::now() + within;
    let mut client = CheckoutGatewayClient::new(channel);
    let mut watched = Watched {
        request_id,
        statuses: Vec::new(),
        reconnects: 0,
    };
    let mut resume_after = None;
    loop {
        assert!(
            Instant::now() < deadline,
            "watch of {} saw no terminal status within {within:?}: {:?} after {} reconnects",
            watched.request_id,
            watched.statuses,
            watched.reconnects
        );
        let request = authorized(
            &token,
            WatchCheckoutRequest {
                request_id: watched.request_id.clone(),
                resume_after,
            },
        );
        let mut stream = match client.watch_checkout(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                watched.broke(&status);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            match stream.message().await {
                Ok(Some(update)) => {
                    let event = update.event.expect("an update carries its event");
                    let status = pb::CheckoutStatus::try_from(event.status)
                        .unwrap_or_else(|_| panic!("unknown status {}", event.status));
                    // PENDING: the replica knows the request, no status yet.
                    let Ok(status) = CheckoutStatus::try_from(status) else {
                        continue;
                    };
                    resume_after = update.cursor;
                    watched.statuses.push(status);
                    if status.is_terminal() {
                        return watched;
                    }
                }
                Ok(None) => panic!(
                    "watch of {} ended without a terminal status: {:?}",
                    watched.request_id, watched.statuses
                ),
                Err(status) => {
                    watched.broke(&status);
                    break;
                }
            }
        }
    }
}
