//! The Stripe budget, second by second: which one-second windows had a
//! backlog on every partition, and whether the emulator saw at most the
//! account's limit (plus the replicas' documented bursts) in every window
//! and at least 90 % of it in the backlog windows.
//!
//! Windows are the emulator's: second `i` is `[i s, i+1 s)` after it was
//! built ([`stripe_emulator::Handle::api_requests_per_second`]); every other
//! time here (Kafka record timestamps, kills) is turned into seconds on the
//! same clock by [`Clock`].
//!
//! A window `i` is a **backlog window** when
//! 1. `i ≥ 1` and the window is complete when the series is read;
//! 2. no worker was down in it: it does not meet any interval from a
//!    worker's SIGKILL to its restart's first partition assignment (a static
//!    member's partitions wait for it meanwhile, so its share is unused);
//! 3. every partition of `checkout.requests` had a request waiting for
//!    Stripe throughout it: a request produced at or before `i` whose first
//!    status on `checkout.finished` came after `i + 1 + call_bound`, where
//!    `call_bound` (the emulator's latency plus a second) bounds how long
//!    after its create call starts a request's first status is published.
//!    Such a request had not been sent to Stripe by the window's end, so the
//!    partition's owner had work for its whole share all along.
//!
//! The **ceiling** (every complete window after the first that saw a
//! request) is the limit plus each replica's burst; the **floor** (every
//! backlog window) is 90 % of the limit. Requests are counted when the
//! emulator handles them, so a process that stalls for a few hundred
//! milliseconds on a busy machine moves requests sent at the end of one
//! window into the next: one window falls short by what the next has too
//! many. Such **late arrivals** are told apart from a broken budget by the
//! pair of windows: a window over the ceiling is excused when it and the
//! window before it stay within the limit plus the ceiling (its excess is
//! the previous window's shortfall), and a backlog window under the floor
//! when it and the window after it reach twice the floor. A limiter that
//! sends too much, or replicas that do not share, fail both.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, SystemTime};

/// Turns wall-clock times into seconds since the emulator was built.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: SystemTime,
}

impl Clock {
    /// `epoch`: read just before `Emulator::build`.
    pub fn new(epoch: SystemTime) -> Self {
        Self { epoch }
    }

    pub fn at(&self, t: SystemTime) -> f64 {
        match t.duration_since(self.epoch) {
            Ok(d) => d.as_secs_f64(),
            Err(e) => -e.duration().as_secs_f64(),
        }
    }

    /// A Kafka record timestamp (ms since the Unix epoch).
    pub fn at_millis(&self, millis: i64) -> f64 {
        let t = SystemTime::UNIX_EPOCH
            + Duration::from_millis(u64::try_from(millis).expect("a timestamp after 1970"));
        self.at(t)
    }
}

/// One request: its partition, when it was produced and when its first
/// status was published (seconds on the [`Clock`]).
#[derive(Debug, Clone, Copy)]
pub struct Waiting {
    pub partition: i32,
    pub produced: f64,
    pub first_status: f64,
}

/// What the windows are judged on.
pub struct Budget<'a> {
    /// The account's limit (`CHECKOUT_STRIPE_RATE_LIMIT`).
    pub limit: f64,
    pub replicas: usize,
    pub partitions: i32,
    /// See the module doc, condition 3.
    pub call_bound: f64,
    /// API requests per window, from the emulator.
    pub per_second: &'a [u32],
    pub requests: &'a [Waiting],
    /// (SIGKILL, first assignment of the restart) per worker kill.
    pub workers_down: &'a [(f64, f64)],
}

/// The verdict on each window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub second: usize,
    pub requests: u32,
    pub backlog: bool,
    pub worker_down: bool,
    /// Partitions with a request waiting all through the window.
    pub waiting_partitions: usize,
}

impl Budget<'_> {
    /// Each replica's burst on top of its share: a fifth of the share, at
    /// least one request (what the worker's limiter allows).
    pub fn burst_per_replica(&self) -> f64 {
        (self.limit / self.replicas as f64 / 5.0).max(1.0)
    }

    /// The most requests a window may see: the limit plus every replica's burst.
    pub fn ceiling(&self) -> f64 {
        self.limit + self.replicas as f64 * self.burst_per_replica()
    }

    /// The least requests a backlog window must see.
    pub fn floor(&self) -> f64 {
        0.9 * self.limit
    }

    /// Every complete window (all but the one in progress), judged.
    pub fn windows(&self) -> Vec<Window> {
        let complete = self.per_second.len().saturating_sub(1);
        (0..complete)
            .map(|second| {
                let (start, end) = (second as f64, second as f64 + 1.0);
                let worker_down = self
                    .workers_down
                    .iter()
                    .any(|(kill, back)| *kill < end && *back >= start);
                let waiting_partitions = (0..self.partitions)
                    .filter(|p| {
                        self.requests.iter().any(|r| {
                            r.partition == *p
                                && r.produced <= start
                                && r.first_status > end + self.call_bound
                        })
                    })
                    .count();
                let every_partition =
                    waiting_partitions == usize::try_from(self.partitions).expect("positive");
                Window {
                    second,
                    requests: self.per_second[second],
                    backlog: second >= 1 && !worker_down && every_partition,
                    worker_down,
                    waiting_partitions,
                }
            })
            .collect()
    }

    /// The windows the ceiling applies to: every complete one after the
    /// first that saw a request.
    pub fn after_first(windows: &[Window]) -> &[Window] {
        let first = windows
            .iter()
            .position(|w| w.requests > 0)
            .unwrap_or(windows.len());
        &windows[(first + 1).min(windows.len())..]
    }

    /// The windows of [`Budget::after_first`] over the ceiling: (not
    /// excused, excused as late arrivals). `windows` as [`Budget::windows`]
    /// returns them (indexed by second).
    pub fn over_ceiling(&self, windows: &[Window]) -> (Vec<Window>, Vec<Window>) {
        Self::after_first(windows)
            .iter()
            .filter(|w| f64::from(w.requests) > self.ceiling())
            .partition(|w| {
                let before = windows[w.second - 1].requests;
                f64::from(before + w.requests) > self.limit + self.ceiling()
            })
    }

    /// The backlog windows under the floor: (not excused, excused as late
    /// arrivals). `windows` as [`Budget::windows`] returns them.
    pub fn under_floor(&self, windows: &[Window]) -> (Vec<Window>, Vec<Window>) {
        windows
            .iter()
            .filter(|w| w.backlog && f64::from(w.requests) < self.floor())
            .partition(|w| {
                let after = windows.get(w.second + 1).map_or(0, |a| a.requests);
                f64::from(w.requests + after) < 2.0 * self.floor()
            })
    }
}

