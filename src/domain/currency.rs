//! [`Currency`]: the supported currencies, each with Stripe's minimum
//! charge and its number of decimals, and amounts formatted for people.

use std::fmt;

use super::error::{ValidationError, truncate};

pub const DEFAULT_CURRENCY: &str = "eur";

/// Supported currencies: `(code, minimum, exponent)`, the one table of them.
///
/// - `minimum`: Stripe's minimum charge, in minor units
///   (<https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts>).
/// - `exponent`: digits after the decimal point, so an amount in minor units
///   is `amount / 10^exponent` major units. Stripe's zero-decimal currencies
///   have 0 (<https://docs.stripe.com/currencies#zero-decimal>): JPY's
///   `unit_amount` and our `amount_cents` are whole yen.
const CURRENCIES: &[(&str, i64, u32)] = &[
    ("aud", 50, 2),
    ("cad", 50, 2),
    ("chf", 50, 2),
    ("czk", 1500, 2),
    ("dkk", 250, 2),
    ("eur", 50, 2),
    ("gbp", 30, 2),
    ("jpy", 50, 0),
    ("nok", 300, 2),
    ("nzd", 50, 2),
    ("pln", 200, 2),
    ("sek", 300, 2),
    ("usd", 50, 2),
];

/// A supported, lowercase ISO 4217 currency code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(&'static str);

impl Currency {
    pub const EUR: Currency = Currency("eur");

    /// # Errors
    /// When `code` is not a lowercase three-letter code from the supported list.
    pub fn parse(code: &str) -> Result<Self, ValidationError> {
        if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(ValidationError::new(
                "currency",
                format!(
                    "must be a lowercase ISO 4217 code like \"eur\", got {:?}",
                    truncate(code)
                ),
            ));
        }
        CURRENCIES
            .iter()
            .find(|(c, ..)| *c == code)
            .map(|(c, ..)| Self(c))
            .ok_or_else(|| {
                let supported: Vec<&str> = CURRENCIES.iter().map(|(c, ..)| *c).collect();
                ValidationError::new(
                    "currency",
                    format!(
                        "{code:?} is not supported (supported: {})",
                        supported.join(", ")
                    ),
                )
            })
    }

    pub fn code(self) -> &'static str {
        self.0
    }

    /// This currency's row of [`CURRENCIES`] (a `Currency` is only built from one).
    fn row(self) -> (i64, u32) {
        CURRENCIES
            .iter()
            .find(|(c, ..)| *c == self.0)
            .map_or((50, 2), |(_, minimum, exponent)| (*minimum, *exponent))
    }

    /// Stripe's minimum charge in this currency, in minor units.
    pub fn minimum_amount(self) -> i64 {
        self.row().0
    }

    /// Digits after the decimal point: 2 for eur, 0 for jpy (a zero-decimal
    /// currency, whose minor unit is the whole yen).
    pub fn exponent(self) -> u32 {
        self.row().1
    }

    /// `amount` in minor units as people read it: `"1,234.50 EUR"`,
    /// `"1,000 JPY"` (thousands grouped with commas, the code in capitals).
    pub fn format_minor(self, amount: i64) -> String {
        let scale = 10_u64.pow(self.exponent());
        let magnitude = amount.unsigned_abs();
        let (units, fraction) = (magnitude / scale, magnitude % scale);
        let digits = units.to_string();
        let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, digit) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(digit);
        }
        let sign = if amount < 0 { "-" } else { "" };
        let code = self.0.to_ascii_uppercase();
        match self.exponent() {
            0 => format!("{sign}{grouped} {code}"),
            e => format!(
                "{sign}{grouped}.{fraction:0width$} {code}",
                width = e as usize
            ),
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::AmountCents;
    use crate::domain::checkout_request::tests::rejected_field;

    #[test]
    fn amounts_are_shown_with_the_currency_exponent() {
        let eur = Currency::EUR;
        let jpy = Currency::parse("jpy").unwrap();
        assert_eq!((eur.exponent(), jpy.exponent()), (2, 0));
        assert_eq!(eur.format_minor(500), "5.00 EUR");
        assert_eq!(eur.format_minor(1), "0.01 EUR");
        assert_eq!(eur.format_minor(123_456_789), "1,234,567.89 EUR");
        assert_eq!(eur.format_minor(-1050), "-10.50 EUR");
        assert_eq!(jpy.format_minor(500), "500 JPY");
        assert_eq!(jpy.format_minor(1000), "1,000 JPY");
        assert_eq!(jpy.format_minor(99_999_999), "99,999,999 JPY");
        assert_eq!(jpy.format_minor(0), "0 JPY");
        // Stripe's zero-decimal currencies among ours: only jpy.
        for (code, _, exponent) in CURRENCIES {
            assert_eq!(*exponent == 0, *code == "jpy", "{code}");
        }
        let err = AmountCents::parse(49, jpy).unwrap_err();
        assert!(err.reason.contains("50 (50 JPY"), "{err}");
    }

    #[test]
    fn currency_must_be_a_supported_lowercase_code() {
        assert!(Currency::parse("usd").is_ok());
        let (field, reason) = rejected_field(|e| e.currency = "EUR".into());
        assert_eq!(field, "currency");
        assert!(reason.contains("lowercase"), "{reason}");
        let (field, reason) = rejected_field(|e| e.currency = "xyz".into());
        assert_eq!(field, "currency");
        assert!(reason.contains("not supported"), "{reason}");
        assert_eq!(rejected_field(|e| e.currency = "".into()).0, "currency");
    }
}
