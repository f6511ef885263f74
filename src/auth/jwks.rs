//! Tokens from an identity provider: RS256 / ES256 JWTs checked against the
//! provider's JWKS document (`JWT_JWKS_URL`), with `iss` (`JWT_ISSUER`) and
//! `aud` (`JWT_AUDIENCE`) required. Used by [`super::TokenVerifier`], never
//! on its own.
//!
//! The keys are fetched lazily (the first token, or [`super::TokenVerifier::warm_up`]
//! at start-up), cached, and fetched again when a token names a `kid` the
//! cache does not hold (the provider rotated its keys). At most one fetch
//! per [`JwksSettings::min_refresh_interval`]: a flood of tokens with made-up
//! `kid`s costs the provider one request per interval, not one per token.
//! Keys older than [`JwksSettings::max_age`] are fetched again on the next
//! token, so a key the provider withdrew stops working within that time (if
//! that fetch fails the cached keys stay in use: an outage of the provider
//! does not lock every user out).
//!
//! A provider that cannot be reached never stops the service: the failure is
//! logged, and a token whose key is not cached gets
//! [`AuthError::KeysUnavailable`] (503: the token may be fine, try again)
//! until a fetch succeeds. A `kid` the provider's current document does not
//! list gets [`AuthError::Invalid`] (401).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Empty, Limited};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};

use super::AuthError;
use crate::env::EnvReader;

/// The algorithms a provider's tokens may use.
pub const ALGORITHMS: [Algorithm; 2] = [Algorithm::RS256, Algorithm::ES256];

/// Fewest seconds between two fetches of the JWKS document.
pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(30);

/// How long fetched keys are used before the document is fetched again.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(15 * 60);

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Largest JWKS document accepted.
const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// Where the provider's keys are and what its tokens must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksSettings {
    /// `JWT_JWKS_URL`: the provider's JWKS document (`http://` or `https://`).
    pub url: String,
    /// `JWT_ISSUER`: the `iss` every provider token must carry.
    pub issuer: String,
    /// `JWT_AUDIENCE`: a value the token's `aud` must contain (this API).
    pub audience: String,
    /// Fewest time between two fetches ([`DEFAULT_MIN_REFRESH_INTERVAL`]).
    pub min_refresh_interval: Duration,
    /// How long fetched keys are used before the next token fetches the
    /// document again ([`DEFAULT_MAX_AGE`]).
    pub max_age: Duration,
}

impl JwksSettings {
    pub fn new(
        url: impl Into<String>,
        issuer: impl Into<String>,
        audience: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            issuer: issuer.into(),
            audience: audience.into(),
            min_refresh_interval: DEFAULT_MIN_REFRESH_INTERVAL,
            max_age: DEFAULT_MAX_AGE,
        }
    }

    /// Reads `JWT_JWKS_URL`, `JWT_ISSUER` and `JWT_AUDIENCE`: `None` when the
    /// URL is unset. Problems are reported to `env` (issuer and audience are
    /// required with a URL, and mean nothing without one).
    pub fn from_env(env: &mut EnvReader) -> Option<Self> {
        let url = env.optional("JWT_JWKS_URL").filter(|u| !u.is_empty());
        let issuer = env.optional("JWT_ISSUER").filter(|v| !v.is_empty());
        let audience = env.optional("JWT_AUDIENCE").filter(|v| !v.is_empty());
        let Some(url) = url else {
            if issuer.is_some() || audience.is_some() {
                env.error("JWT_ISSUER / JWT_AUDIENCE: only used with JWT_JWKS_URL, which is unset");
            }
            return None;
        };
        match url::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => env.error(format!(
                "JWT_JWKS_URL: must be an http:// or https:// URL, got {url:?}"
            )),
        }
        if issuer.is_none() {
            env.error("JWT_ISSUER: must be set when JWT_JWKS_URL is set (the `iss` of the identity provider's tokens)");
        }
        if audience.is_none() {
            env.error("JWT_AUDIENCE: must be set when JWT_JWKS_URL is set (the `aud` the identity provider issues for this API)");
        }
        Some(Self::new(
            url,
            issuer.unwrap_or_default(),
            audience.unwrap_or_default(),
        ))
    }
}

/// One usable key of the document.
struct Key {
    decoding: DecodingKey,
    /// The JWK's `alg`, when it names one: the token's must match.
    alg: Option<Algorithm>,
}

#[derive(Default)]
struct Cache {
    keys: HashMap<String, Arc<Key>>,
    /// When the last fetch was started (success or not).
    last_attempt: Option<Instant>,
    /// When the cached keys were fetched.
    fetched_at: Option<Instant>,
    /// Why the last fetch failed; `None` after a success.
    last_error: Option<String>,
}

