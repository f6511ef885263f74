//! [`AuthUser`]: the caller's user id from `Authorization: Bearer <JWT>`,
//! verified by the contract crate's `TokenVerifier` (HS256 with
//! `JWT_SECRET` and/or RS256/ES256 from an identity provider's JWKS; `sub` =
//! user id, `exp` required). Missing or bad tokens are rejected with 401;
//! 503 when the identity provider's keys cannot be fetched.

use axum::extract::FromRequestParts;
use checkout_contract::UserId;
use checkout_contract::auth::AuthError;
use http::header::AUTHORIZATION;
use http::request::Parts;

use super::AppState;
use super::error::ApiError;

/// An authenticated end user.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser(pub UserId);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = match parts.headers.get(AUTHORIZATION) {
            None => None,
            Some(value) => Some(
                value
                    .to_str()
                    .map_err(|_| ApiError::Unauthorized(AuthError::Malformed))?,
            ),
        };
        let principal = state
            .verifier
            .verify_header(header)
            .await
            .map_err(ApiError::Unauthorized)?;
        principal
            .user_id()
            .map(AuthUser)
            .ok_or(ApiError::Forbidden("this API needs a user token"))
    }
}
