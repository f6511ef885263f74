//! Serves an axum router over HTTP/1.1 with the timeout `axum::serve`
//! lacks: a client must send its request headers within
//! `header_read_timeout` (body timeouts are a layer on the router), so
//! slow-loris clients cannot hold connections open. Shutdown stops
//! accepting, lets each connection finish the request in hand, and waits at
//! most `grace` for them. Used by the checkout webhook and blazing_sun's API;
//! [`bind`] makes every listener of the system.

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use crate::shutdown::{Stopping, drain_all};

/// Binds `addr` and returns the listener with the address it got (the real
/// port when `addr` asks for port 0): every listener of the system.
///
/// # Errors
/// The address is busy or cannot be bound.
pub async fn bind(
    addr: std::net::SocketAddr,
) -> std::io::Result<(TcpListener, std::net::SocketAddr)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    Ok((listener, local))
}

/// Serves `app` on `listener` until `shutdown` says stop.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    header_read_timeout: Duration,
    grace: Duration,
    mut shutdown: Stopping,
) {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.stopped() => break,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => {
                // Small responses go out at once, not after a delayed ACK.
                let _ = stream.set_nodelay(true);
                stream
            }
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let app = app.clone();
        let mut stop = shutdown.clone();
        connections.spawn(async move {
            let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                let app = app.clone();
                async move {
                    Ok::<_, Infallible>(
                        app.oneshot(request.map(axum::body::Body::new))
                            .await
                            .unwrap_or_else(|e| match e {}),
                    )
                }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let finished = tokio::select! {
                result = connection.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    true
                }
                () = stop.stopped() => false,
            };
            if !finished {
                // Shutdown: finish the request in hand, then close.
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        });
        while connections.try_join_next().is_some() {}
    }
    drop(listener);
    drain_all("connections", grace, &mut connections, |_| {}).await;
}
