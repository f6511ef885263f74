//! A test identity provider: signing keys generated at test time (RSA 2048
//! for RS256, P-256 for ES256), their JWKS document served over real HTTP on
//! a free port, and tokens signed with jsonwebtoken's `EncodingKey`, as an
//! OpenID provider would issue them. The verifier under test fetches the
//! document exactly as it fetches a real provider's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use checkout_contract::auth::JwksSettings;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// The `iss` of [`TestIdp`] tokens.
pub const ISSUER: &str = "https://idp.test/";
/// The `aud` of [`TestIdp`] tokens.
pub const AUDIENCE: &str = "checkout-api";

/// A private key of the provider and its public JWK.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    jwk: Value,
}

impl SigningKey {
    /// A fresh RSA 2048 key for RS256.
    pub fn rsa(kid: &str) -> Self {
        use rsa::pkcs1::EncodeRsaPrivateKey as _;
        use rsa::traits::PublicKeyParts as _;
        let key =
            rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key generation");
        let der = key.to_pkcs1_der().expect("PKCS#1 encoding");
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::RS256,
            encoding: EncodingKey::from_rsa_der(der.as_bytes()),
            jwk: json!({
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
            }),
        }
    }

    /// A fresh P-256 key for ES256.
    pub fn ec(kid: &str) -> Self {
        use p256::elliptic_curve::sec1::ToEncodedPoint as _;
        use p256::pkcs8::EncodePrivateKey as _;
        let key = p256::SecretKey::random(&mut rsa::rand_core::OsRng);
        let der = key.to_pkcs8_der().expect("PKCS#8 encoding");
        let point = key.public_key().to_encoded_point(false);
        Self {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            encoding: EncodingKey::from_ec_der(der.as_bytes()),
            jwk: json!({
                "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
                "x": URL_SAFE_NO_PAD.encode(point.x().expect("uncompressed point")),
                "y": URL_SAFE_NO_PAD.encode(point.y().expect("uncompressed point")),
            }),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// `claims` signed with this key, its `kid` in the header.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).expect("signing")
    }

    /// A token for `sub` with `role` (`user` / `service`), from [`ISSUER`]
    /// for [`AUDIENCE`], valid ten minutes.
    pub fn token(&self, sub: &str, role: &str) -> String {
        self.sign(&claims(sub, role))
    }
}

/// The claims of a good provider token for `sub` with `role`; change fields
/// to make a bad one.
pub fn claims(sub: &str, role: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs();
    json!({
        "sub": sub, "role": role, "iss": ISSUER, "aud": AUDIENCE,
        "iat": now, "exp": now + 600,
    })
}

#[derive(Default)]
struct Published {
    keys: Mutex<Vec<Value>>,
    fetches: AtomicUsize,
    down: AtomicBool,
}

/// The provider's JWKS endpoint on a free port; stops when dropped.
pub struct TestIdp {
    addr: SocketAddr,
    published: Arc<Published>,
    server: tokio::task::JoinHandle<()>,
}

impl TestIdp {
    /// Serves a JWKS document listing `keys`.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn start(keys: &[&SigningKey]) -> Self {
        let published = Arc::new(Published::default());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the test identity provider");
        let addr = listener.local_addr().expect("local address");
        let router = Router::new()
            .route("/.well-known/jwks.json", get(jwks))
            .with_state(Arc::clone(&published));
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .await
                .expect("test identity provider");
        });
        let idp = Self {
            addr,
            published,
            server,
        };
        idp.publish(keys);
        idp
    }

    /// The document's URL (`JWT_JWKS_URL`).
    pub fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    /// Settings for a verifier of this provider's tokens, refreshing at most
    /// once per `min_refresh_interval`.
    pub fn settings(&self, min_refresh_interval: Duration) -> JwksSettings {
        let mut settings = JwksSettings::new(self.url(), ISSUER, AUDIENCE);
        settings.min_refresh_interval = min_refresh_interval;
        settings
    }

    /// From now on the document lists exactly `keys` (a key rotation).
    pub fn publish(&self, keys: &[&SigningKey]) {
        *self
            .published
            .keys
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = keys.iter().map(|k| k.jwk.clone()).collect();
    }

    /// While `down`, the endpoint answers 503 (an outage of the provider).
    pub fn set_down(&self, down: bool) {
        self.published.down.store(down, Ordering::SeqCst);
    }

    /// How many times the document was requested.
    pub fn fetches(&self) -> usize {
        self.published.fetches.load(Ordering::SeqCst)
    }
}

impl Drop for TestIdp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn jwks(State(published): State<Arc<Published>>) -> Response {
    published.fetches.fetch_add(1, Ordering::SeqCst);
    if published.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    let keys = published
        .keys
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    axum::Json(json!({ "keys": keys })).into_response()
}
