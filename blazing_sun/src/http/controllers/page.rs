//! The balance page (`GET /`) and its script (`GET /assets/topup.js`).
//!
//! Both are embedded in the binary: `assets/index.html` (plain HTML + CSS)
//! and `assets/topup.js`, the bundle `scripts/build-web.sh` builds from
//! `web/` (a gRPC-Web client of `checkout.v1.CheckoutGateway` generated from
//! `proto/`). The bundle is committed, so building this crate needs no node;
//! a test checks it matches its sources. The page learns the gateway's URL
//! from a `<meta>` tag filled in here from `BLAZING_SUN_GATEWAY_URL`.

use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

use crate::http::AppState;

/// The page, with `{{GATEWAY_URL}}` where the gateway's URL goes.
pub const INDEX_HTML: &str = include_str!("../../../assets/index.html");
/// The bundled script (see `scripts/build-web.sh`).
pub const TOPUP_JS: &str = include_str!("../../../assets/topup.js");

pub async fn index(State(state): State<AppState>) -> Response {
    let html = INDEX_HTML.replace("{{GATEWAY_URL}}", &escape_attribute(&state.gateway_url));
    (
        // The token lives in the URL fragment or sessionStorage, never in a cache.
        [(header::CACHE_CONTROL, "no-store")],
        Html(html),
    )
        .into_response()
}

pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        TOPUP_JS,
    )
        .into_response()
}

fn escape_attribute(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_is_accessible_plain_html_with_the_gateway_slot() {
        for needle in [
            r#"<html lang="en">"#,
            r#"<meta name="gateway-url" content="{{GATEWAY_URL}}">"#,
            r#"<label for="amount">"#,
            r#"<button id="topup" type="submit">Top up</button>"#,
            r#"role="status" aria-live="polite""#,
            r#"<script type="module" src="/assets/topup.js">"#,
        ] {
            assert!(INDEX_HTML.contains(needle), "index.html lacks {needle}");
        }
        assert!(TOPUP_JS.starts_with("/* blazing_sun balance page"));
    }

    #[test]
    fn the_gateway_url_cannot_break_out_of_its_attribute() {
        assert_eq!(
            escape_attribute(r#"http://x/"><script>&"#),
            "http://x/&quot;&gt;&lt;script&gt;&amp;"
        );
    }
}
