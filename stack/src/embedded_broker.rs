//! The embedded Kafka-protocol broker: librdkafka's in-process mock cluster
//! (one broker, the checkout topics with `CHECKOUT_TOPIC_PARTITIONS`, the seed's 3 by default), reachable
//! on a fixed local bootstrap port.
//!
//! The mock cluster listens on a random port. A small TCP forwarder on the
//! fixed port (default 9092) carries the bootstrap connection; the metadata
//! it returns names the mock broker's own address, which clients then use
//! directly. So `KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092` works for every tool.

use std::net::SocketAddr;
use std::sync::mpsc;

use rdkafka::mocking::MockCluster;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

use checkout_contract::topics::Topics;

/// Why the embedded broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("cannot start the embedded Kafka broker: {0}")]
    Mock(String),
    #[error("cannot listen on {addr} for the embedded Kafka broker: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running embedded broker. Dropping it stops the broker.
pub struct EmbeddedBroker {
    bootstrap: String,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl EmbeddedBroker {
    /// Starts the mock cluster with `topics` created and a forwarder on `listen`.
    ///
    /// # Errors
    /// When librdkafka cannot create the cluster or `listen` is busy.
    pub async fn start(listen: SocketAddr, topics: &Topics) -> Result<Self, BrokerError> {
        let (listener, local) =
            checkout_contract::http_server::bind(listen)
                .await
                .map_err(|source| BrokerError::Bind {
                    addr: listen,
                    source,
                })?;

        // The mock cluster is not Send: it lives on a thread of its own until told to stop.
        let names: Vec<String> = topics.all().iter().map(|t| (*t).to_owned()).collect();
        let partitions = topics.partitions;
        let (ready_tx, ready_rx) = mpsc::channel::<Result<String, String>>();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("embedded-kafka".into())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                for name in &names {
                    if let Err(e) = cluster.create_topic(name, partitions, 1) {
                        let _ = ready_tx.send(Err(format!("create topic {name}: {e}")));
                        return;
                    }
                }
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                let _ = stop_rx.blocking_recv();
                drop(cluster);
            })
            .map_err(|e| BrokerError::Mock(e.to_string()))?;
        let inner = tokio::task::spawn_blocking(move || ready_rx.recv())
            .await
            .map_err(|e| BrokerError::Mock(e.to_string()))?
            .map_err(|e| BrokerError::Mock(e.to_string()))?
            .map_err(BrokerError::Mock)?;

        tokio::spawn(forward(listener, inner.clone()));
        tracing::info!(bootstrap = %local, mock = %inner, "embedded Kafka broker started");
        Ok(Self {
            bootstrap: local.to_string(),
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    /// The fixed bootstrap address clients use.
    pub fn bootstrap(&self) -> &str {
        &self.bootstrap
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Copies bytes both ways between each accepted connection and the mock broker.
async fn forward(listener: TcpListener, upstream: String) {
    loop {
        let Ok((mut client, _)) = listener.accept().await else {
            continue;
        };
        let upstream = upstream.clone();
        tokio::spawn(async move {
            match TcpStream::connect(&upstream).await {
                Ok(mut server) => {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
                Err(e) => tracing::warn!(error = %e, "embedded broker unreachable"),
            }
        });
    }
}
