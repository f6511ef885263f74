//! A TCP front for a local HTTP server (the Stripe emulator): it counts the
//! connections clients open, and can terminate TLS with a certificate
//! generated at start (rcgen: a CA of its own, a leaf for `localhost` and
//! `127.0.0.1`), so a client that trusts [`Front::ca_der`] talks HTTPS to a
//! server that only speaks plain HTTP. Bytes are copied both ways unchanged;
//! the server behind it is not touched.
//!
//! Used by the checkout tests (connections are reused) and the
//! `stripe-tls` benchmark (what a handshake per call costs).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

/// Why a front could not start.
#[derive(Debug, thiserror::Error)]
pub enum FrontError {
    #[error("cannot generate the certificate: {0}")]
    Certificate(#[from] rcgen::Error),
    #[error("cannot build the TLS server: {0}")]
    Tls(#[from] rustls::Error),
    #[error("cannot bind the front: {0}")]
    Bind(#[from] std::io::Error),
}

/// A running front on `127.0.0.1:0`; stops when dropped.
pub struct Front {
    addr: SocketAddr,
    ca_der: Option<CertificateDer<'static>>,
    accepted: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl Front {
    /// A plain TCP front for `upstream` that counts connections.
    ///
    /// # Errors
    /// When the port cannot be bound.
    pub async fn plain(upstream: SocketAddr) -> Result<Self, FrontError> {
        Self::start(upstream, None, None).await
    }

    /// A TLS-terminating front for `upstream` with a freshly generated CA
    /// and a server certificate for `localhost` and `127.0.0.1`.
    ///
    /// # Errors
    /// When the certificate cannot be generated or the port bound.
    pub async fn tls(upstream: SocketAddr) -> Result<Self, FrontError> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let key = KeyPair::generate()?;
        let leaf = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?
            .signed_by(&key, &ca)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![leaf.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )?;
        let acceptor = TlsAcceptor::from(Arc::new(config));
        Self::start(upstream, Some(acceptor), Some(ca.der().clone())).await
    }

    async fn start(
        upstream: SocketAddr,
        tls: Option<TlsAcceptor>,
        ca_der: Option<CertificateDer<'static>>,
    ) -> Result<Self, FrontError> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let accepted = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(relay(client, upstream, tls.clone()));
            }
        });
        Ok(Self {
            addr,
            ca_der,
            accepted,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `https://127.0.0.1:PORT/` for a TLS front, `http://...` for a plain one.
    pub fn base_url(&self) -> String {
        let scheme = if self.ca_der.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/", self.addr)
    }

    /// The generated CA a client must trust (`None` for a plain front).
    pub fn ca_der(&self) -> Option<&CertificateDer<'static>> {
        self.ca_der.as_ref()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.accepted.load(Ordering::Relaxed)
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One client connection: TLS handshake if asked, then bytes both ways
/// until either side closes.
async fn relay(client: TcpStream, upstream: SocketAddr, tls: Option<TlsAcceptor>) {
    let _ = client.set_nodelay(true);
    let Ok(mut server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = server.set_nodelay(true);
    match tls {
        Some(acceptor) => {
            if let Ok(mut client) = acceptor.accept(client).await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
            }
        }
        None => {
            let mut client = client;
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        }
    }
}
