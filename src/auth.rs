//! Bearer-token authentication shared by the gateway and blazing_sun: JWTs
//! whose `sub` is the user id (role `user`) or a service name (role
//! `service`), with `exp` required.
//!
//! Two kinds of token, picked by the header's `alg`, either or both enabled
//! ([`TokenSettings`], checked by [`TokenVerifier`]):
//! - HS256 with the shared `JWT_SECRET` ([`JwtVerifier`], [`JwtIssuer`]):
//!   internal services, the launcher's demo token.
//! - RS256 / ES256 from an identity provider, checked against its JWKS
//!   ([`jwks`]: `JWT_JWKS_URL`, `JWT_ISSUER`, `JWT_AUDIENCE`). The provider
//!   must put into its tokens: `sub` (our numeric user id, or a service
//!   name with `role: "service"`), `exp`, `iss` = `JWT_ISSUER`, `aud`
//!   containing `JWT_AUDIENCE`, and a `kid` header naming a key of its JWKS;
//!   `role` is optional (`user` when absent), `nbf` is checked when present.
//!
//! Any other `alg` (`none`, HS384, PS256, ...) or a kind that is not
//! enabled is refused as [`AuthError::Invalid`].

pub mod jwks;

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, encode};
use serde::{Deserialize, Serialize};

use crate::domain::UserId;
use crate::secret::Secret;
pub use jwks::JwksSettings;

/// What a token may do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// An end user: acts only on its own checkouts.
    #[default]
    User,
    /// An internal service: acts for any user.
    Service,
}

/// The claims we issue and accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: i64,
    #[serde(default)]
    pub role: Role,
}

/// Who is calling, once the token checked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub subject: String,
    pub role: Role,
}

impl Principal {
    /// The user id for role `user` (its `sub`); `None` for services.
    pub fn user_id(&self) -> Option<UserId> {
        match self.role {
            Role::User => self
                .subject
                .parse()
                .ok()
                .and_then(|id| UserId::parse(id).ok()),
            Role::Service => None,
        }
    }

    /// May this caller act for `user`?
    pub fn may_act_for(&self, user: UserId) -> bool {
        match self.role {
            Role::Service => true,
            Role::User => self.user_id() == Some(user),
        }
    }
}

/// Why a request is not authenticated. The message is safe to return to the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token (send `Authorization: Bearer <JWT>`)")]
    Missing,
    #[error("malformed authorization header (expected `Bearer <JWT>`)")]
    Malformed,
    #[error("token expired")]
    Expired,
    #[error("invalid token: {0}")]
    Invalid(String),
    /// The identity provider's keys could not be fetched: the token may be
    /// fine, the caller should try again (503 / UNAVAILABLE).
    #[error("cannot check the token now: the identity provider's keys are unavailable ({0})")]
    KeysUnavailable(String),
}

impl AuthError {
    /// A verification failure from jsonwebtoken, in our terms.
    fn from_jwt(e: &jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind;
        match e.kind() {
            ErrorKind::ExpiredSignature => AuthError::Expired,
            ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer (iss)".into()),
            ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience (aud)".into()),
            kind => AuthError::Invalid(format!("{kind:?}")),
        }
    }
}

/// The bearer token of an `Authorization` header value (`Bearer <JWT>`).
///
/// # Errors
/// A missing or malformed header.
pub fn bearer_token(header: Option<&str>) -> Result<&str, AuthError> {
    let header = header.ok_or(AuthError::Missing)?;
    header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or(AuthError::Malformed)
}

/// The principal of verified claims: a `user` must have a positive user id as `sub`.
fn principal(claims: Claims) -> Result<Principal, AuthError> {
    let principal = Principal {
        subject: claims.sub,
        role: claims.role,
    };
    if principal.role == Role::User && principal.user_id().is_none() {
        return Err(AuthError::Invalid("sub must be a positive user id".into()));
    }
    Ok(principal)
}

/// The shortest `JWT_SECRET` the gateway accepts, and the token subcommand signs with.
pub const MIN_SECRET_LEN: usize = 16;

/// Why a `JWT_SECRET` value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("JWT_SECRET: must be set")]
    Missing,
    #[error("JWT_SECRET: must be at least {MIN_SECRET_LEN} characters, got {0}")]
    TooShort(usize),
}

