//! What one batch of `checkout.finished` events does, decided in memory
//! before anything is written: the outcome of each event, the final row of
//! each checkout it touches, the new ledger rows and the flagged events.
//! `backend.rs` loads what the database knows first ([`Known`]) and writes
//! the plan afterwards with a few multi-row statements per batch (each
//! database's `Backend` in `sqlite.rs`, `postgres.rs`), instead of two
//! statements per event.
//!
//! The decisions replay, event by event and in batch order, the guards the
//! single-row statements had: `session_created` only moves `requested` or
//! `session_created` on, `failed` never overrides `success`, a `success`
//! that contradicts an earlier credit or record, or pays a credited
//! checkout a second time (another session or payment intent), is flagged, and only
//! `balance_topup` is credited, once per request_id.

use std::collections::HashMap;

use checkout_contract::{CheckoutFinishedEvent, CheckoutStatus};

use crate::outcome::Outcome;

/// What a checkout is about: who is credited, how much, in which currency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Terms {
    pub user_id: i64,
    pub amount_cents: i64,
    pub currency: String,
}

impl Terms {
    fn of(e: &CheckoutFinishedEvent) -> Self {
        Self {
            user_id: e.user_id,
            amount_cents: e.amount_cents,
            currency: e.currency.clone(),
        }
    }
}

/// A credited checkout: its terms and the payment that paid it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Credited {
    pub terms: Terms,
    pub session_id: Option<String>,
    pub payment_intent_id: Option<String>,
}

impl Credited {
    fn of(e: &CheckoutFinishedEvent, terms: Terms) -> Self {
        Self {
            terms,
            session_id: e.session_id.clone(),
            payment_intent_id: e.payment_intent_id.clone(),
        }
    }

    /// Why `e` is another payment than the one credited: a different
    /// session or payment intent (each known on both sides).
    fn other_payment(&self, e: &CheckoutFinishedEvent) -> Option<String> {
        let differs = |credited: &Option<String>, event: &Option<String>| matches!((credited, event), (Some(a), Some(b)) if a != b);
        (differs(&self.session_id, &e.session_id)
            || differs(&self.payment_intent_id, &e.payment_intent_id))
        .then(|| {
            format!(
                "a second payment for a checkout already credited: session {} / payment intent {} \
                 was credited, this success is session {} / payment intent {}",
                self.session_id.as_deref().unwrap_or("-"),
                self.payment_intent_id.as_deref().unwrap_or("-"),
                e.session_id.as_deref().unwrap_or("-"),
                e.payment_intent_id.as_deref().unwrap_or("-"),
            )
        })
    }
}

/// A recorded checkout: its terms as first recorded, and its current status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Recorded {
    pub terms: Terms,
    pub status: String,
}

/// What the database knows about a batch's request_ids, kept up to date
/// while the batch is planned.
#[derive(Debug, Default)]
pub(super) struct Known {
    /// Credited checkouts.
    pub credited: HashMap<String, Credited>,
    /// Recorded checkouts.
    pub recorded: HashMap<String, Recorded>,
}

/// A checkout row as the batch leaves it. Written with the same
/// `ON CONFLICT` rule as one event's upsert: the terms of an existing row
/// stay, the status moves (under the guard of `status`) and each optional
/// field keeps its old value when the batch has none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct CheckoutRow<'a> {
    pub request_id: &'a str,
    pub user_id: i64,
    pub amount_cents: i64,
    pub currency: &'a str,
    pub purpose: &'a str,
    pub status: &'static str,
    pub session_id: Option<&'a str>,
    pub session_url: Option<&'a str>,
    pub payment_intent_id: Option<&'a str>,
    pub error_message: Option<&'a str>,
}

/// A credit to insert into the ledger: event `index` of the batch.
#[derive(Debug, Clone, Copy)]
pub(super) struct Credit<'a> {
    pub index: usize,
    pub event: &'a CheckoutFinishedEvent,
}

