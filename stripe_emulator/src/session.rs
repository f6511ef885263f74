//! The Checkout Session: what was asked for, where it stands in Stripe's
//! state machine (`open` -> `complete` (paid / unpaid) | `expired`), and its
//! JSON rendering with every field async-stripe's `CheckoutSession`
//! requires. Transitions return the webhook event types they cause;
//! [`crate::webhook`] builds and delivers those events.

use std::collections::BTreeMap;

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The Stripe API version stamped on events (the one async-stripe 1.0.0-rc.10 speaks).
pub const API_VERSION: &str = "2026-09-30.endive";

/// The account's (only) payment method configuration, as rendered in
/// `payment_method_configuration_details`.
pub const PAYMENT_METHOD_CONFIGURATION: &str = "pmc_1EmulatorDefaultConfig0";

/// The customer the hosted page pretends filled it in, unless the session
/// was created with `customer_email`.
pub const CUSTOMER_EMAIL: &str = "customer@example.com";
pub const CUSTOMER_NAME: &str = "Jenny Rosen";

/// Sessions expire 24 hours after creation unless `expires_at` says otherwise.
pub const DEFAULT_LIFETIME_SECS: u64 = 24 * 3600;

/// `{prefix}_` plus `len` random alphanumerics, like Stripe's ids.
pub fn new_id(prefix: &str, len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let tail: String = (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}_{tail}")
}

/// One `line_items[n]` entry (inline `price_data` only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItem {
    pub currency: String,
    pub unit_amount: i64,
    pub quantity: i64,
    pub product_name: String,
}

/// What a successful create request asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub success_url: String,
    pub cancel_url: Option<String>,
    pub client_reference_id: Option<String>,
    pub customer_email: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub line_items: Vec<LineItem>,
    pub currency: String,
    /// `allowed_payment_method_types` as given (rendered back as given).
    pub allowed_payment_method_types: Option<Vec<String>>,
    /// What the session offers: `card` from the dynamic payment methods,
    /// narrowed by the allowed / excluded lists.
    pub payment_method_types: Vec<String>,
    pub expires_at: Option<i64>,
}

/// Session `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Open,
    Complete,
    Expired,
}

/// Session `payment_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Paid,
    Unpaid,
}

/// How a customer (or a test) finishes a session: the JSON body of
/// `POST /_emulator/checkout/sessions/{id}/pay` is `{"outcome": "..."}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Card paid at once: `checkout.session.completed` (paid).
    Paid,
    /// Delayed payment method accepted, settlement pending:
    /// `checkout.session.completed` (unpaid) only.
    AsyncPending,
    /// Delayed payment that settles: `completed` (unpaid) unless already
    /// sent, then `checkout.session.async_payment_succeeded` (paid).
    AsyncSucceeded,
    /// Delayed payment that fails: `completed` (unpaid) unless already sent,
    /// then `checkout.session.async_payment_failed`.
    AsyncFailed,
    /// The session runs out: `checkout.session.expired`.
    Expired,
}

/// The event types Stripe sends for Checkout Sessions.
pub mod event_types {
    pub const COMPLETED: &str = "checkout.session.completed";
    pub const ASYNC_SUCCEEDED: &str = "checkout.session.async_payment_succeeded";
    pub const ASYNC_FAILED: &str = "checkout.session.async_payment_failed";
    pub const EXPIRED: &str = "checkout.session.expired";
}

/// A session and everything the emulator knows about it.
#[derive(Debug, Clone)]
pub struct Session {
    pub id: String,
    pub created: i64,
    pub expires_at: i64,
    pub url: String,
    pub params: NewSession,
    pub status: Status,
    pub payment_status: PaymentStatus,
    pub payment_intent: Option<String>,
    /// True between an async `completed` (unpaid) and its settlement event.
    pub awaiting_async: bool,
    /// The idempotency key of the request that created it (for test assertions).
    pub idempotency_key: Option<String>,
}

/// Why a transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TransitionError(pub String);

impl Session {
    /// A new open session; it expires at `params.expires_at`, else `lifetime_secs` from now.
    pub fn new(
        params: NewSession,
        public_base: &str,
        lifetime_secs: i64,
        idempotency_key: Option<String>,
    ) -> Self {
        let id = new_id("cs_test", 58);
        let created = chrono::Utc::now().timestamp();
        Self {
            url: format!("{public_base}/pay/{id}"),
            expires_at: params.expires_at.unwrap_or(created + lifetime_secs),
            id,
            created,
            params,
            status: Status::Open,
            payment_status: PaymentStatus::Unpaid,
            payment_intent: None,
            awaiting_async: false,
            idempotency_key,
        }
    }

