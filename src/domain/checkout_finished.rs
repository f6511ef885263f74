//! [`CheckoutFinishedEvent::validate`]: the one place a `checkout.finished`
//! event's shape is checked, with the types of the neighbouring files
//! (blazing_sun dead-letters what it rejects).

use super::{
    Currency, MAX_AMOUNT_CENTS, MAX_URL_BYTES, Purpose, RequestId, UserId, ValidationError,
};
use crate::events::{CheckoutFinishedEvent, CheckoutStatus};

/// Longest id (request, session, payment intent) a finished event may carry, in bytes.
pub const MAX_ID_BYTES: usize = 255;

impl CheckoutFinishedEvent {
    /// Checks that the event can be stored and, unless it is `failed`, that
    /// it describes a real checkout (UUID request_id, positive user,
    /// supported currency, valid purpose, amount 1 to [`MAX_AMOUNT_CENTS`]).
    ///
    /// `failed` is taken as it comes beyond its bounds: the checkout worker
    /// reports an invalid request with a `failed` event that repeats the
    /// invalid values.
    ///
    /// # Errors
    /// The first field that is not valid, with the reason.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.validate_bounds()?;
        if self.status == CheckoutStatus::Failed {
            return Ok(());
        }
        RequestId::parse(&self.request_id)?;
        UserId::parse(self.user_id)?;
        Currency::parse(&self.currency)?;
        Purpose::parse(&self.purpose)?;
        if !(1..=MAX_AMOUNT_CENTS).contains(&self.amount_cents) {
            return Err(ValidationError::new(
                "amount_cents",
                format!("must be 1-{MAX_AMOUNT_CENTS}, got {}", self.amount_cents),
            ));
        }
        Ok(())
    }

    /// The limits every status must respect: ids and the session URL fit
    /// their columns, and no text holds a NUL (PostgreSQL text cannot).
    fn validate_bounds(&self) -> Result<(), ValidationError> {
        if self.request_id.is_empty() || self.request_id.len() > MAX_ID_BYTES {
            return Err(ValidationError::new(
                "request_id",
                format!("must be 1-{MAX_ID_BYTES} bytes"),
            ));
        }
        for (field, value) in [
            ("session_id", &self.session_id),
            ("payment_intent_id", &self.payment_intent_id),
        ] {
            if value.as_ref().is_some_and(|v| v.len() > MAX_ID_BYTES) {
                return Err(ValidationError::new(
                    field,
                    format!("longer than {MAX_ID_BYTES} bytes"),
                ));
            }
        }
        let texts = [
            ("request_id", Some(&self.request_id)),
            ("currency", Some(&self.currency)),
            ("purpose", Some(&self.purpose)),
            ("session_id", self.session_id.as_ref()),
            ("session_url", self.session_url.as_ref()),
            ("payment_intent_id", self.payment_intent_id.as_ref()),
            ("error_message", self.error_message.as_ref()),
        ];
        if let Some((field, _)) = texts
            .iter()
            .find(|(_, text)| text.is_some_and(|s| s.contains('\0')))
        {
            return Err(ValidationError::new(field, "contains a NUL character"));
        }
        if self
            .session_url
            .as_ref()
            .is_some_and(|u| u.len() > MAX_URL_BYTES)
        {
            return Err(ValidationError::new(
                "session_url",
                format!("longer than {MAX_URL_BYTES} bytes"),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> CheckoutFinishedEvent {
        CheckoutFinishedEvent {
            request_id: "550e8400-e29b-41d4-a716-446655440000".into(),
            user_id: 123,
            amount_cents: 500,
            currency: "eur".into(),
            purpose: "balance_topup".into(),
            status: CheckoutStatus::Success,
            session_id: Some("cs_test_abc123".into()),
            session_url: None,
            payment_intent_id: Some("pi_test_xyz789".into()),
            error_message: None,
            timestamp: crate::events::iso8601::parse("2024-01-15T10:35:00Z").unwrap(),
        }
    }

    /// A change to the seed event.
    type Change = fn(&mut CheckoutFinishedEvent);

    /// Applies `change` to the seed event and returns the rejection.
    fn rejected(change: impl FnOnce(&mut CheckoutFinishedEvent)) -> ValidationError {
        let mut e = seed();
        change(&mut e);
        e.validate().expect_err("should be rejected")
    }

    #[test]
    fn the_seed_event_is_valid_in_every_status() {
        for status in [
            CheckoutStatus::SessionCreated,
            CheckoutStatus::Success,
            CheckoutStatus::Failed,
        ] {
            let mut e = seed();
            e.status = status;
            assert_eq!(e.validate(), Ok(()), "{status}");
        }
    }

    #[test]
    fn a_success_must_describe_a_real_checkout() {
        let cases: [(&str, Change); 6] = [
            ("request_id", |e| e.request_id = "x".into()),
            ("user_id", |e| e.user_id = -1),
            ("currency", |e| e.currency = "xyz".into()),
            ("purpose", |e| e.purpose = "Top Up".into()),
            ("amount_cents", |e| e.amount_cents = 0),
            ("amount_cents", |e| e.amount_cents = MAX_AMOUNT_CENTS + 1),
        ];
        for (field, change) in cases {
            let err = rejected(change);
            assert_eq!(err.field, field, "{err}");
            let err = rejected(|e| {
                e.status = CheckoutStatus::SessionCreated;
                change(e);
            });
            assert_eq!(err.field, field, "{err}");
        }
        assert_eq!(
            rejected(|e| e.amount_cents = 0).to_string(),
            format!("amount_cents: must be 1-{MAX_AMOUNT_CENTS}, got 0")
        );
    }

    #[test]
    fn below_the_currency_minimum_is_still_a_real_amount() {
        let mut e = seed();
        e.amount_cents = 1;
        assert_eq!(e.validate(), Ok(()));
    }

    #[test]
    fn a_failed_event_repeats_invalid_values_as_they_came() {
        let mut e = seed();
        e.status = CheckoutStatus::Failed;
        e.request_id = "order-17".into();
        e.user_id = 0;
        e.amount_cents = -500;
        e.currency = "xyz".into();
        e.purpose = "Top Up".into();
        e.error_message = Some("x".repeat(5000));
        assert_eq!(e.validate(), Ok(()));
    }

    #[test]
    fn every_status_must_fit_its_bounds() {
        fn long() -> String {
            "x".repeat(MAX_ID_BYTES + 1)
        }
        let cases: [(&str, Change); 5] = [
            ("request_id", |e| e.request_id = String::new()),
            ("request_id", |e| e.request_id = long()),
            ("session_id", |e| e.session_id = Some(long())),
            ("payment_intent_id", |e| e.payment_intent_id = Some(long())),
            ("session_url", |e| {
                e.session_url = Some(format!("https://x/{}", "a".repeat(MAX_URL_BYTES)));
            }),
        ];
        for status in [CheckoutStatus::Success, CheckoutStatus::Failed] {
            for (field, change) in cases {
                let err = rejected(|e| {
                    e.status = status;
                    change(e);
                });
                assert_eq!(err.field, field, "{status}: {err}");
            }
        }
        let mut e = seed();
        e.session_id = Some("x".repeat(MAX_ID_BYTES));
        assert_eq!(e.validate(), Ok(()));
    }

    #[test]
    fn a_nul_in_any_text_is_rejected_naming_the_field() {
        let err = rejected(|e| e.session_id = Some("cs_\0".into()));
        assert_eq!(err.to_string(), "session_id: contains a NUL character");
        let err = rejected(|e| {
            e.status = CheckoutStatus::Failed;
            e.error_message = Some("boom\0".into());
        });
        assert_eq!(err.field, "error_message");
    }
}