/// The provider's keys, cached; shared by every request.
pub(super) struct KeySet {
    settings: JwksSettings,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
    cache: RwLock<Cache>,
    /// Held while fetching, so concurrent misses wait for one fetch.
    fetching: tokio::sync::Mutex<()>,
}

impl KeySet {
    pub(super) fn new(settings: JwksSettings) -> Self {
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(Arc::new(rustls::crypto::ring::default_provider()))
            .expect("ring supports the safe default protocol versions")
            .https_or_http()
            .enable_http1()
            .build();
        Self {
            settings,
            client: Client::builder(TokioExecutor::new()).build(connector),
            cache: RwLock::new(Cache::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    pub(super) fn settings(&self) -> &JwksSettings {
        &self.settings
    }

    /// The cached key named `kid`, unless the cache is older than the maximum age.
    fn cached(&self, kid: &str) -> Option<Arc<Key>> {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        if cache
            .fetched_at
            .is_some_and(|t| t.elapsed() >= self.settings.max_age)
        {
            return None;
        }
        cache.keys.get(kid).cloned()
    }

    /// The cached key named `kid`, however old.
    fn any_cached(&self, kid: &str) -> Option<Arc<Key>> {
        self.cache
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys
            .get(kid)
            .cloned()
    }

    /// The key named `kid`, fetching the document again when it is not
    /// cached and the last fetch is at least the minimum interval old.
    pub(super) async fn key(
        &self,
        kid: &str,
        alg: Algorithm,
    ) -> Result<(DecodingKey, Algorithm), AuthError> {
        let key = match (self.cached(kid), self.any_cached(kid)) {
            (Some(key), _) => key,
            // Keys past their maximum age while another request fetches:
            // serve with the old key rather than wait.
            (None, Some(old)) if self.fetching.try_lock().is_err() => old,
            (None, _) => {
                let _one_fetch = self.fetching.lock().await;
                // Another request may have fetched while this one waited.
                match self.cached(kid) {
                    Some(key) => key,
                    None => {
                        self.refresh_if_due().await;
                        // After a failed or skipped fetch, old keys still serve.
                        self.any_cached(kid).ok_or_else(|| self.missing(kid))?
                    }
                }
            }
        };
        if key.alg.is_some_and(|a| a != alg) {
            return Err(AuthError::Invalid(format!(
                "key {kid:?} is not for {alg:?} tokens"
            )));
        }
        Ok((key.decoding.clone(), alg))
    }

    /// Why `kid` is not there: the provider does not list it (401), or it
    /// could not be asked (503).
    fn missing(&self, kid: &str) -> AuthError {
        let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
        match &cache.last_error {
            Some(e) => AuthError::KeysUnavailable(e.clone()),
            None => AuthError::Invalid(format!(
                "unknown signing key {kid:?} (not in the identity provider's JWKS)"
            )),
        }
    }

    /// Fetches the document unless the last attempt is too recent (at
    /// start-up); a failure is logged, never returned.
    pub(super) async fn warm_up(&self) {
        let _one_fetch = self.fetching.lock().await;
        self.refresh_if_due().await;
    }

    /// Fetches the document unless the last attempt is too recent; a failure
    /// is logged and remembered, the cached keys stay. Called with
    /// `fetching` held, so a request never sees a fetch half done.
    async fn refresh_if_due(&self) {
        {
            let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
            if cache
                .last_attempt
                .is_some_and(|t| t.elapsed() < self.settings.min_refresh_interval)
            {
                return;
            }
            cache.last_attempt = Some(Instant::now());
        }
        let result = self.fetch().await;
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(keys) => {
                tracing::info!(url = %self.settings.url, keys = keys.len(), "fetched the identity provider's JWKS");
                cache.keys = keys;
                cache.fetched_at = Some(Instant::now());
                cache.last_error = None;
            }
            Err(e) => {
                tracing::warn!(url = %self.settings.url, error = %e, "cannot fetch the identity provider's JWKS; keeping the cached keys, trying again on demand");
                cache.last_error = Some(e);
            }
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, Arc<Key>>, String> {
        let request = hyper::Request::get(&self.settings.url)
            .header(hyper::header::ACCEPT, "application/json")
            .body(Empty::new())
            .map_err(|e| format!("JWKS URL {:?}: {e}", self.settings.url))?;
        let body = tokio::time::timeout(FETCH_TIMEOUT, async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| format!("JWKS fetch failed: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("JWKS fetch answered {}", response.status()));
            }
            Limited::new(response.into_body(), MAX_DOCUMENT_BYTES)
                .collect()
                .await
                .map(|b| b.to_bytes())
                .map_err(|e| format!("JWKS body: {e}"))
        })
        .await
        .map_err(|_| format!("JWKS fetch took longer than {FETCH_TIMEOUT:?}"))??;
        parse_document(&body)
    }
}

/// The signing keys of a JWKS document by `kid`. Keys we cannot use (no
/// `kid`, for encryption, symmetric, other curves) are skipped with a log
/// line; a document that is not a JWKS at all is an error.
fn parse_document(body: &[u8]) -> Result<HashMap<String, Arc<Key>>, String> {
    #[derive(serde::Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|e| format!("JWKS document is not a JWK set: {e}"))?;
    let mut keys = HashMap::new();
    for value in document.keys {
        match usable(value) {
            Ok((kid, key)) => {
                keys.insert(kid, Arc::new(key));
            }
            Err(why) => tracing::debug!(%why, "skipping a JWKS key"),
        }
    }
    Ok(keys)
}

fn usable(value: serde_json::Value) -> Result<(String, Key), String> {
    let jwk: Jwk = serde_json::from_value(value).map_err(|e| format!("not a JWK: {e}"))?;
    let kid = jwk.common.key_id.clone().ok_or("no kid")?;
    if matches!(
        jwk.common.public_key_use,
        Some(PublicKeyUse::Encryption | PublicKeyUse::Other(_))
    ) {
        return Err(format!("{kid}: not a signing key"));
    }
    let alg = match jwk.common.key_algorithm {
        None => None,
        Some(KeyAlgorithm::RS256) => Some(Algorithm::RS256),
        Some(KeyAlgorithm::ES256) => Some(Algorithm::ES256),
        Some(other) => return Err(format!("{kid}: algorithm {other:?} is not accepted")),
    };
    match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => {}
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => {}
        _ => return Err(format!("{kid}: neither an RSA nor a P-256 key")),
    }
    let decoding = DecodingKey::from_jwk(&jwk).map_err(|e| format!("{kid}: {e}"))?;
    Ok((kid, Key { decoding, alg }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuer_and_audience_are_required_with_a_url() {
        let mut env = EnvReader::from_pairs(&[("JWT_JWKS_URL", "https://idp.example/jwks.json")]);
        assert!(JwksSettings::from_env(&mut env).is_some());
        let text = env.finish().unwrap_err().to_string();
        assert!(
            text.contains("JWT_ISSUER: must be set when JWT_JWKS_URL is set")
                && text.contains("JWT_AUDIENCE: must be set when JWT_JWKS_URL is set"),
            "{text}"
        );

        let mut env = EnvReader::from_pairs(&[("JWT_ISSUER", "https://idp.example/")]);
        assert_eq!(JwksSettings::from_env(&mut env), None);
        assert!(
            env.finish()
                .unwrap_err()
                .to_string()
                .contains("JWT_JWKS_URL")
        );

        let mut env = EnvReader::from_pairs(&[
            ("JWT_JWKS_URL", "ftp://idp.example/jwks.json"),
            ("JWT_ISSUER", "i"),
            ("JWT_AUDIENCE", "a"),
        ]);
        JwksSettings::from_env(&mut env);
        assert!(env.finish().unwrap_err().to_string().contains("http://"));

        let mut env = EnvReader::from_pairs(&[
            ("JWT_JWKS_URL", "https://idp.example/jwks.json"),
            ("JWT_ISSUER", "https://idp.example/"),
            ("JWT_AUDIENCE", "checkout-api"),
        ]);
        let settings = JwksSettings::from_env(&mut env).unwrap();
        env.finish().unwrap();
        assert_eq!(settings.audience, "checkout-api");
        assert_eq!(settings.min_refresh_interval, DEFAULT_MIN_REFRESH_INTERVAL);

        let mut env = EnvReader::from_pairs(&[]);
        assert_eq!(JwksSettings::from_env(&mut env), None);
        env.finish().unwrap();
    }

    #[test]
    fn documents_keep_only_usable_signing_keys() {
        let document = serde_json::json!({"keys": [
            {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            {"kty": "EC", "kid": "p384", "crv": "P-384", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "ps", "alg": "PS256", "n": "AQAB", "e": "AQAB"},
            {"kty": "what", "kid": "odd"},
            {"kty": "RSA", "kid": "ok", "alg": "RS256", "use": "sig", "n": "AQAB", "e": "AQAB"}
        ]});
        let keys = parse_document(document.to_string().as_bytes()).unwrap();
        assert_eq!(keys.keys().collect::<Vec<_>>(), ["ok"]);
        assert!(parse_document(b"<html>").is_err());
    }
}