    pub fn amount_total(&self) -> i64 {
        self.params
            .line_items
            .iter()
            .map(|l| l.unit_amount * l.quantity)
            .sum()
    }

    /// Applies `outcome` and returns the events to send, in order: each
    /// event type with the session as it was right after that step.
    ///
    /// # Errors
    /// When the session's state does not allow it (e.g. paying an expired session).
    pub fn apply(
        &mut self,
        outcome: Outcome,
    ) -> Result<Vec<(&'static str, Value)>, TransitionError> {
        use event_types::*;
        let settling = self.status == Status::Complete && self.awaiting_async;
        let mut events = Vec::new();
        match (outcome, self.status) {
            (Outcome::Paid, Status::Open) => {
                self.complete(PaymentStatus::Paid);
                events.push((COMPLETED, self.to_json()));
            }
            (Outcome::AsyncPending, Status::Open) => {
                self.complete(PaymentStatus::Unpaid);
                self.awaiting_async = true;
                events.push((COMPLETED, self.to_json()));
            }
            (Outcome::AsyncSucceeded | Outcome::AsyncFailed, Status::Open) => {
                self.complete(PaymentStatus::Unpaid);
                events.push((COMPLETED, self.to_json()));
                let settled = self.settle(outcome);
                events.push((settled, self.to_json()));
            }
            (Outcome::AsyncSucceeded | Outcome::AsyncFailed, Status::Complete) if settling => {
                let settled = self.settle(outcome);
                events.push((settled, self.to_json()));
            }
            (Outcome::Expired, Status::Open) => {
                self.status = Status::Expired;
                events.push((EXPIRED, self.to_json()));
            }
            (outcome, status) => {
                return Err(TransitionError(format!(
                    "Cannot apply {outcome:?} to Checkout Session {} with status {status:?} (payment_status {:?}{}).",
                    self.id,
                    self.payment_status,
                    if self.awaiting_async {
                        ", awaiting async payment"
                    } else {
                        ""
                    }
                )));
            }
        }
        Ok(events)
    }

    fn complete(&mut self, payment_status: PaymentStatus) {
        self.status = Status::Complete;
        self.payment_status = payment_status;
        self.payment_intent = Some(new_id("pi", 24));
    }

