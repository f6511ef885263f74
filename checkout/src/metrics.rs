//! A few hand-written Prometheus counters of the checkout service, served
//! as `GET /metrics` on the webhook listener (see [`crate::webhook`]): what
//! reconciliation with Stripe found ([`crate::reconcile`]), signed webhooks
//! async-stripe could not parse, the open sessions being tracked
//! ([`crate::sessions`]), and this replica's share of the Stripe rate limit
//! ([`crate::assignment`]).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

/// What one reconciliation of a session ended with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reconciled {
    /// Paid: `success` published.
    Success,
    /// Expired (by Stripe, or by us past its `expires_at`): `failed` published.
    Failed,
    /// Still open or waiting for a delayed payment: asked again later.
    Open,
    /// Stripe or the broker could not answer: tried again next round.
    Error,
}

impl Reconciled {
    const ALL: [Self; 4] = [Self::Success, Self::Failed, Self::Open, Self::Error];

    fn label(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failed => "failed",
            Self::Open => "open",
            Self::Error => "error",
        }
    }
}

/// Every counter of one checkout service.
#[derive(Debug, Default)]
pub struct Metrics {
    reconciled: [AtomicU64; 4],
    webhook_unparsed: AtomicU64,
}

impl Metrics {
    pub fn reconciled(&self, outcome: Reconciled) {
        self.reconciled[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn reconciled_count(&self, outcome: Reconciled) -> u64 {
        self.reconciled[outcome as usize].load(Ordering::Relaxed)
    }

    /// A correctly signed webhook whose event async-stripe could not parse.
    pub fn webhook_unparsed(&self) {
        self.webhook_unparsed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn webhook_unparsed_count(&self) -> u64 {
        self.webhook_unparsed.load(Ordering::Relaxed)
    }

    /// The Prometheus text exposition, with the number of open sessions and
    /// this replica's share of the Stripe rate limit.
    pub fn render(&self, open_sessions: usize, stripe_rate_limit: f64, owned: &[i32]) -> String {
        let mut out = String::new();
        out.push_str("# HELP checkout_reconciled_total Sessions asked about by reconciliation, by what it found.\n");
        out.push_str("# TYPE checkout_reconciled_total counter\n");
        for outcome in Reconciled::ALL {
            let _ = writeln!(
                out,
                "checkout_reconciled_total{{outcome=\"{}\"}} {}",
                outcome.label(),
                self.reconciled_count(outcome)
            );
        }
        out.push_str("# HELP checkout_webhook_unparsed_total Signed webhooks whose event could not be parsed (decided from the session instead).\n");
        out.push_str("# TYPE checkout_webhook_unparsed_total counter\n");
        let _ = writeln!(
            out,
            "checkout_webhook_unparsed_total {}",
            self.webhook_unparsed_count()
        );
        out.push_str(
            "# HELP checkout_open_sessions Sessions opened without a terminal status yet.\n",
        );
        out.push_str("# TYPE checkout_open_sessions gauge\n");
        let _ = writeln!(out, "checkout_open_sessions {open_sessions}");
        out.push_str("# HELP checkout_stripe_rate_limit_per_second This replica's share of the account's Stripe rate limit (limit x owned partitions / total).\n");
        out.push_str("# TYPE checkout_stripe_rate_limit_per_second gauge\n");
        let _ = writeln!(
            out,
            "checkout_stripe_rate_limit_per_second {stripe_rate_limit}"
        );
        out.push_str("# HELP checkout_partition_owned The partitions of checkout.requests this replica owns (1 each).\n");
        out.push_str("# TYPE checkout_partition_owned gauge\n");
        for partition in owned {
            let _ = writeln!(
                out,
                "checkout_partition_owned{{partition=\"{partition}\"}} 1"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_render_as_prometheus_text() {
        let m = Metrics::default();
        m.reconciled(Reconciled::Success);
        m.reconciled(Reconciled::Success);
        m.reconciled(Reconciled::Open);
        m.webhook_unparsed();
        let text = m.render(3, 12.5, &[0, 2]);
        assert!(
            text.contains("checkout_reconciled_total{outcome=\"success\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("checkout_reconciled_total{outcome=\"failed\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("checkout_reconciled_total{outcome=\"open\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("checkout_webhook_unparsed_total 1\n"),
            "{text}"
        );
        assert!(text.contains("checkout_open_sessions 3\n"), "{text}");
        assert!(
            text.contains("checkout_stripe_rate_limit_per_second 12.5\n"),
            "{text}"
        );
        assert!(
            text.contains("checkout_partition_owned{partition=\"0\"} 1\ncheckout_partition_owned{partition=\"2\"} 1\n"),
            "{text}"
        );
    }
}
