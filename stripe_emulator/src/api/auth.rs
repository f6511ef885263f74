//! API keys the way Stripe takes them: `Authorization: Bearer sk_test_...`,
//! or HTTP Basic with the key as user name (`curl -u sk_test_...:`). Only
//! test-mode keys (`sk_test_`, `rk_test_`) are accepted, or exactly the
//! configured one.

use axum::http::HeaderMap;
use checkout_contract::secret::Secret;

use crate::error::ApiError;

/// The accepted key (the account the request is counted against).
///
/// # Errors
/// 401 with Stripe's message when the key is missing or not accepted.
pub fn authorize(expected: Option<&Secret>, headers: &HeaderMap) -> Result<String, ApiError> {
    let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(ApiError::unauthorized(
            "You did not provide an API key. You need to provide your API key in the Authorization header, \
             using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
        ));
    };
    let key = api_key(auth).unwrap_or_default();
    let accepted = match expected {
        Some(expected) => key == expected.expose(),
        None => (key.starts_with("sk_test_") || key.starts_with("rk_test_")) && key.len() > 8,
    };
    if accepted {
        return Ok(key);
    }
    let tail = key
        .get(key.len().saturating_sub(4)..)
        .filter(|_| key.len() > 8)
        .unwrap_or("");
    Err(ApiError::unauthorized(format!(
        "Invalid API Key provided: {}****{tail}",
        key.get(..8).filter(|_| key.len() > 8).unwrap_or("")
    )))
}

/// The key from a `Bearer` or `Basic` authorization value.
fn api_key(auth: &str) -> Option<String> {
    let (scheme, value) = auth.trim().split_once(' ')?;
    match scheme.to_ascii_lowercase().as_str() {
        "bearer" => Some(value.trim().to_owned()),
        "basic" => {
            let decoded = String::from_utf8(base64_decode(value.trim())?).ok()?;
            Some(
                decoded
                    .split_once(':')
                    .map_or(decoded.as_str(), |(user, _)| user)
                    .to_owned(),
            )
        }
        _ => None,
    }
}

/// Standard base64 with optional padding (no crate for eight lines).
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|&c| c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).expect("masked to a byte"));
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(auth: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("authorization", auth.parse().unwrap());
        h
    }

    #[test]
    fn bearer_and_basic_test_keys_pass_others_do_not() {
        assert_eq!(
            authorize(None, &headers("Bearer sk_test_abc")).unwrap(),
            "sk_test_abc"
        );
        // "sk_test_abc:" as curl -u sends it.
        assert!(authorize(None, &headers("Basic c2tfdGVzdF9hYmM6")).is_ok());
        assert!(authorize(None, &headers("Bearer sk_live_abc")).is_err());
        assert!(authorize(None, &headers("Bearer sk_test_")).is_err());
        assert!(authorize(None, &headers("Basic !!!")).is_err());
        assert!(authorize(None, &HeaderMap::new()).is_err());
        let only = Secret::new("sk_test_only");
        assert!(authorize(Some(&only), &headers("Bearer sk_test_abc")).is_err());
        assert!(authorize(Some(&only), &headers("Bearer sk_test_only")).is_ok());
    }
}
