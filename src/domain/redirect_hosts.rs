//! [`HostAllowlist`]: the hosts a redirect URL may point at, read from
//! `CHECKOUT_REDIRECT_HOSTS` ([`REDIRECT_HOSTS_VAR`]).

use super::checkout_request::ValidCheckoutRequest;
use super::error::{ValidationError, truncate};
use super::redirect_url::RedirectUrl;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::checkout_request::tests::seed;

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
}