/// The series as lines: `second requests [B]acklog / [D]own / waiting partitions`.
pub fn render(windows: &[Window]) -> String {
    let mut out = String::new();
    for w in windows {
        let _ = writeln!(
            out,
            "  {:>3}s {:>3} req/s {}{} waiting_partitions={}",
            w.second,
            w.requests,
            if w.backlog { "B" } else { "-" },
            if w.worker_down { "D" } else { "-" },
            w.waiting_partitions
        );
    }
    out
}

/// Requests per partition, for the figures.
pub fn per_partition(requests: &[Waiting]) -> BTreeMap<i32, usize> {
    let mut counts = BTreeMap::new();
    for r in requests {
        *counts.entry(r.partition).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waiting(partition: i32, produced: f64, first_status: f64) -> Waiting {
        Waiting {
            partition,
            produced,
            first_status,
        }
    }

    #[test]
    fn a_window_is_a_backlog_window_only_with_a_request_waiting_on_every_partition() {
        let requests = [
            waiting(0, 0.5, 9.0),
            waiting(1, 0.5, 9.0),
            // Partition 2 waits only until its status at 4.0.
            waiting(2, 0.5, 4.0),
        ];
        let per_second = [0, 25, 25, 25, 25, 25, 0];
        let budget = Budget {
            limit: 25.0,
            replicas: 3,
            partitions: 3,
            call_bound: 1.0,
            per_second: &per_second,
            requests: &requests,
            workers_down: &[],
        };
        let backlog: Vec<usize> = budget
            .windows()
            .iter()
            .filter(|w| w.backlog)
            .map(|w| w.second)
            .collect();
        // Second 0 never counts; second 1 ends at 2.0, and 2.0 + 1.0 < 4.0;
        // second 2 ends at 3.0 and partition 2's status at 4.0 is not later
        // than 3.0 + 1.0.
        assert_eq!(backlog, [1]);
    }

    #[test]
    fn a_window_meeting_a_dead_worker_is_no_backlog_window() {
        let requests = [waiting(0, 0.0, 20.0)];
        let per_second = [0, 10, 10, 10, 10, 10];
        let budget = Budget {
            limit: 10.0,
            replicas: 1,
            partitions: 1,
            call_bound: 1.0,
            per_second: &per_second,
            requests: &requests,
            workers_down: &[(2.5, 3.2)],
        };
        let windows = budget.windows();
        let down: Vec<usize> = windows
            .iter()
            .filter(|w| w.worker_down)
            .map(|w| w.second)
            .collect();
        assert_eq!(down, [2, 3]);
        let backlog: Vec<usize> = windows
            .iter()
            .filter(|w| w.backlog)
            .map(|w| w.second)
            .collect();
        assert_eq!(backlog, [1, 4], "the last window (in progress) is left out");
    }

    #[test]
    fn late_arrivals_are_excused_and_a_budget_overrun_is_not() {
        let requests = [waiting(0, 0.0, 100.0)];
        // 1: first with traffic; 3 over the ceiling after a short 2 (late
        // arrivals); 5 over after a full 4 (overrun); 6 short in a backlog
        // but made up by 7; 8 short and not made up by 9.
        let per_second = [0, 25, 14, 32, 25, 31, 18, 30, 10, 25, 0];
        let budget = Budget {
            limit: 25.0,
            replicas: 3,
            partitions: 1,
            call_bound: 1.0,
            per_second: &per_second,
            requests: &requests,
            workers_down: &[],
        };
        let windows = budget.windows();
        let seconds = |ws: Vec<Window>| ws.iter().map(|w| w.second).collect::<Vec<_>>();
        let (over, late) = budget.over_ceiling(&windows);
        assert_eq!((seconds(over), seconds(late)), (vec![5], vec![3]));
        let (under, late) = budget.under_floor(&windows);
        assert_eq!((seconds(under), seconds(late)), (vec![8], vec![2, 6]));
    }

    #[test]
    fn the_ceiling_is_the_limit_plus_each_replicas_burst() {
        let budget = Budget {
            limit: 25.0,
            replicas: 3,
            partitions: 3,
            call_bound: 1.0,
            per_second: &[],
            requests: &[],
            workers_down: &[],
        };
        assert!((budget.ceiling() - (25.0 + 3.0 * 25.0 / 15.0)).abs() < 1e-9);
        let small = Budget {
            limit: 6.0,
            ..budget
        };
        assert!(
            (small.ceiling() - 9.0).abs() < 1e-9,
            "at least one request each"
        );
        assert!((budget.floor() - 22.5).abs() < 1e-9);
    }
}