/// The HS256 secret from a `JWT_SECRET` value: set, and at least
/// [`MIN_SECRET_LEN`] characters.
///
/// # Errors
/// When `value` is `None` or shorter than [`MIN_SECRET_LEN`].
pub fn jwt_secret(value: Option<String>) -> Result<Secret, SecretError> {
    let value = value.ok_or(SecretError::Missing)?;
    let chars = value.chars().count();
    if chars < MIN_SECRET_LEN {
        return Err(SecretError::TooShort(chars));
    }
    Ok(Secret::new(value))
}

/// Checks HS256 tokens against one secret.
#[derive(Clone)]
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JwtVerifier { key: [redacted] }")
    }
}

impl JwtVerifier {
    pub fn new(secret: &Secret) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            key: DecodingKey::from_secret(secret.expose().as_bytes()),
            validation,
        }
    }

    /// # Errors
    /// When the token is badly signed, expired, or its claims make no sense
    /// (a `user` whose `sub` is not a positive integer).
    pub fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let data = decode::<Claims>(token, &self.key, &self.validation)
            .map_err(|e| AuthError::from_jwt(&e))?;
        principal(data.claims)
    }

    /// Verifies an `Authorization` header value (`Bearer <JWT>`).
    ///
    /// # Errors
    /// As [`JwtVerifier::verify`], plus a missing or malformed header.
    pub fn verify_header(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        self.verify(bearer_token(header)?)
    }
}

/// Which tokens a service accepts: HS256 with a shared secret, RS256/ES256
/// from an identity provider's JWKS, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// `JWT_SECRET`: HS256 tokens are accepted when set.
    pub secret: Option<Secret>,
    /// `JWT_JWKS_URL`, `JWT_ISSUER`, `JWT_AUDIENCE`: provider tokens are accepted when set.
    pub jwks: Option<JwksSettings>,
}

impl TokenSettings {
    /// HS256 tokens only.
    pub fn hs256(secret: Secret) -> Self {
        Self {
            secret: Some(secret),
            jwks: None,
        }
    }
}

/// Checks bearer tokens of every kind [`TokenSettings`] enables, picking by
/// the token's `alg`. Cheap to clone (the JWKS cache is shared).
#[derive(Clone)]
pub struct TokenVerifier {
    hs256: Option<JwtVerifier>,
    jwks: Option<(Arc<jwks::KeySet>, Validation)>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenVerifier")
            .field("hs256", &self.hs256.is_some())
            .field("jwks", &self.jwks.as_ref().map(|(k, _)| k.settings()))
            .finish()
    }
}

impl TokenVerifier {
    pub fn new(settings: &TokenSettings) -> Self {
        let jwks = settings.jwks.as_ref().map(|s| {
            let mut validation = Validation::new(Algorithm::RS256);
            validation.algorithms = jwks::ALGORITHMS.to_vec();
            validation.leeway = 5;
            validation.validate_nbf = true;
            validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
            validation.set_issuer(&[&s.issuer]);
            validation.set_audience(&[&s.audience]);
            (Arc::new(jwks::KeySet::new(s.clone())), validation)
        });
        Self {
            hs256: settings.secret.as_ref().map(JwtVerifier::new),
            jwks,
        }
    }

    /// Fetches the identity provider's keys now (at start-up) instead of on
    /// the first token; a failure is logged, never fatal. No-op without JWKS.
    pub async fn warm_up(&self) {
        if let Some((keys, _)) = &self.jwks {
            keys.warm_up().await;
        }
    }

