//! The parameters each emulated endpoint accepts in the API version the
//! emulator speaks ([`crate::session::API_VERSION`]), taken from Stripe's
//! OpenAPI spec for that version, and Stripe's answer to any other one:
//! 400 `invalid_request_error`, code `parameter_unknown`, "Received unknown
//! parameter: line_items[0][price_data][colour]" with `param` naming it.
//! Nested objects the emulator reads (line items, price and product data)
//! are checked key by key; the other known parameters are accepted whole
//! (and ignored unless [`crate::create_params`] reads them), as Stripe would
//! accept them. Used by every `/v1` route before it looks at anything else.

use crate::error::ApiError;
use crate::form::Node;

/// What may appear under one parameter name.
#[derive(Debug)]
pub enum Shape {
    /// Any value or nested object (a known parameter the emulator does not inspect).
    Any,
    /// An object with exactly these keys (each with its own shape).
    Object(&'static [(&'static str, Shape)]),
    /// A list (`name[0]`, `name[]`) whose items have this shape.
    List(&'static Shape),
}

use Shape::{Any, List, Object};

const PRODUCT_DATA: Shape = Object(&[
    ("description", Any),
    ("images", Any),
    ("metadata", Any),
    ("name", Any),
    ("tax_code", Any),
    ("tax_details", Any),
    ("unit_label", Any),
]);

const PRICE_DATA: Shape = Object(&[
    ("currency", Any),
    ("product", Any),
    ("product_data", PRODUCT_DATA),
    ("recurring", Any),
    ("tax_behavior", Any),
    ("unit_amount", Any),
    ("unit_amount_decimal", Any),
]);

const LINE_ITEM: Shape = Object(&[
    ("adjustable_quantity", Any),
    ("metadata", Any),
    ("price", Any),
    ("price_data", PRICE_DATA),
    ("quantity", Any),
    ("tax_rates", Any),
]);

/// `POST /v1/checkout/sessions`. `payment_method_types` is not among them:
/// 2026-09-30.endive removed it (use `allowed_payment_method_types`).
pub const CREATE_SESSION: Shape = Object(&[
    ("adaptive_pricing", Any),
    ("after_expiration", Any),
    ("allow_promotion_codes", Any),
    ("allowed_payment_method_types", Any),
    ("automatic_tax", Any),
    ("billing_address_collection", Any),
    ("branding_settings", Any),
    ("cancel_url", Any),
    ("client_reference_id", Any),
    ("consent_collection", Any),
    ("currency", Any),
    ("custom_fields", Any),
    ("custom_text", Any),
    ("customer", Any),
    ("customer_account", Any),
    ("customer_creation", Any),
    ("customer_email", Any),
    ("customer_update", Any),
    ("discounts", Any),
    ("excluded_payment_method_types", Any),
    ("expand", Any),
    ("expires_at", Any),
    ("integration_identifier", Any),
    ("invoice_creation", Any),
    ("line_items", List(&LINE_ITEM)),
    ("locale", Any),
    ("managed_payments", Any),
    ("metadata", Any),
    ("mode", Any),
    ("name_collection", Any),
    ("optional_items", Any),
    ("origin_context", Any),
    ("payment_intent_data", Any),
    ("payment_method_collection", Any),
    ("payment_method_configuration", Any),
    ("payment_method_data", Any),
    ("payment_method_options", Any),
    ("permissions", Any),
    ("phone_number_collection", Any),
    ("redirect_on_completion", Any),
    ("return_url", Any),
    ("saved_payment_method_options", Any),
    ("setup_intent_data", Any),
    ("shipping_address_collection", Any),
    ("shipping_options", Any),
    ("submit_type", Any),
    ("subscription_data", Any),
    ("success_url", Any),
    ("tax_id_collection", Any),
    ("ui_mode", Any),
    ("wallet_options", Any),
]);

