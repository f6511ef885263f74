//! [`Outcome`]: what handling one `checkout.finished` message did. The store
//! (`store/`) returns it for each applied event, the `checkout_finished`
//! handler adds [`Outcome::DeadLettered`] for malformed ones, and the metrics
//! count them by [`Outcome::label`].

/// The result of handling one `checkout.finished` message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `success` for a `balance_topup`: the ledger row and the balance update
    /// were written; `balance_cents` is the new balance in that currency.
    Credited { balance_cents: i64 },
    /// `success` already credited with the same user, amount and currency: nothing changed.
    Duplicate,
    /// `success` for another purpose: recorded, never credited.
    NotCredited { purpose: String },
    /// `success` contradicting an earlier record for its request_id: stored
    /// for a person to look at, not credited.
    Flagged { reason: String },
    /// `failed`: the checkout is recorded as failed.
    FailedRecorded,
    /// `failed` after the checkout already succeeded: kept as succeeded.
    FailedAfterSuccess,
    /// `session_created`: the pending checkout and its session_url are recorded.
    SessionRecorded,
    /// `session_created` arriving after the checkout ended: ignored.
    SessionAfterEnd,
    /// Malformed: copied to the dead-letter topic with this reason.
    DeadLettered { reason: String },
}

impl Outcome {
    /// A short name for logs and the `outcome` label of the metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Credited { .. } => "credited",
            Self::Duplicate => "duplicate",
            Self::NotCredited { .. } => "not_credited",
            Self::Flagged { .. } => "flagged",
            Self::FailedRecorded => "failed_recorded",
            Self::FailedAfterSuccess => "failed_after_success",
            Self::SessionRecorded => "session_recorded",
            Self::SessionAfterEnd => "session_after_end",
            Self::DeadLettered { .. } => "dead_lettered",
        }
    }

    /// Every label, so the metrics can print zeroes too.
    pub const LABELS: [&'static str; 9] = [
        "credited",
        "duplicate",
        "not_credited",
        "flagged",
        "failed_recorded",
        "failed_after_success",
        "session_recorded",
        "session_after_end",
        "dead_lettered",
    ];
}
