//! [`AmountCents`]: an amount of money in minor units, within Stripe's
//! limits for its currency.

use std::fmt;

use super::currency::Currency;
use super::error::ValidationError;

/// The largest amount accepted: 8 digits of minor units (Stripe's own limit).
pub const MAX_AMOUNT_CENTS: i64 = 99_999_999;

/// An amount in minor units (Stripe's `unit_amount`): positive, at most 8
/// digits, at least the currency's Stripe minimum. The name is the seed's
/// field, `amount_cents`; for a zero-decimal currency such as jpy it holds
/// whole units ([`Currency::exponent`] 0), so 500 is JPY 500, not 5.00.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AmountCents(i64);

impl AmountCents {
    /// # Errors
    /// When `amount` is not positive, above [`MAX_AMOUNT_CENTS`] or below the
    /// currency's minimum.
    pub fn parse(amount: i64, currency: Currency) -> Result<Self, ValidationError> {
        let field = "amount_cents";
        if amount <= 0 {
            return Err(ValidationError::new(
                field,
                format!("must be greater than 0, got {amount}"),
            ));
        }
        if amount > MAX_AMOUNT_CENTS {
            return Err(ValidationError::new(
                field,
                format!("must have at most 8 digits (max {MAX_AMOUNT_CENTS}), got {amount}"),
            ));
        }
        let min = currency.minimum_amount();
        if amount < min {
            return Err(ValidationError::new(
                field,
                format!(
                    "must be at least {min} ({}, Stripe's minimum for {currency}), got {amount}",
                    currency.format_minor(min)
                ),
            ));
        }
        Ok(Self(amount))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

impl fmt::Display for AmountCents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::checkout_request::tests::{rejected_field, seed};

    #[test]
    fn amount_must_be_positive() {
        let (field, reason) = rejected_field(|e| e.amount_cents = 0);
        assert_eq!(field, "amount_cents");
        assert!(reason.contains("greater than 0"), "{reason}");
        assert_eq!(rejected_field(|e| e.amount_cents = -500).0, "amount_cents");
    }

    #[test]
    fn amount_has_at_most_eight_digits() {
        let mut e = seed();
        e.amount_cents = 99_999_999;
        assert!(e.validate().is_ok());
        let (field, reason) = rejected_field(|e| e.amount_cents = 100_000_000);
        assert_eq!(field, "amount_cents");
        assert!(reason.contains("8 digits"), "{reason}");
        assert_eq!(
            rejected_field(|e| e.amount_cents = i64::MAX).0,
            "amount_cents"
        );
    }

    #[test]
    fn amount_respects_the_currency_minimum() {
        for (currency, min) in [("eur", 50), ("usd", 50), ("gbp", 30)] {
            let cur = Currency::parse(currency).unwrap();
            assert_eq!(cur.minimum_amount(), min);
            assert!(AmountCents::parse(min, cur).is_ok());
            let err = AmountCents::parse(min - 1, cur).unwrap_err();
            assert_eq!(err.field, "amount_cents");
            assert!(err.reason.contains("minimum"), "{err}");
        }
        // 30 is fine for gbp, not for eur.
        let mut e = seed();
        e.currency = "gbp".into();
        e.amount_cents = 30;
        assert!(e.validate().is_ok());
        assert_eq!(rejected_field(|e| e.amount_cents = 30).0, "amount_cents");
    }
}