    fn settle(&mut self, outcome: Outcome) -> &'static str {
        self.awaiting_async = false;
        if outcome == Outcome::AsyncSucceeded {
            self.payment_status = PaymentStatus::Paid;
            event_types::ASYNC_SUCCEEDED
        } else {
            event_types::ASYNC_FAILED
        }
    }

    /// `success_url` / `cancel_url` with `{CHECKOUT_SESSION_ID}` filled in, as Stripe does.
    pub fn redirect(&self, url: &str) -> String {
        url.replace("{CHECKOUT_SESSION_ID}", &self.id)
    }

    /// The Checkout Session object as Stripe renders it for [`API_VERSION`]:
    /// every property the version's OpenAPI spec declares required or
    /// nullable (null when unset), plus the optional `branding_settings` and
    /// `phone_number_collection` Stripe renders on hosted sessions; no
    /// property the version removed or renamed (`ui_mode` is `hosted_page`,
    /// not `hosted`). `line_items` (expand-only), `presentment_details`
    /// (Adaptive Pricing), `excluded_payment_method_types`, `name_collection`,
    /// `tax_id_collection`, `return_url` and `redirect_on_completion` (embedded
    /// sessions) are left out, as Stripe leaves them out of a session like
    /// this one. `currency_conversion` stays (null): the endive spec still
    /// declares it, and Stripe still sends it.
    pub fn to_json(&self) -> Value {
        let p = &self.params;
        let amount = self.amount_total();
        let card = p.payment_method_types.iter().any(|t| t == "card");
        json!({
            "id": self.id,
            "object": "checkout.session",
            "adaptive_pricing": {"enabled": false},
            "after_expiration": null,
            "allow_promotion_codes": null,
            "allowed_payment_method_types": p.allowed_payment_method_types,
            "amount_subtotal": amount,
            "amount_total": amount,
            "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
            "billing_address_collection": null,
            "branding_settings": {
                "background_color": "#ffffff", "border_style": "rounded", "button_color": "#0074d4",
                "display_name": "Stripe emulator", "font_family": "default", "icon": null, "logo": null,
            },
            "cancel_url": p.cancel_url,
            "client_reference_id": p.client_reference_id,
            "client_secret": null,
            "collected_information": null,
            "consent": null,
            "consent_collection": null,
            "created": self.created,
            "currency": p.currency,
            "currency_conversion": null,
            "custom_fields": [],
            "custom_text": {"after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
            "customer": null,
            "customer_account": null,
            "customer_creation": "if_required",
            "customer_details": self.customer_details(),
            "customer_email": p.customer_email,
            "discounts": [],
            "expires_at": self.expires_at,
            "integration_identifier": null,
            "invoice": null,
            "invoice_creation": {
                "enabled": false,
                "invoice_data": {
                    "account_tax_ids": null, "custom_fields": null, "description": null, "footer": null,
                    "issuer": null, "metadata": {}, "rendering_options": null,
                },
            },
            "livemode": false,
            "locale": null,
            "managed_payments": {"enabled": false},
            "metadata": p.metadata,
            "mode": "payment",
            "optional_items": null,
            "origin_context": null,
            "payment_intent": self.payment_intent,
            "payment_link": null,
            "payment_method_collection": "if_required",
            "payment_method_configuration_details": {"id": PAYMENT_METHOD_CONFIGURATION, "parent": null},
            "payment_method_options": if card { json!({"card": {"request_three_d_secure": "automatic"}}) } else { json!({}) },
            "payment_method_types": p.payment_method_types,
            "payment_status": self.payment_status,
            "permissions": null,
            "phone_number_collection": {"enabled": false},
            "recovered_from": null,
            "saved_payment_method_options": null,
            "setup_intent": null,
            "shipping_address_collection": null,
            "shipping_cost": null,
            "shipping_options": [],
            "status": self.status,
            "submit_type": null,
            "subscription": null,
            "success_url": p.success_url,
            "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
            "ui_mode": "hosted_page",
            // Stripe clears the URL once the session can no longer be paid.
            "url": (self.status == Status::Open).then_some(&self.url),
            "wallet_options": null,
        })
    }

    /// What the customer entered on the payment page: nothing until they
    /// completed it (an expired session never has any).
    fn customer_details(&self) -> Value {
        if self.status != Status::Complete {
            return Value::Null;
        }
        json!({
            "address": {"city": null, "country": "DE", "line1": null, "line2": null, "postal_code": null, "state": null},
            "business_name": null,
            "email": self.params.customer_email.as_deref().unwrap_or(CUSTOMER_EMAIL),
            "individual_name": null,
            "name": CUSTOMER_NAME,
            "phone": null,
            "tax_exempt": "none",
            "tax_ids": [],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        let params = NewSession {
            success_url: "http://shop/ok?s={CHECKOUT_SESSION_ID}".into(),
            cancel_url: None,
            client_reference_id: None,
            customer_email: None,
            metadata: BTreeMap::new(),
            line_items: vec![LineItem {
                currency: "eur".into(),
                unit_amount: 500,
                quantity: 2,
                product_name: "x".into(),
            }],
            currency: "eur".into(),
            allowed_payment_method_types: None,
            payment_method_types: vec!["card".into()],
            expires_at: None,
        };
        Session::new(params, "http://127.0.0.1:1", 3600, None)
    }

    #[test]
    fn state_machine_follows_stripe() {
        let mut s = session();
        assert_eq!(s.amount_total(), 1000);
        assert_eq!(
            s.redirect(&s.params.success_url.clone()),
            format!("http://shop/ok?s={}", s.id)
        );
        let types =
            |e: Vec<(&'static str, Value)>| e.into_iter().map(|(t, _)| t).collect::<Vec<_>>();
        assert_eq!(
            types(s.apply(Outcome::AsyncPending).unwrap()),
            [event_types::COMPLETED]
        );
        assert!(s.apply(Outcome::Paid).is_err());
        assert_eq!(
            types(s.apply(Outcome::AsyncFailed).unwrap()),
            [event_types::ASYNC_FAILED]
        );
        assert!(s.apply(Outcome::AsyncSucceeded).is_err(), "settled once");
        assert!(s.apply(Outcome::Expired).is_err());

        let mut s = session();
        let events = s.apply(Outcome::AsyncSucceeded).unwrap();
        assert_eq!(events[0].0, event_types::COMPLETED);
        assert_eq!(events[0].1["payment_status"], "unpaid");
        assert_eq!(events[1].0, event_types::ASYNC_SUCCEEDED);
        assert_eq!(events[1].1["payment_status"], "paid");
        assert_eq!(s.payment_status, PaymentStatus::Paid);
        assert!(s.to_json()["url"].is_null());
    }
}