/// `GET /v1/checkout/sessions`.
pub const LIST_SESSIONS: Shape = Object(&[
    ("created", Any),
    ("customer", Any),
    ("customer_account", Any),
    ("customer_details", Any),
    ("ending_before", Any),
    ("expand", Any),
    ("limit", Any),
    ("payment_intent", Any),
    ("payment_link", Any),
    ("starting_after", Any),
    ("status", Any),
    ("subscription", Any),
]);

/// `GET /v1/checkout/sessions/{id}` and `POST /v1/checkout/sessions/{id}/expire`.
pub const EXPAND_ONLY: Shape = Object(&[("expand", Any)]);

/// 400 `parameter_unknown` for the first parameter in `tree` that `shape`
/// does not know.
///
/// # Errors
/// The unknown parameter, named the way Stripe names it.
pub fn check(tree: &Node, shape: &Shape) -> Result<(), ApiError> {
    check_at(tree, shape, "")
}

fn check_at(node: &Node, shape: &Shape, path: &str) -> Result<(), ApiError> {
    let name = |key: &str| {
        if path.is_empty() {
            key.to_owned()
        } else {
            format!("{path}[{key}]")
        }
    };
    match shape {
        Any => Ok(()),
        Object(fields) => {
            let Some(map) = node.as_map() else {
                // A plain value where an object belongs: the field's own validation says so.
                return Ok(());
            };
            for (key, child) in map {
                let Some((_, field)) = fields.iter().find(|(known, _)| known == key) else {
                    return Err(ApiError::unknown_parameter(&name(key)));
                };
                check_at(child, field, &name(key))?;
            }
            Ok(())
        }
        List(item) => {
            let Some(map) = node.as_map() else {
                return Ok(());
            };
            for (key, child) in map {
                if key.parse::<usize>().is_err() {
                    return Err(ApiError::unknown_parameter(&name(key)));
                }
                check_at(child, item, &name(key))?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::form;

    fn unknown(query: &str, shape: &Shape) -> Option<String> {
        let tree = form::parse(&form::pairs(query.as_bytes()).unwrap()).unwrap();
        check(&tree, shape).err().map(|e| {
            assert_eq!(
                (e.status.as_u16(), e.type_, e.code),
                (400, "invalid_request_error", Some("parameter_unknown"))
            );
            assert_eq!(
                e.message,
                format!("Received unknown parameter: {}", e.param.clone().unwrap())
            );
            e.param.unwrap()
        })
    }

    #[test]
    fn unknown_parameters_are_named_at_any_depth() {
        let ok = "mode=payment&success_url=x&metadata[anything]=1&line_items[0][quantity]=1\
&line_items[0][price_data][currency]=eur&line_items[0][price_data][product_data][name]=n\
&automatic_tax[enabled]=true&expand[]=line_items";
        assert_eq!(unknown(ok, &CREATE_SESSION), None);
        assert_eq!(
            unknown(&format!("{ok}&colour=red"), &CREATE_SESSION).as_deref(),
            Some("colour")
        );
        assert_eq!(
            unknown("payment_method_types[]=card", &CREATE_SESSION).as_deref(),
            Some("payment_method_types"),
            "removed in 2026-09-30.endive"
        );
        assert_eq!(
            unknown("line_items[0][price_data][colour]=red", &CREATE_SESSION).as_deref(),
            Some("line_items[0][price_data][colour]")
        );
        assert_eq!(
            unknown(
                "line_items[0][price_data][product_data][size]=xl",
                &CREATE_SESSION
            )
            .as_deref(),
            Some("line_items[0][price_data][product_data][size]")
        );
        assert_eq!(
            unknown("line_items[first][quantity]=1", &CREATE_SESSION).as_deref(),
            Some("line_items[first]")
        );
        assert_eq!(unknown("limit=3&created[gte]=1", &LIST_SESSIONS), None);
        assert_eq!(
            unknown("order=asc", &LIST_SESSIONS).as_deref(),
            Some("order")
        );
        assert_eq!(unknown("expand[]=line_items", &EXPAND_ONLY), None);
        assert_eq!(
            unknown("force=true", &EXPAND_ONLY).as_deref(),
            Some("force")
        );
    }
}
