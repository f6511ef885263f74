//! Validated checkout values and the one place validation happens.
//!
//! Each type is built by a `parse` that either returns a value that is valid
//! by construction or a [`ValidationError`] naming the field and the reason.
//! [`CheckoutRequestEvent::validate`] runs them all; the gateway, the checkout
//! worker and blazing_sun's balance controller all call it.

use std::fmt;

use chrono::{DateTime, Utc};
use url::Url;
use uuid::Uuid;

use crate::events::CheckoutRequestEvent;

pub const DEFAULT_CURRENCY: &str = "eur";
pub const DEFAULT_PURPOSE: &str = "balance_topup";

/// The largest amount accepted: 8 digits of minor units (Stripe's own limit).
pub const MAX_AMOUNT_CENTS: i64 = 99_999_999;

/// Longest accepted redirect URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

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

/// A rejected input value: which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValidationError {
    pub field: &'static str,
    pub reason: String,
}

impl ValidationError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

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

/// An absolute `http` or `https` URL of at most [`MAX_URL_BYTES`] bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RedirectUrl(Url);

impl RedirectUrl {
    /// # Errors
    /// When `url` is too long, not absolute, not http(s) or has no host.
    pub fn parse(field: &'static str, url: &str) -> Result<Self, ValidationError> {
        if url.len() > MAX_URL_BYTES {
            return Err(ValidationError::new(
                field,
                format!("must be at most {MAX_URL_BYTES} bytes, got {}", url.len()),
            ));
        }
        let parsed = Url::parse(url).map_err(|e| {
            ValidationError::new(
                field,
                format!(
                    "must be an absolute http(s) URL ({e}), got {:?}",
                    truncate(url)
                ),
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.host_str().is_none_or(str::is_empty)
        {
            return Err(ValidationError::new(
                field,
                format!(
                    "must be an absolute http(s) URL with a host, got {:?}",
                    truncate(url)
                ),
            ));
        }
        Ok(Self(parsed))
    }

    /// The URL as given, normalised by the URL parser.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The host, for allowlists.
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }
}

impl fmt::Display for RedirectUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The environment variable every service reads its redirect allowlist from.
pub const REDIRECT_HOSTS_VAR: &str = "CHECKOUT_REDIRECT_HOSTS";

/// The allowlist when [`REDIRECT_HOSTS_VAR`] is unset: loopback and the
/// names reserved for documentation and tests (RFC 2606), which nobody can
/// own, so local runs work and production must name its own hosts.
pub const DEFAULT_REDIRECT_HOSTS: &[&str] = &[
    "localhost",
    "127.0.0.1",
    "[::1]",
    "example.com",
    "*.example.com",
    "*.example",
];

/// The hosts `success_url` and `cancel_url` may point at, so nobody can use
/// our Stripe sessions as an open redirect. An entry is an exact host
/// (`shop.example.com`) or a wildcard for subdomains (`*.example.com`, which
/// matches `a.example.com` and `a.b.example.com` but not `example.com`).
/// Matching ignores ASCII case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAllowlist {
    exact: Vec<String>,
    suffixes: Vec<String>,
}

impl HostAllowlist {
    /// # Errors
    /// When there is no entry, or an entry is empty, contains characters a
    /// host cannot have, or uses `*` anywhere but as a leading `*.` label;
    /// the message names the entry.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, String> {
        let mut list = Self {
            exact: Vec::new(),
            suffixes: Vec::new(),
        };
        for entry in entries {
            let entry = entry.as_ref().trim().to_ascii_lowercase();
            let (wild, host) = match entry.strip_prefix("*.") {
                Some(rest) => (true, rest.to_owned()),
                None => (false, entry.clone()),
            };
            let valid = !host.is_empty()
                && host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
            if !valid {
                return Err(format!(
                    "{entry:?} is not a host or *.domain (allowed: letters, digits, '-', '.', IPv6 in [brackets])"
                ));
            }
            if wild {
                list.suffixes.push(format!(".{host}"));
            } else {
                list.exact.push(host);
            }
        }
        if list.exact.is_empty() && list.suffixes.is_empty() {
            return Err("must name at least one host".into());
        }
        Ok(list)
    }

    /// [`DEFAULT_REDIRECT_HOSTS`].
    pub fn local_default() -> Self {
        Self::parse(DEFAULT_REDIRECT_HOSTS).expect("the default allowlist is valid")
    }

    /// Reads [`REDIRECT_HOSTS_VAR`] (comma-separated), defaulting to
    /// [`DEFAULT_REDIRECT_HOSTS`]; a bad entry is reported with the other
    /// configuration errors.
    pub fn from_env(env: &mut crate::env::EnvReader) -> Self {
        let entries = env.list(REDIRECT_HOSTS_VAR, DEFAULT_REDIRECT_HOSTS);
        Self::parse(&entries).unwrap_or_else(|e| {
            env.error(format!("{REDIRECT_HOSTS_VAR}: {e}"));
            Self::local_default()
        })
    }