    /// # Errors
    /// [`AuthError::Invalid`] for a token that is badly signed, by a key the
    /// provider does not list, of an `alg` not enabled, for another issuer
    /// or audience, or whose claims make no sense; [`AuthError::Expired`];
    /// [`AuthError::KeysUnavailable`] when its key is not cached and the
    /// provider cannot be reached.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::from_jwt(&e))?;
        match (header.alg, &self.hs256, &self.jwks) {
            (Algorithm::HS256, Some(hs256), _) => hs256.verify(token),
            (alg, _, Some((keys, validation))) if jwks::ALGORITHMS.contains(&alg) => {
                let kid = header
                    .kid
                    .ok_or_else(|| AuthError::Invalid("token has no kid header".into()))?;
                let (key, alg) = keys.key(&kid, alg).await?;
                let mut validation = validation.clone();
                validation.algorithms = vec![alg];
                let data = decode::<Claims>(token, &key, &validation)
                    .map_err(|e| AuthError::from_jwt(&e))?;
                principal(data.claims)
            }
            (alg, _, _) => Err(AuthError::Invalid(format!(
                "{alg:?} tokens are not accepted here (accepted: {})",
                self.accepted()
            ))),
        }
    }

    /// Verifies an `Authorization` header value (`Bearer <JWT>`).
    ///
    /// # Errors
    /// As [`TokenVerifier::verify`], plus a missing or malformed header.
    pub async fn verify_header(&self, header: Option<&str>) -> Result<Principal, AuthError> {
        self.verify(bearer_token(header)?).await
    }

    fn accepted(&self) -> String {
        let mut accepted = Vec::new();
        if self.hs256.is_some() {
            accepted.push("HS256");
        }
        if self.jwks.is_some() {
            accepted.extend(["RS256", "ES256"]);
        }
        accepted.join(", ")
    }
}

/// Issues tokens (the launcher's demo token, tests, internal tooling).
#[derive(Clone)]
pub struct JwtIssuer {
    key: EncodingKey,
}

impl JwtIssuer {
    pub fn new(secret: &Secret) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.expose().as_bytes()),
        }
    }

    /// A token for `subject` with `role`, valid for `ttl`.
    pub fn issue(&self, subject: &str, role: Role, ttl: std::time::Duration) -> String {
        let exp =
            chrono::Utc::now().timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
        let claims = Claims {
            sub: subject.to_owned(),
            exp,
            role,
        };
        encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .expect("HS256 encoding cannot fail")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pair(secret: &str) -> (JwtIssuer, JwtVerifier) {
        let s = Secret::new(secret);
        (JwtIssuer::new(&s), JwtVerifier::new(&s))
    }

    #[test]
    fn user_tokens_carry_their_user_id() {
        let (issuer, verifier) = pair("s3cret");
        let token = issuer.issue("42", Role::User, Duration::from_secs(60));
        let p = verifier
            .verify_header(Some(&format!("Bearer {token}")))
            .unwrap();
        assert_eq!(p.user_id(), Some(UserId::parse(42).unwrap()));
        assert!(p.may_act_for(UserId::parse(42).unwrap()));
        assert!(!p.may_act_for(UserId::parse(43).unwrap()));
    }

    #[test]
    fn secrets_must_be_set_and_long_enough() {
        assert_eq!(jwt_secret(None), Err(SecretError::Missing));
        assert_eq!(
            jwt_secret(Some("fifteen-chars!!".into())),
            Err(SecretError::TooShort(15))
        );
        let ok = jwt_secret(Some("sixteen-chars!!!".into())).unwrap();
        assert_eq!(ok.expose(), "sixteen-chars!!!");
        assert!(SecretError::TooShort(3).to_string().contains("at least 16"));
    }

    #[test]
    fn service_tokens_act_for_anyone() {
        let (issuer, verifier) = pair("s3cret");
        let p = verifier
            .verify(&issuer.issue("billing", Role::Service, Duration::from_secs(60)))
            .unwrap();
        assert_eq!(p.role, Role::Service);
        assert!(p.may_act_for(UserId::parse(7).unwrap()));
    }

    #[test]
    fn bad_tokens_are_rejected_with_a_reason() {
        let (issuer, verifier) = pair("s3cret");
        let (other, _) = pair("another");
        assert_eq!(verifier.verify_header(None), Err(AuthError::Missing));
        assert_eq!(
            verifier.verify_header(Some("Basic abc")),
            Err(AuthError::Malformed)
        );
        let forged = other.issue("42", Role::User, Duration::from_secs(60));
        assert!(matches!(
            verifier.verify(&forged),
            Err(AuthError::Invalid(_))
        ));
        let expired = {
            let claims = Claims {
                sub: "42".into(),
                exp: chrono::Utc::now().timestamp() - 3600,
                role: Role::User,
            };
            encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(b"s3cret"),
            )
            .unwrap()
        };
        assert_eq!(verifier.verify(&expired), Err(AuthError::Expired));
        let not_a_user = issuer.issue("alice", Role::User, Duration::from_secs(60));
        assert!(matches!(
            verifier.verify(&not_a_user),
            Err(AuthError::Invalid(_))
        ));
        assert!(!format!("{verifier:?}").contains("s3cret"));
    }
}
