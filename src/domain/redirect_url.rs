//! [`RedirectUrl`]: where Stripe sends the payer back (`success_url`,
//! `cancel_url`); which hosts are allowed is `redirect_hosts.rs`.

use std::fmt;

use url::Url;

use super::error::{ValidationError, truncate};

/// Longest accepted redirect URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::checkout_request::tests::rejected_field;

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
}
