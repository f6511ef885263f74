//! The gRPC server: tonic's builder, its tower layers (CORS, gRPC-Web, the
//! call timeout, authentication), the services it serves (checkout, health,
//! reflection v1 and v1alpha), TLS, and `TCP_NODELAY` on every accepted
//! connection. `crate::Gateway` wires it to the other tasks and stops it.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use checkout_contract::pb;
use checkout_contract::pb::checkout_gateway_server::CheckoutGatewayServer;
use http::{HeaderName, HeaderValue, Method};
use tokio::net::TcpListener;
use tokio_stream::StreamExt as _;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::server::HealthReporter;
use tower::Layer;
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::auth::AuthLayer;
use crate::config::{self, Config};
use crate::error::Error;
use crate::rpc::Shared;
use crate::service::CheckoutService;

/// The gRPC server on `listener`, ready to be awaited: it serves until
/// `shutdown` resolves, then stops accepting and waits for the calls in
/// flight (the caller bounds that wait).
///
/// # Errors
/// When the reflection service cannot be built or the TLS files cannot be
/// read; the returned future fails when the server does.
pub fn grpc(
    config: &Config,
    shared: &Arc<Shared>,
    health: &HealthReporter,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<impl Future<Output = Result<(), Error>> + Send + 'static, Error> {
    let health_service = tonic_health::pb::health_server::HealthServer::new(
        tonic_health::server::HealthService::from_health_reporter(health.clone()),
    );
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;
    let gateway = CheckoutGatewayServer::new(CheckoutService::new(Arc::clone(shared)))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    // Authentication wraps only the checkout service: health and
    // reflection stay open for load balancers and grpcurl.
    let gateway = AuthLayer::new(&config.auth, Arc::clone(&shared.metrics)).layer(gateway);

    let mut builder = tonic::transport::Server::builder();
    if let Some(files) = &config.tls {
        builder = builder.tls_config(tls_config(files)?).map_err(Error::Tls)?;
    }
    let server = builder
        // gRPC-Web clients (browsers) speak HTTP/1.1.
        .accept_http1(true)
        .max_concurrent_streams(config.max_concurrent_streams)
        .http2_keepalive_interval(Some(config.keepalive_interval))
        .http2_keepalive_timeout(Some(config.keepalive_timeout))
        // Bounds every call's handler (streams return their stream at once,
        // their own deadline is in watch_checkout).
        .timeout(config.unary_timeout)
        // CORS outermost: a browser's preflight OPTIONS is answered here and
        // never reaches the gRPC-Web translation or a service.
        .layer(cors(&config.cors_origins))
        // gRPC-Web -> gRPC translation before routing, so every service
        // (checkout, health, reflection) is reachable from a browser.
        .layer(tonic_web::GrpcWebLayer::new())
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(gateway)
        .serve_with_incoming_shutdown(with_nodelay(listener), shutdown);
    Ok(async move { server.await.map_err(Error::Serve) })
}

/// CORS for gRPC-Web: the allowed origins (`*` for any), POST, the headers
/// gRPC-Web clients send, and the gRPC status headers they must read.
fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    let h = HeaderName::from_static;
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::POST, Method::OPTIONS])
        .allow_headers([
            h("content-type"),
            h("authorization"),
            h("x-grpc-web"),
            h("x-user-agent"),
            h("grpc-timeout"),
        ])
        .expose_headers([
            h("grpc-status"),
            h("grpc-message"),
            h("grpc-status-details-bin"),
        ])
        .max_age(Duration::from_secs(24 * 3600))
}

/// The rustls server configuration from PEM files: the server's identity,
/// and with a client CA, mandatory client certificates (mutual TLS).
/// Read once at start-up, so plain blocking reads.
fn tls_config(files: &config::TlsFiles) -> Result<tonic::transport::ServerTlsConfig, Error> {
    fn read(path: &std::path::Path) -> Result<Vec<u8>, Error> {
        std::fs::read(path).map_err(|source| Error::TlsFile {
            path: path.to_owned(),
            source,
        })
    }
    let identity = tonic::transport::Identity::from_pem(read(&files.cert)?, read(&files.key)?);
    let mut tls = tonic::transport::ServerTlsConfig::new().identity(identity);
    if let Some(ca) = &files.client_ca {
        tls = tls.client_ca_root(tonic::transport::Certificate::from_pem(read(ca)?));
    }
    Ok(tls)
}

/// The accepted connections of `listener` with `TCP_NODELAY` set: tonic's
/// own `tcp_nodelay` (on by default) does not apply to
/// `serve_with_incoming`, and without it Nagle's algorithm holds small
/// responses and stream messages back until the client's delayed ACK.
fn with_nodelay(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|accepted| {
        if let Ok(stream) = &accepted {
            let _ = stream.set_nodelay(true);
        }
        accepted
    })
}
