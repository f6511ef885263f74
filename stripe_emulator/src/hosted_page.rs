//! The hosted payment page at each session's `url` (`/pay/{id}`): plain
//! HTML with Pay / Pay later (succeeds) / Pay later (fails) / Cancel
//! buttons. Paying redirects to `success_url`, Cancel to `cancel_url` (the
//! session stays open, as on Stripe), both with `{CHECKOUT_SESSION_ID}` filled in.

use std::sync::Arc;

use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;

use crate::session::{Outcome, Session, Status};
use crate::state::App;
use crate::webhook::event::Cause;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/pay/{id}", get(show).post(submit))
        .with_state(app)
}

async fn show(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    let Some(session) = app.session(&id) else {
        return (
            StatusCode::NOT_FOUND,
            Html(page("Not found", "<p>No such Checkout Session.</p>")),
        )
            .into_response();
    };
    if session.status != Status::Open {
        let body = format!(
            "<p>This Checkout Session is {}.</p>",
            escape(&format!("{:?}", session.status).to_lowercase())
        );
        return Html(page("Checkout", &body)).into_response();
    }
    let items: String = session
        .params
        .line_items
        .iter()
        .map(|l| {
            format!(
                "<li>{} &times; {} — {}</li>",
                l.quantity,
                escape(&l.product_name),
                escape(&amount(l.unit_amount, &l.currency))
            )
        })
        .collect();
    let body = format!(
        r#"<p>Session <code>{id}</code></p><ul>{items}</ul><p>Total: <strong id="total">{total}</strong></p>
<form method="post" action="/pay/{id}">
<button name="action" value="paid">Pay</button>
<button name="action" value="async_succeeded">Pay later (succeeds)</button>
<button name="action" value="async_failed">Pay later (fails)</button>
<button name="action" value="cancel">Cancel</button>
</form>"#,
        id = escape(&session.id),
        total = escape(&amount(session.amount_total(), &session.params.currency)),
    );
    Html(page("Checkout", &body)).into_response()
}

/// An amount in `currency`'s minor units as a payer reads it (`"12.34 EUR"`,
/// `"1,000 JPY"`: Stripe's `unit_amount` is whole yen), by the contract's
/// currency table; a currency Stripe takes but the table lacks shows its
/// minor units as they are.
pub fn amount(minor_units: i64, currency: &str) -> String {
    checkout_contract::Currency::parse(currency).map_or_else(
        |_| {
            format!(
                "{minor_units} {} (minor units)",
                currency.to_ascii_uppercase()
            )
        },
        |c| c.format_minor(minor_units),
    )
}

#[derive(Debug, Deserialize)]
struct Submit {
    action: String,
}

async fn submit(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
    Form(form): Form<Submit>,
) -> Response {
    let Some(session) = app.session(&id) else {
        return (
            StatusCode::NOT_FOUND,
            Html(page("Not found", "<p>No such Checkout Session.</p>")),
        )
            .into_response();
    };
    let outcome = match form.action.as_str() {
        "cancel" => return back_to(&session, session.params.cancel_url.as_deref()),
        "paid" => Outcome::Paid,
        "async_succeeded" => Outcome::AsyncSucceeded,
        "async_failed" => Outcome::AsyncFailed,
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                Html(page("Checkout", "<p>Unknown action.</p>")),
            )
                .into_response();
        }
    };
    match app.apply(&id, outcome, &Cause::default()) {
        Ok(_) => back_to(&session, Some(&session.params.success_url)),
        Err(e) => (
            StatusCode::CONFLICT,
            Html(page("Checkout", &format!("<p>{}</p>", escape(&e.message)))),
        )
            .into_response(),
    }
}

fn back_to(session: &Session, url: Option<&str>) -> Response {
    match url {
        Some(url) => Redirect::to(&session.redirect(url)).into_response(),
        None => Html(page(
            "Checkout",
            "<p>Payment cancelled. You can close this page.</p>",
        ))
        .into_response(),
    }
}

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t} — Stripe emulator</title></head>\
         <body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    )
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::amount;

    #[test]
    fn amounts_use_the_currency_exponent() {
        assert_eq!(amount(1234, "eur"), "12.34 EUR");
        assert_eq!(amount(1000, "jpy"), "1,000 JPY");
        assert_eq!(amount(700, "thb"), "700 THB (minor units)");
    }
}
