//! Validation of `POST /v1/checkout/sessions` parameters the way Stripe
//! answers them: 400 `invalid_request_error` whose `param` names the exact
//! bracketed field (`line_items[0][price_data][unit_amount]`). Only
//! `mode=payment` with inline `price_data` line items is emulated. Malformed
//! or missing parameters are refused before the endpoint runs (not saved
//! under an idempotency key); business rules (amount limits, one currency,
//! `expires_at` range, unknown price or product) are the endpoint's answer
//! ([`ApiError::during_execution`], saved), as with Stripe.

use std::collections::BTreeMap;

use crate::config::is_http_url;
use crate::error::ApiError;
use crate::form::Node;
use crate::session::{LineItem, NewSession};

/// The largest amount Stripe accepts: 8 digits of minor units.
pub const MAX_AMOUNT: i64 = 99_999_999;

/// Stripe's longest accepted URL.
const MAX_URL_LEN: usize = 5000;

/// Currencies the emulator accepts, with Stripe's minimum charge in minor units
/// (<https://docs.stripe.com/currencies#minimum-and-maximum-charge-amounts>).
const CURRENCIES: &[(&str, i64)] = &[
    ("aed", 200),
    ("aud", 50),
    ("bgn", 100),
    ("brl", 50),
    ("cad", 50),
    ("chf", 50),
    ("czk", 1500),
    ("dkk", 250),
    ("eur", 50),
    ("gbp", 30),
    ("hkd", 400),
    ("huf", 17500),
    ("inr", 50),
    ("jpy", 50),
    ("mxn", 1000),
    ("myr", 200),
    ("nok", 300),
    ("nzd", 50),
    ("pln", 200),
    ("ron", 200),
    ("sek", 300),
    ("sgd", 50),
    ("thb", 1000),
    ("usd", 50),
];

/// Stripe's minimum charge for `currency`, if it is supported.
pub fn minimum_amount(currency: &str) -> Option<i64> {
    CURRENCIES
        .iter()
        .find(|(c, _)| *c == currency)
        .map(|(_, m)| *m)
}

/// Checks the parameter tree of a create request.
///
/// # Errors
/// The first problem, as Stripe reports it.
pub fn parse(tree: &Node) -> Result<NewSession, ApiError> {
    let str_param = |name: &str| tree.get(name).and_then(Node::as_str).map(str::to_owned);

    mode(tree)?;
    let success_url = str_param("success_url").ok_or_else(|| ApiError::missing("success_url"))?;
    check_url("success_url", &success_url)?;
    let cancel_url = str_param("cancel_url");
    if let Some(u) = &cancel_url {
        check_url("cancel_url", u)?;
    }
    let client_reference_id = str_param("client_reference_id");
    if let Some(c) = &client_reference_id {
        check_client_reference_id(c)?;
    }
    let metadata = metadata(tree)?;
    let line_items = line_items(tree)?;
    let currency = check_total(&line_items)?;
    let allowed_payment_method_types = string_list(tree, "allowed_payment_method_types");
    let payment_method_types = payment_method_types(tree, allowed_payment_method_types.as_deref())?;
    let expires_at = str_param("expires_at")
        .map(|raw| expires_at(&raw))
        .transpose()?;

    Ok(NewSession {
        success_url,
        cancel_url,
        client_reference_id,
        customer_email: str_param("customer_email"),
        metadata,
        line_items,
        currency,
        allowed_payment_method_types,
        payment_method_types,
        expires_at,
    })
}

/// Only `mode=payment` is emulated; the other modes Stripe knows get a
/// message saying so.
fn mode(tree: &Node) -> Result<(), ApiError> {
    match tree.get("mode").map(|m| m.as_str()) {
        None => Err(ApiError::missing("mode")),
        Some(Some("payment")) => Ok(()),
        Some(Some(m @ ("setup" | "subscription"))) => Err(ApiError::invalid(
            None,
            format!("The Stripe emulator only supports mode=payment, not {m:?}."),
            "mode",
        )),
        Some(other) => Err(ApiError::invalid(
            None,
            format!(
                "Invalid mode: must be one of payment, setup, or subscription (got {:?}).",
                other.unwrap_or("an object")
            ),
            "mode",
        )),
    }
}

