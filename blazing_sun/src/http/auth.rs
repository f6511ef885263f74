//! [`AuthUser`]: the caller's user id from `Authorization: Bearer <JWT>`,
//! verified by the contract crate's `JwtVerifier` (HS256, `sub` = user id,
//! `exp` required). Missing or bad tokens are rejected with 401.

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
            .map_err(ApiError::Unauthorized)?;
        principal
            .user_id()
            .map(AuthUser)
            .ok_or(ApiError::Forbidden("this API needs a user token"))
    }
}
