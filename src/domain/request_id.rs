//! [`RequestId`]: a checkout's correlation id, parsed from the wire or
//! derived from an idempotency key.

use std::fmt;

use uuid::Uuid;

use super::error::{ValidationError, truncate};

/// A checkout's correlation id: a UUID, always printed lowercase hyphenated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RequestId(Uuid);

impl RequestId {
    /// A fresh random id.
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }

    /// The same id for the same `(caller, key)`, on every replica and after
    /// every restart (UUIDv5), so idempotent retries need no shared state.
    pub fn derive(caller: &str, key: &str) -> Self {
        const NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_2a8e_3b5c_4d7e_9f10_1a2b_3c4d_5e6f);
        let name = format!("{}:{caller}:{key}", caller.len());
        Self(Uuid::new_v5(&NAMESPACE, name.as_bytes()))
    }

    /// # Errors
    /// When `s` is not a UUID.
    pub fn parse(s: &str) -> Result<Self, ValidationError> {
        Uuid::try_parse(s).map(Self).map_err(|_| {
            ValidationError::new(
                "request_id",
                format!("must be a UUID, got {:?}", truncate(s)),
            )
        })
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::checkout_request::tests::rejected_field;

    #[test]
    fn request_id_must_be_a_uuid() {
        assert!(RequestId::parse("550e8400-e29b-41d4-a716-446655440000").is_ok());
        let (field, reason) = rejected_field(|e| e.request_id = "order-17".into());
        assert_eq!(field, "request_id");
        assert!(reason.contains("UUID"), "{reason}");
    }

    #[test]
    fn request_id_derivation_is_deterministic_and_separates_callers() {
        assert_eq!(
            RequestId::derive("svc-a", "k1"),
            RequestId::derive("svc-a", "k1")
        );
        assert_ne!(
            RequestId::derive("svc-a", "k1"),
            RequestId::derive("svc-b", "k1")
        );
        assert_ne!(RequestId::derive("a:b", "c"), RequestId::derive("a", "b:c"));
    }
}