/// The batch's effects, in batch order.
#[derive(Debug, Default)]
pub(super) struct Plan<'a> {
    /// One per event; `Credited` ones get their balance once the ledger
    /// rows are in (a credit another consumer made meanwhile becomes `Duplicate`).
    pub outcomes: Vec<Outcome>,
    /// At most one per request_id, in order of first appearance.
    pub checkouts: Vec<CheckoutRow<'a>>,
    /// New credits, at most one per request_id.
    pub credits: Vec<Credit<'a>>,
    /// Events to store for a person to look at, with the reason.
    pub flagged: Vec<(&'a CheckoutFinishedEvent, String)>,
}

impl<'a> Plan<'a> {
    /// Decides every event of `events` in order, given what `known` says
    /// the database holds (and updating it as the batch goes).
    pub fn decide(events: &'a [CheckoutFinishedEvent], known: &mut Known) -> Self {
        let mut plan = Self {
            outcomes: Vec::with_capacity(events.len()),
            ..Self::default()
        };
        let mut rows: HashMap<&'a str, usize> = HashMap::with_capacity(events.len());
        for (index, e) in events.iter().enumerate() {
            let outcome = match e.status {
                CheckoutStatus::SessionCreated => {
                    if plan.upsert(e, known, &mut rows) {
                        Outcome::SessionRecorded
                    } else {
                        Outcome::SessionAfterEnd
                    }
                }
                CheckoutStatus::Failed => {
                    if plan.upsert(e, known, &mut rows) {
                        Outcome::FailedRecorded
                    } else {
                        Outcome::FailedAfterSuccess
                    }
                }
                CheckoutStatus::Success => plan.success(index, e, known, &mut rows),
            };
            plan.outcomes.push(outcome);
        }
        plan
    }

    fn success(
        &mut self,
        index: usize,
        e: &'a CheckoutFinishedEvent,
        known: &mut Known,
        rows: &mut HashMap<&'a str, usize>,
    ) -> Outcome {
        let terms = Terms::of(e);
        // An earlier credit decides: the same event again is a no-op; other
        // terms, or another payment (a second real payment), are flagged.
        if let Some(credited) = known.credited.get(&e.request_id) {
            if credited.terms != terms {
                let Terms {
                    user_id,
                    amount_cents,
                    currency,
                } = &credited.terms;
                let reason = format!(
                    "success contradicts the credit already recorded (user {user_id}, {amount_cents} {currency})"
                );
                return self.flag(e, reason);
            }
            return match credited.other_payment(e) {
                Some(reason) => self.flag(e, reason),
                None => Outcome::Duplicate,
            };
        }
        // An earlier record of the checkout (requested, session_created, failed) must agree too.
        if let Some(Recorded {
            terms: recorded,
            status,
        }) = known.recorded.get(&e.request_id)
            && *recorded != terms
        {
            let reason = format!(
                "success contradicts the checkout recorded as {status} (user {}, {} {})",
                recorded.user_id, recorded.amount_cents, recorded.currency
            );
            return self.flag(e, reason);
        }
        self.upsert(e, known, rows);
        if e.purpose != checkout_contract::domain::DEFAULT_PURPOSE {
            return Outcome::NotCredited {
                purpose: e.purpose.clone(),
            };
        }
        known
            .credited
            .insert(e.request_id.clone(), Credited::of(e, terms));
        self.credits.push(Credit { index, event: e });
        // The balance is known once the batch's ledger rows are in.
        Outcome::Credited { balance_cents: 0 }
    }

    fn flag(&mut self, e: &'a CheckoutFinishedEvent, reason: String) -> Outcome {
        self.flagged.push((e, reason.clone()));
        Outcome::Flagged { reason }
    }

