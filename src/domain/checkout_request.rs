//! [`ValidCheckoutRequest`] and [`CheckoutRequestEvent::validate`]: the
//! one place a checkout request is validated, field by field with the
//! types of the neighbouring files.

use chrono::{DateTime, Utc};

use super::{AmountCents, Currency, Purpose, RedirectUrl, RequestId, UserId, ValidationError};
use crate::events::CheckoutRequestEvent;

/// A checkout request whose every field passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidCheckoutRequest {
    pub request_id: RequestId,
    pub user_id: UserId,
    pub amount_cents: AmountCents,
    pub currency: Currency,
    pub purpose: Purpose,
    pub timestamp: DateTime<Utc>,
    pub success_url: RedirectUrl,
    pub cancel_url: RedirectUrl,
}

impl CheckoutRequestEvent {
    /// Checks every field, in the seed's order, and returns typed values.
    ///
    /// # Errors
    /// The first field that is not valid, with the reason.
    pub fn validate(&self) -> Result<ValidCheckoutRequest, ValidationError> {
        let currency = Currency::parse(&self.currency)?;
        Ok(ValidCheckoutRequest {
            request_id: RequestId::parse(&self.request_id)?,
            user_id: UserId::parse(self.user_id)?,
            amount_cents: AmountCents::parse(self.amount_cents, currency)?,
            currency,
            purpose: Purpose::parse(&self.purpose)?,
            timestamp: self.timestamp,
            success_url: RedirectUrl::parse("success_url", &self.success_url)?,
            cancel_url: RedirectUrl::parse("cancel_url", &self.cancel_url)?,
        })
    }
}

impl ValidCheckoutRequest {
    /// The wire form. URLs keep the exact text they were validated from.
    pub fn to_event(&self, success_url: &str, cancel_url: &str) -> CheckoutRequestEvent {
        CheckoutRequestEvent {
            request_id: self.request_id.to_string(),
            user_id: self.user_id.get(),
            amount_cents: self.amount_cents.get(),
            currency: self.currency.code().to_owned(),
            purpose: self.purpose.as_str().to_owned(),
            timestamp: self.timestamp,
            success_url: success_url.to_owned(),
            cancel_url: cancel_url.to_owned(),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::domain) fn seed() -> CheckoutRequestEvent {
        CheckoutRequestEvent {
            request_id: "550e8400-e29b-41d4-a716-446655440000".into(),
            user_id: 123,
            amount_cents: 500,
            currency: "eur".into(),
            purpose: "balance_topup".into(),
            timestamp: crate::events::iso8601::parse("2024-01-15T10:30:00Z").unwrap(),
            success_url: "https://example.com/balance?status=success".into(),
            cancel_url: "https://example.com/balance?status=cancel".into(),
        }
    }

    /// Applies `change` to the seed request and returns the field named by the rejection.
    pub(in crate::domain) fn rejected_field(
        change: impl FnOnce(&mut CheckoutRequestEvent),
    ) -> (&'static str, String) {
        let mut e = seed();
        change(&mut e);
        let err = e.validate().expect_err("should be rejected");
        assert!(err.to_string().starts_with(err.field), "{err}");
        (err.field, err.reason)
    }

    #[test]
    fn the_seed_request_is_valid() {
        let v = seed().validate().unwrap();
        assert_eq!(
            v.request_id.to_string(),
            "550e8400-e29b-41d4-a716-446655440000"
        );
        assert_eq!(v.user_id.get(), 123);
        assert_eq!(v.amount_cents.get(), 500);
        assert_eq!(v.currency, Currency::EUR);
        assert!(v.purpose.is_balance_topup());
        assert_eq!(v.success_url.host(), "example.com");
        let back = v.to_event(&seed().success_url, &seed().cancel_url);
        assert_eq!(back, seed());
    }

    #[test]
    fn error_messages_do_not_echo_unbounded_input() {
        let (_, reason) = rejected_field(|e| e.request_id = "x".repeat(10_000));
        assert!(reason.len() < 200, "{}", reason.len());
    }
}