fn check_client_reference_id(id: &str) -> Result<(), ApiError> {
    if id.is_empty() || id.len() > 200 {
        return Err(ApiError::invalid(
            None,
            "client_reference_id must be 1 to 200 characters.",
            "client_reference_id",
        ));
    }
    Ok(())
}

/// The line items' one currency, once their total is within the limits
/// Stripe sets for it.
fn check_total(line_items: &[LineItem]) -> Result<String, ApiError> {
    let currency = line_items[0].currency.clone();
    if let Some((i, _)) = line_items
        .iter()
        .enumerate()
        .find(|(_, l)| l.currency != currency)
    {
        return Err(ApiError::invalid(
            None,
            "All line items must use the same currency.",
            format!("line_items[{i}][price_data][currency]"),
        )
        .during_execution());
    }
    let total: i64 = line_items
        .iter()
        .map(|l| l.unit_amount.saturating_mul(l.quantity))
        .sum();
    let minimum = minimum_amount(&currency).unwrap_or(50);
    if total < minimum {
        return Err(ApiError::invalid(
            Some("amount_too_small"),
            format!(
                "The Checkout Session's total amount due must add up to at least {minimum} (minor units) {currency}."
            ),
            "line_items[0][price_data][unit_amount]",
        )
        .during_execution());
    }
    if total > MAX_AMOUNT {
        return Err(ApiError::invalid(
            Some("amount_too_large"),
            format!(
                "The Checkout Session's total amount due must be no more than {MAX_AMOUNT} (minor units) {currency}."
            ),
            "line_items[0][price_data][unit_amount]",
        )
        .during_execution());
    }
    Ok(currency)
}

/// The strings of the list parameter `name`, if it is given.
fn string_list(tree: &Node, name: &str) -> Option<Vec<String>> {
    tree.get(name).map(|list| {
        list.items()
            .iter()
            .filter_map(|(_, n)| n.as_str().map(str::to_owned))
            .collect()
    })
}

/// 2026-09-30.endive: dynamic payment methods (the emulator offers
/// `card`), narrowed by `allowed_payment_method_types` or
/// `excluded_payment_method_types`.
fn payment_method_types(tree: &Node, allowed: Option<&[String]>) -> Result<Vec<String>, ApiError> {
    let excluded = string_list(tree, "excluded_payment_method_types").unwrap_or_default();
    let types: Vec<String> = allowed
        .map_or_else(|| vec!["card".to_owned()], <[String]>::to_vec)
        .into_iter()
        .filter(|t| !excluded.contains(t))
        .collect();
    if types.is_empty() {
        return Err(ApiError::invalid(
            None,
            "No valid payment method types for this Checkout Session.",
            "allowed_payment_method_types",
        )
        .during_execution());
    }
    Ok(types)
}

/// `expires_at`: a Unix time 30 minutes to 24 hours from now, with 5 s of
/// slack either way.
fn expires_at(raw: &str) -> Result<i64, ApiError> {
    let at: i64 = raw
        .parse()
        .map_err(|_| invalid_integer("expires_at", raw))?;
    let now = chrono::Utc::now().timestamp();
    if at < now + 30 * 60 - 5 || at > now + 24 * 3600 + 5 {
        return Err(ApiError::invalid(
            None,
            "The `expires_at` timestamp must be between 30 minutes and 24 hours from Checkout Session creation.",
            "expires_at",
        )
        .during_execution());
    }
    Ok(at)
}

fn check_url(param: &str, url: &str) -> Result<(), ApiError> {
    if url.len() > MAX_URL_LEN || !is_http_url(&url.replace("{CHECKOUT_SESSION_ID}", "cs_x")) {
        return Err(ApiError::invalid(
            Some("url_invalid"),
            "Not a valid URL",
            param,
        ));
    }
    Ok(())
}

fn invalid_integer(param: &str, raw: &str) -> ApiError {
    ApiError::invalid(
        Some("parameter_invalid_integer"),
        format!("Invalid integer: {raw}"),
        param,
    )
}

