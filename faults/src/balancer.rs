//! A round-robin TCP balancer in front of several replicas' ports, as a
//! load balancer stands in front of the checkout workers' webhook endpoints
//! in production: each connection goes to the next replica that accepts
//! it, so a SIGKILLed replica's share of the traffic moves to the others.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};

/// A balancer listening on a port of its own; runs until the runtime ends.
pub struct Balancer {
    addr: SocketAddr,
}

impl Balancer {
    /// Listens on `127.0.0.1:0` and forwards to `backends` in turn.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start(backends: Vec<SocketAddr>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let backends = Arc::new(backends);
        let next = Arc::new(AtomicUsize::new(0));
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let (backends, next) = (backends.clone(), next.clone());
                tokio::spawn(async move {
                    // Try each replica once, starting with the next in turn;
                    // with none accepting, the caller sees a dropped connection.
                    let first = next.fetch_add(1, Ordering::Relaxed);
                    for k in 0..backends.len() {
                        let backend = backends[(first + k) % backends.len()];
                        if let Ok(mut outbound) = TcpStream::connect(backend).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                            return;
                        }
                    }
                });
            }
        });
        Self { addr }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}