    /// Moves the checkout to `e`'s status if its guard lets it; false when
    /// the recorded status stays.
    fn upsert(
        &mut self,
        e: &'a CheckoutFinishedEvent,
        known: &mut Known,
        rows: &mut HashMap<&'a str, usize>,
    ) -> bool {
        let status = e.status.as_str();
        if let Some(recorded) = known.recorded.get_mut(&e.request_id) {
            if !moves(&recorded.status, status) {
                return false;
            }
            status.clone_into(&mut recorded.status);
        } else {
            known.recorded.insert(
                e.request_id.clone(),
                Recorded {
                    terms: Terms::of(e),
                    status: status.to_owned(),
                },
            );
        }
        match rows.get(e.request_id.as_str()) {
            Some(&row) => {
                let row = &mut self.checkouts[row];
                row.status = status;
                row.session_id = e.session_id.as_deref().or(row.session_id);
                row.session_url = e.session_url.as_deref().or(row.session_url);
                row.payment_intent_id = e.payment_intent_id.as_deref().or(row.payment_intent_id);
                row.error_message = e.error_message.as_deref().or(row.error_message);
            }
            None => {
                rows.insert(&e.request_id, self.checkouts.len());
                self.checkouts.push(CheckoutRow {
                    request_id: &e.request_id,
                    user_id: e.user_id,
                    amount_cents: e.amount_cents,
                    currency: &e.currency,
                    purpose: &e.purpose,
                    status,
                    session_id: e.session_id.as_deref(),
                    session_url: e.session_url.as_deref(),
                    payment_intent_id: e.payment_intent_id.as_deref(),
                    error_message: e.error_message.as_deref(),
                });
            }
        }
        true
    }
}

/// May a checkout recorded as `current` move to `next`? The same rule as
/// the `WHERE` of `sql::UPSERT_CHECKOUTS_*`.
fn moves(current: &str, next: &str) -> bool {
    match next {
        "session_created" => matches!(current, "requested" | "session_created"),
        _ => current != "success",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(id: &str, status: CheckoutStatus, amount_cents: i64) -> CheckoutFinishedEvent {
        CheckoutFinishedEvent {
            request_id: id.into(),
            user_id: 7,
            amount_cents,
            currency: "eur".into(),
            purpose: "balance_topup".into(),
            status,
            session_id: Some("cs_1".into()),
            session_url: (status == CheckoutStatus::SessionCreated).then(|| "https://s".into()),
            payment_intent_id: (status == CheckoutStatus::Success).then(|| "pi_1".into()),
            error_message: (status == CheckoutStatus::Failed).then(|| "declined".into()),
            timestamp: checkout_contract::events::now(),
        }
    }

    #[test]
    fn one_row_per_checkout_carries_every_field_the_batch_set() {
        let events = [
            event("a", CheckoutStatus::SessionCreated, 5),
            event("a", CheckoutStatus::Success, 5),
            event("a", CheckoutStatus::Failed, 5),
        ];
        let plan = Plan::decide(&events, &mut Known::default());
        assert_eq!(plan.checkouts.len(), 1);
        let row = &plan.checkouts[0];
        assert_eq!(row.status, "success");
        assert_eq!(row.session_url, Some("https://s"));
        assert_eq!(row.payment_intent_id, Some("pi_1"));
        assert_eq!(row.error_message, None, "the late failed did not apply");
        assert_eq!(plan.credits.len(), 1);
        assert_eq!(plan.outcomes[2], Outcome::FailedAfterSuccess);
    }

    #[test]
    fn a_recorded_failed_checkout_ignores_session_created_but_takes_success() {
        let mut known = Known::default();
        known.recorded.insert(
            "a".into(),
            Recorded {
                terms: Terms {
                    user_id: 7,
                    amount_cents: 5,
                    currency: "eur".into(),
                },
                status: "failed".into(),
            },
        );
        let events = [
            event("a", CheckoutStatus::SessionCreated, 5),
            event("a", CheckoutStatus::Success, 5),
        ];
        let plan = Plan::decide(&events, &mut known);
        assert_eq!(plan.outcomes[0], Outcome::SessionAfterEnd);
        assert_eq!(plan.outcomes[1], Outcome::Credited { balance_cents: 0 });
        assert_eq!(plan.checkouts.len(), 1);
        assert_eq!(
            plan.checkouts[0].session_url, None,
            "only applied events count"
        );
    }
}