fn metadata(tree: &Node) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(node) = tree.get("metadata") else {
        return Ok(BTreeMap::new());
    };
    let Some(map) = node.as_map() else {
        // `metadata=` (empty) clears metadata in Stripe.
        return match node.as_str() {
            Some("") => Ok(BTreeMap::new()),
            _ => Err(ApiError::invalid(None, "Invalid hash", "metadata")),
        };
    };
    if map.len() > 50 {
        return Err(ApiError::invalid(
            None,
            "Metadata can have at most 50 keys.",
            "metadata",
        ));
    }
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let param = format!("metadata[{k}]");
        let Some(v) = v.as_str() else {
            return Err(ApiError::invalid(
                None,
                "Metadata values must be strings.",
                param,
            ));
        };
        if k.len() > 40 {
            return Err(ApiError::invalid(
                None,
                "Metadata keys can be at most 40 characters.",
                param,
            ));
        }
        if v.len() > 500 {
            return Err(ApiError::invalid(
                None,
                "Metadata values can be at most 500 characters.",
                param,
            ));
        }
        out.insert(k.clone(), v.to_owned());
    }
    Ok(out)
}

fn line_items(tree: &Node) -> Result<Vec<LineItem>, ApiError> {
    let items = tree.get("line_items").map(Node::items).unwrap_or_default();
    if items.is_empty() {
        return Err(ApiError::missing("line_items"));
    }
    items
        .into_iter()
        .map(|(i, item)| line_item(i, item))
        .collect()
}

fn line_item(i: usize, item: &Node) -> Result<LineItem, ApiError> {
    let p = |rest: &str| format!("line_items[{i}]{rest}");
    if let Some(price) = item.get("price").and_then(Node::as_str) {
        return Err(ApiError::invalid(
            Some("resource_missing"),
            format!("No such price: '{price}'"),
            p("[price]"),
        )
        .during_execution());
    }
    let price_data = item
        .get("price_data")
        .ok_or_else(|| ApiError::missing(&p("[price]")))?;
    let quantity = quantity(item, &p("[quantity]"))?;
    let currency = currency(price_data, &p("[price_data][currency]"))?;
    let unit_amount = unit_amount(price_data, &p)?;
    let product_name = product_name(price_data, &p)?;
    Ok(LineItem {
        currency,
        unit_amount,
        quantity,
        product_name,
    })
}

/// `line_items[i][quantity]`: an integer, at least 1.
fn quantity(item: &Node, param: &str) -> Result<i64, ApiError> {
    let raw = item
        .get("quantity")
        .and_then(Node::as_str)
        .ok_or_else(|| ApiError::missing(param))?;
    let quantity: i64 = raw.parse().map_err(|_| invalid_integer(param, raw))?;
    if quantity < 1 {
        return Err(ApiError::invalid(
            Some("parameter_invalid_integer"),
            "This value must be greater than or equal to 1.",
            param,
        ));
    }
    Ok(quantity)
}

/// `price_data[currency]`, lowercased: one of [`CURRENCIES`].
fn currency(price_data: &Node, param: &str) -> Result<String, ApiError> {
    let raw = price_data
        .get("currency")
        .and_then(Node::as_str)
        .ok_or_else(|| ApiError::missing(param))?;
    let currency = raw.to_ascii_lowercase();
    if minimum_amount(&currency).is_none() {
        let supported: Vec<&str> = CURRENCIES.iter().map(|(c, _)| *c).collect();
        return Err(ApiError::invalid(
            None,
            format!(
                "Invalid currency: {raw}. Stripe currently supports these currencies: {}",
                supported.join(", ")
            ),
            param,
        ));
    }
    Ok(currency)
}

