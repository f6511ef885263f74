//! Bearer tokens for tests: one HS256 secret the services under test are
//! configured with ([`JWT_SECRET`]), and tokens signed with it.

use std::time::Duration;

use checkout_contract::auth::{JwtIssuer, Role};
use checkout_contract::secret::Secret;

/// The secret tests configure the gateway and blazing_sun with (at least
/// 16 characters, as the gateway requires).
pub const JWT_SECRET: &str = "testkit-jwt-secret-0123456789";

/// [`JWT_SECRET`], wrapped as the configs take it.
pub fn jwt_secret() -> Secret {
    Secret::new(JWT_SECRET)
}

/// A token for `subject` with `role`, valid for ten minutes.
pub fn token(subject: &str, role: Role) -> String {
    JwtIssuer::new(&jwt_secret()).issue(subject, role, Duration::from_secs(600))
}

/// A user's token: it may act on `user_id`'s checkouts only.
pub fn user_token(user_id: i64) -> String {
    token(&user_id.to_string(), Role::User)
}
