//! [`Purpose`]: what a checkout is for (`balance_topup` is the one that is credited).

use std::fmt;

use super::error::{ValidationError, truncate};

pub const DEFAULT_PURPOSE: &str = "balance_topup";

/// What the checkout is for: 1 to 64 characters of `[a-z0-9_]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Purpose(String);

impl Purpose {
    pub fn balance_topup() -> Self {
        Self(DEFAULT_PURPOSE.to_owned())
    }

    /// # Errors
    /// When `purpose` is empty, too long or has characters outside `[a-z0-9_]`.
    pub fn parse(purpose: &str) -> Result<Self, ValidationError> {
        let ok = !purpose.is_empty()
            && purpose.len() <= 64
            && purpose
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if ok {
            Ok(Self(purpose.to_owned()))
        } else {
            Err(ValidationError::new(
                "purpose",
                format!(
                    "must be 1-64 characters of a-z, 0-9 and _, got {:?}",
                    truncate(purpose)
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_balance_topup(&self) -> bool {
        self.0 == DEFAULT_PURPOSE
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::checkout_request::tests::rejected_field;

    #[test]
    fn purpose_is_a_short_identifier() {
        assert!(Purpose::parse("gift_card").is_ok());
        assert_eq!(rejected_field(|e| e.purpose = "".into()).0, "purpose");
        assert_eq!(
            rejected_field(|e| e.purpose = "Top Up!".into()).0,
            "purpose"
        );
    }
}