/// `price_data[unit_amount]`, else a whole `price_data[unit_amount_decimal]`:
/// 0 to [`MAX_AMOUNT`].
fn unit_amount(price_data: &Node, p: &impl Fn(&str) -> String) -> Result<i64, ApiError> {
    let amount_param = p("[price_data][unit_amount]");
    let unit_amount = match price_data.get("unit_amount").and_then(Node::as_str) {
        Some(raw) => raw
            .parse::<i64>()
            .map_err(|_| invalid_integer(&amount_param, raw))?,
        None => match price_data.get("unit_amount_decimal").and_then(Node::as_str) {
            Some(raw) => match raw.parse::<f64>() {
                #[allow(clippy::cast_possible_truncation)]
                Ok(v) if v.fract() == 0.0 => v as i64,
                _ => {
                    return Err(ApiError::invalid(
                        None,
                        format!(
                            "Invalid decimal: {raw} (the emulator supports whole minor units only)"
                        ),
                        p("[price_data][unit_amount_decimal]"),
                    ));
                }
            },
            None => return Err(ApiError::missing(&amount_param)),
        },
    };
    if unit_amount < 0 {
        return Err(ApiError::invalid(
            Some("parameter_invalid_integer"),
            "This value must be greater than or equal to 0.",
            amount_param,
        ));
    }
    if unit_amount > MAX_AMOUNT {
        return Err(ApiError::invalid(
            Some("amount_too_large"),
            format!("This value must be less than or equal to {MAX_AMOUNT}."),
            amount_param,
        )
        .during_execution());
    }
    Ok(unit_amount)
}

/// `price_data[product_data][name]`, not blank; a `price_data[product]`
/// names a product the emulator does not have.
fn product_name(price_data: &Node, p: &impl Fn(&str) -> String) -> Result<String, ApiError> {
    match price_data
        .get("product_data")
        .and_then(|d| d.get("name"))
        .and_then(Node::as_str)
    {
        Some(name) if !name.trim().is_empty() => Ok(name.to_owned()),
        Some(_) => Err(ApiError::invalid(
            Some("parameter_invalid_string_empty"),
            "You passed an empty string for 'name'. We assume empty values are an attempt to unset a parameter; however 'name' cannot be unset. You should remove 'name' from your request or supply a non-empty value.",
            p("[price_data][product_data][name]"),
        )),
        None => match price_data.get("product").and_then(Node::as_str) {
            Some(product) => Err(ApiError::invalid(
                Some("resource_missing"),
                format!("No such product: '{product}'"),
                p("[price_data][product]"),
            )
            .during_execution()),
            None => Err(ApiError::missing(&p("[price_data][product_data]"))),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form;

    fn check(body: &str) -> Result<NewSession, ApiError> {
        parse(&form::parse(&form::pairs(body.as_bytes()).unwrap()).unwrap())
    }

    const OK: &str = "mode=payment&success_url=https://shop.test/ok?id={CHECKOUT_SESSION_ID}&line_items[0][quantity]=1\
&line_items[0][price_data][currency]=EUR&line_items[0][price_data][unit_amount]=1000\
&line_items[0][price_data][product_data][name]=Top-up&metadata[request_id]=r1";

    #[test]
    fn a_good_request_parses() {
        let s = check(OK).unwrap();
        assert_eq!(s.currency, "eur");
        assert_eq!(s.line_items[0].unit_amount, 1000);
        assert_eq!(s.metadata["request_id"], "r1");
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (
                OK.replace("mode=payment&", ""),
                "mode",
                Some("parameter_missing"),
            ),
            (
                OK.replace("unit_amount]=1000", "unit_amount]=49"),
                "line_items[0][price_data][unit_amount]",
                Some("amount_too_small"),
            ),
            (
                OK.replace("unit_amount]=1000", "unit_amount]=100000000"),
                "line_items[0][price_data][unit_amount]",
                Some("amount_too_large"),
            ),
            (
                OK.replace("unit_amount]=1000", "unit_amount]=ten"),
                "line_items[0][price_data][unit_amount]",
                Some("parameter_invalid_integer"),
            ),
            (
                OK.replace("=EUR", "=xyz"),
                "line_items[0][price_data][currency]",
                None,
            ),
            (
                OK.replace("https://shop.test/ok", "not a url"),
                "success_url",
                Some("url_invalid"),
            ),
            (
                format!("{OK}&cancel_url=ftp://x"),
                "cancel_url",
                Some("url_invalid"),
            ),
            (
                OK.replace("success_url=", "other="),
                "success_url",
                Some("parameter_missing"),
            ),
        ];
        for (body, param, code) in cases {
            let e = check(&body).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.param.as_deref(), e.code),
                (400, Some(param), code),
                "{body}"
            );
        }
    }
}
