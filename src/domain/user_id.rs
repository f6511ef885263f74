//! [`UserId`]: whose balance a checkout tops up.

use std::fmt;

use super::error::ValidationError;

/// A user id: strictly positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(i64);

impl UserId {
    /// # Errors
    /// When `id` is zero or negative.
    pub fn parse(id: i64) -> Result<Self, ValidationError> {
        if id > 0 {
            Ok(Self(id))
        } else {
            Err(ValidationError::new(
                "user_id",
                format!("must be greater than 0, got {id}"),
            ))
        }
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::checkout_request::tests::rejected_field;

    #[test]
    fn user_id_must_be_positive() {
        assert!(UserId::parse(1).is_ok());
        assert_eq!(rejected_field(|e| e.user_id = 0).0, "user_id");
        assert_eq!(rejected_field(|e| e.user_id = -5).0, "user_id");
    }
}