    /// Whether `host` is allowed.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.to_ascii_lowercase();
        self.exact.contains(&host) || self.suffixes.iter().any(|s| host.ends_with(s.as_str()))
    }

    /// # Errors
    /// When the URL's host is not allowed; the error names `field`.
    pub fn check(&self, field: &'static str, url: &RedirectUrl) -> Result<(), ValidationError> {
        if self.allows(url.host()) {
            Ok(())
        } else {
            Err(ValidationError::new(
                field,
                format!(
                    "host {:?} is not in the redirect allowlist ({REDIRECT_HOSTS_VAR})",
                    truncate(url.host())
                ),
            ))
        }
    }

    /// # Errors
    /// The first of `success_url` and `cancel_url` whose host is not allowed.
    pub fn check_request(&self, request: &ValidCheckoutRequest) -> Result<(), ValidationError> {
        self.check("success_url", &request.success_url)?;
        self.check("cancel_url", &request.cancel_url)
    }
}

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

/// At most 64 characters of `s`, for error messages that echo input.
fn truncate(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> CheckoutRequestEvent {
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
    fn rejected_field(change: impl FnOnce(&mut CheckoutRequestEvent)) -> (&'static str, String) {
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

    #[test]
    fn user_id_must_be_positive() {
        assert!(UserId::parse(1).is_ok());
        assert_eq!(rejected_field(|e| e.user_id = 0).0, "user_id");
        assert_eq!(rejected_field(|e| e.user_id = -5).0, "user_id");
    }

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

    #[test]
    fn purpose_is_a_short_identifier() {
        assert!(Purpose::parse("gift_card").is_ok());
        assert_eq!(rejected_field(|e| e.purpose = "".into()).0, "purpose");
        assert_eq!(
            rejected_field(|e| e.purpose = "Top Up!".into()).0,
            "purpose"
        );
    }

    #[test]
    fn urls_must_be_absolute_http_and_short() {
        assert!(RedirectUrl::parse("success_url", "http://localhost:8080/ok").is_ok());
        let (field, reason) = rejected_field(|e| e.success_url = "/balance".into());
        assert_eq!(field, "success_url");
        assert!(reason.contains("absolute"), "{reason}");
        assert_eq!(
            rejected_field(|e| e.cancel_url = "javascript:alert(1)".into()).0,
            "cancel_url"
        );
        assert_eq!(
            rejected_field(|e| e.cancel_url = "ftp://example.com/x".into()).0,
            "cancel_url"
        );
        let long = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES));
        let (field, reason) = rejected_field(|e| e.success_url = long);
        assert_eq!(field, "success_url");
        assert!(reason.contains("2048"), "{reason}");
        let exactly = format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES - 20));
        assert_eq!(exactly.len(), MAX_URL_BYTES);
        assert!(RedirectUrl::parse("success_url", &exactly).is_ok());
    }

    #[test]
    fn redirect_hosts_must_be_allowed() {
        let list =
            HostAllowlist::parse(&["shop.example.com", "*.pay.example.org", "127.0.0.1"]).unwrap();
        let url = |u: &str| RedirectUrl::parse("success_url", u).unwrap();
        for ok in [
            "https://shop.example.com/ok",
            "https://SHOP.Example.com/ok",
            "https://a.pay.example.org/x",
            "https://a.b.pay.example.org/x",
            "http://127.0.0.1:8080/?checkout=success",
        ] {
            assert!(list.check("success_url", &url(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "https://evil.example/ok",
            "https://pay.example.org/x",
            "https://shop.example.com.evil.example/x",
            "https://evilshop.example.com/x",
            "https://xpay.example.org/x",
            "https://shop.example.com@evil.example/x",
        ] {
            let err = list.check("cancel_url", &url(bad)).unwrap_err();
            assert_eq!(err.field, "cancel_url", "{bad}");
            assert!(err.reason.contains("allowlist"), "{err}");
        }
        let mut e = seed();
        e.cancel_url = "https://evil.example/x".into();
        let err = list.check_request(&e.validate().unwrap()).unwrap_err();
        assert_eq!(
            err.field, "success_url",
            "example.com itself is not listed: {err}"
        );
    }

    #[test]
    fn allowlist_entries_are_checked_and_the_default_covers_local_runs() {
        assert!(HostAllowlist::parse::<&str>(&[]).is_err());
        assert!(HostAllowlist::parse(&["*"]).is_err());
        assert!(HostAllowlist::parse(&["a.*.com"]).is_err());
        assert!(HostAllowlist::parse(&["https://x.com"]).is_err());
        let d = HostAllowlist::local_default();
        assert!(d.check_request(&seed().validate().unwrap()).is_ok());
        for host in ["localhost", "127.0.0.1", "[::1]", "shop.example"] {
            assert!(d.allows(host), "{host}");
        }
        assert!(!d.allows("attacker.com"));
        let var = || REDIRECT_HOSTS_VAR.to_owned();
        let mut env = crate::env::EnvReader::from_map([(var(), "a.com, *.b.com".to_owned())]);
        let list = HostAllowlist::from_env(&mut env);
        assert!(list.allows("a.com") && list.allows("x.b.com") && !list.allows("localhost"));
        let mut env = crate::env::EnvReader::from_map([(var(), "a.com,*".to_owned())]);
        let _ = HostAllowlist::from_env(&mut env);
        assert!(
            env.finish()
                .unwrap_err()
                .to_string()
                .contains(REDIRECT_HOSTS_VAR)
        );
    }

    #[test]
    fn error_messages_do_not_echo_unbounded_input() {
        let (_, reason) = rejected_field(|e| e.request_id = "x".repeat(10_000));
        assert!(reason.len() < 200, "{}", reason.len());
    }
}
