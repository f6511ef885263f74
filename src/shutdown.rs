//! Stopping: the one shutdown future every binary waits on ([`signal`]:
//! SIGINT or SIGTERM), the stop signal a service passes to its parts
//! ([`Stop`] and its clonable [`Stopping`]), waiting for tasks up to a grace
//! period and then aborting them ([`drain`], [`drain_all`]), closing Kafka
//! clients without hanging ([`close_within`], [`drop_within`]), and running
//! a binary's async `main` so that the process exits even when a blocking
//! call never returns ([`block_on`]). Library `run` functions take any
//! `Future<Output = ()>` instead of [`signal`], so tests and the all-in-one
//! launcher can stop them on their own terms.
//!
//! A service's `run_until_stopped(shutdown)` makes one [`Stop`], hands a
//! [`Stopping`] to each part (loops `select!` on [`Stopping::stopped`]),
//! fires [`Stop::stop`] when `shutdown` resolves (or a part ends on its
//! own), then [`drain`]s its tasks (mini-redis `Shutdown`, linkerd2-proxy
//! `drain`).
//!
//! Why closing needs care: dropping a librdkafka consumer closes it, and a
//! group member's close waits for the broker (leave the group, commit); a
//! synchronous commit does too. With the broker already gone (it stopped
//! first, as in `docker compose down`) that wait never ends. Done on a
//! runtime thread it blocks the runtime; done in `spawn_blocking` it blocks
//! the runtime's drop, which waits for every blocking task. So it is done on
//! a plain thread of its own, waited for up to a deadline, then left behind:
//! a detached thread does not keep the process alive.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinError, JoinHandle, JoinSet};

/// The longest a Kafka client gets to close at shutdown before it is left
/// behind (closing takes milliseconds while the broker answers).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a binary's runtime waits, once `main`'s future returned, for
/// blocking tasks that are still running.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(1);

/// Resolves when the process is asked to stop (SIGINT or SIGTERM).
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        () = term => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// The stopping side of a service's stop signal: [`Stop::stop`] reaches
/// every [`Stopping`] made from it, at once and for good. Dropping it stops
/// them too, so a part never waits on a signal nobody can send.
#[derive(Debug)]
pub struct Stop(watch::Sender<bool>);

impl Default for Stop {
    fn default() -> Self {
        Self(watch::Sender::new(false))
    }
}

impl Stop {
    /// A signal nobody has fired yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A receiver for one part (clone it for more).
    pub fn stopping(&self) -> Stopping {
        Stopping(self.0.subscribe())
    }

    /// The shutdown future of a part that takes one (its
    /// `run_until_stopped(shutdown)`): resolves once this signal fires.
    pub fn when_stopped(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut stopping = self.stopping();
        async move { stopping.stopped().await }
    }

    /// Tells every [`Stopping`] to stop (again is harmless).
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// Whether [`Self::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// Drives `work` to its end; when `shutdown` resolves first, fires this
    /// signal and goes on driving `work`, which sees it and winds down.
    pub async fn run_until<T>(
        &self,
        shutdown: impl Future<Output = ()>,
        work: impl Future<Output = T>,
    ) -> T {
        tokio::pin!(work);
        tokio::select! {
            ended = &mut work => return ended,
            () = shutdown => self.stop(),
        }
        work.await
    }
}

/// The receiving side of a [`Stop`]: cheap to clone, one per part.
#[derive(Debug, Clone)]
pub struct Stopping(watch::Receiver<bool>);

impl Stopping {
    /// Whether the part should stop (stopped, or the [`Stop`] is gone).
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Resolves once the part should stop, at once if it already should.
    /// Holds nothing across the await, so loops may `select!` on it freely.
    pub async fn stopped(&mut self) {
        let _ = self.0.wait_for(|stop| *stop).await;
    }
}

/// Waits up to `grace` for `task`, then aborts it, logging `what` (what it
/// was doing, e.g. "calls in flight"). Returns its result, or `None` when
/// it was aborted.
pub async fn drain<T>(
    what: &str,
    grace: Duration,
    task: &mut JoinHandle<T>,
) -> Option<Result<T, JoinError>> {
    match tokio::time::timeout(grace, &mut *task).await {
        Ok(ended) => Some(ended),
        Err(_) => {
            tracing::warn!(
                ?grace,
                "{what} still running after the grace period: aborting"
            );
            task.abort();
            None
        }
    }
}

/// How [`drain_all`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drained {
    /// Every task ended within the grace period.
    All,
    /// This many were still running and were aborted.
    Aborted(usize),
}

/// Waits up to `grace` for every task of `tasks`, passing each result to
/// `ended`, then aborts those still running, logging `what` and how many.
/// It does not wait for the aborted ones: one stuck in a blocking call would
/// never end.
pub async fn drain_all<T: 'static>(
    what: &str,
    grace: Duration,
    tasks: &mut JoinSet<T>,
    mut ended: impl FnMut(Result<T, JoinError>),
) -> Drained {
    let all = async {
        while let Some(result) = tasks.join_next().await {
            ended(result);
        }
    };
    if tokio::time::timeout(grace, all).await.is_ok() {
        return Drained::All;
    }
    let left = tasks.len();
    tracing::warn!(
        ?grace,
        left,
        "{what} still running after the grace period: aborting"
    );
    tasks.abort_all();
    Drained::Aborted(left)
}

/// Runs `close` (a final commit, dropping a consumer or a producer: calls
/// that block while librdkafka talks to the broker) on a thread of its own
/// and waits for it at most `deadline`. Returns whether it finished; if not,
/// it is logged and left running, and the caller goes on stopping.
pub async fn close_within(
    what: &'static str,
    deadline: Duration,
    close: impl FnOnce() + Send + 'static,
) -> bool {
    let (done, finished) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name(format!("close {what}"))
        .spawn(move || {
            close();
            let _ = done.send(());
        });
    if let Err(e) = spawned {
        tracing::warn!(what, error = %e, "cannot start a thread to close a Kafka client");
        return false;
    }
    match tokio::time::timeout(deadline, finished).await {
        Ok(Ok(())) => true,
        // The thread panicked while closing: nothing left to wait for.
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::warn!(
                what,
                ?deadline,
                "Kafka client did not close in time (is the broker gone?): leaving it behind"
            );
            false
        }
    }
}

/// Drops `client` as [`close_within`] closes: off the runtime, waiting at
/// most `deadline`.
pub async fn drop_within<T: Send + 'static>(
    what: &'static str,
    deadline: Duration,
    client: T,
) -> bool {
    close_within(what, deadline, move || drop(client)).await
}

/// Runs a binary's async `main` on a multi-threaded runtime and returns its
/// output, waiting at most [`EXIT_TIMEOUT`] for blocking tasks still running
/// (`#[tokio::main]` would wait for them without end).
///
/// # Errors
/// When the runtime cannot be built.
pub fn block_on<F: Future>(main: F) -> std::io::Result<F::Output> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let output = runtime.block_on(main);
    runtime.shutdown_timeout(EXIT_TIMEOUT);
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_close_that_never_returns_is_left_behind_at_the_deadline() {
        let started = tokio::time::Instant::now();
        let (_keep, never) = std::sync::mpsc::channel::<()>();
        let stuck = move || {
            let _ = never.recv();
        };
        assert!(!close_within("stuck", Duration::from_millis(100), stuck).await);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(drop_within("quick", Duration::from_secs(5), vec![1u8]).await);
    }

    #[tokio::test]
    async fn stop_reaches_every_clone_and_stopped_returns_at_once_after() {
        let stop = Stop::new();
        let mut first = stop.stopping();
        let mut second = first.clone();
        let waiting = tokio::spawn(async move { second.stopped().await });
        assert!(!first.is_stopping() && !stop.is_stopped());
        stop.stop();
        waiting.await.unwrap();
        assert!(first.is_stopping() && stop.is_stopped());
        // Already stopped: no wait, and a receiver made afterwards sees it too.
        first.stopped().await;
        stop.stopping().stopped().await;
        stop.when_stopped().await;
    }

    #[tokio::test]
    async fn a_dropped_stop_stops_its_receivers() {
        let stop = Stop::new();
        let mut stopping = stop.stopping();
        drop(stop);
        assert!(stopping.is_stopping());
        stopping.stopped().await;
    }

    #[tokio::test(start_paused = true)]
    async fn run_until_fires_the_stop_on_shutdown_and_waits_for_the_work() {
        let stop = Stop::new();
        let mut stopping = stop.stopping();
        let work = async move {
            stopping.stopped().await;
            "wound down"
        };
        let shutdown = tokio::time::sleep(Duration::from_secs(1));
        assert_eq!(stop.run_until(shutdown, work).await, "wound down");
        assert!(stop.is_stopped());
        // Work that ends first does not fire it.
        let stop = Stop::new();
        assert_eq!(stop.run_until(std::future::pending(), async { 7 }).await, 7);
        assert!(!stop.is_stopped());
    }

    #[tokio::test(start_paused = true)]
    async fn drain_waits_up_to_the_grace_period_then_aborts() {
        let grace = Duration::from_secs(10);
        let mut quick = tokio::spawn(tokio::time::sleep(Duration::from_secs(3)));
        assert!(matches!(
            drain("quick", grace, &mut quick).await,
            Some(Ok(()))
        ));

        let started = tokio::time::Instant::now();
        let mut stuck = tokio::spawn(std::future::pending::<()>());
        assert!(drain("stuck", grace, &mut stuck).await.is_none());
        assert_eq!(started.elapsed(), grace);
        assert!(stuck.await.unwrap_err().is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn drain_all_collects_what_ends_and_aborts_the_rest() {
        let grace = Duration::from_secs(10);
        let mut tasks = JoinSet::new();
        for secs in [1, 5, 60, 3600] {
            tasks.spawn(async move {
                tokio::time::sleep(Duration::from_secs(secs)).await;
                secs
            });
        }
        let started = tokio::time::Instant::now();
        let mut ended = Vec::new();
        let drained = drain_all("sleepers", grace, &mut tasks, |r| ended.push(r.unwrap())).await;
        assert_eq!(drained, Drained::Aborted(2));
        assert_eq!(ended, [1, 5]);
        assert_eq!(started.elapsed(), grace);
        while let Some(aborted) = tasks.join_next().await {
            assert!(aborted.unwrap_err().is_cancelled());
        }

        tasks.spawn(async { 1 });
        assert_eq!(
            drain_all("one", grace, &mut tasks, |_| {}).await,
            Drained::All
        );
    }

    #[test]
    fn the_runtime_exits_although_a_blocking_task_never_ends() {
        let started = std::time::Instant::now();
        let (keep, never) = std::sync::mpsc::channel::<()>();
        let answer = block_on(async move {
            tokio::task::spawn_blocking(move || {
                let _ = never.recv();
            });
            42
        })
        .unwrap();
        assert_eq!(answer, 42);
        assert!(started.elapsed() < EXIT_TIMEOUT + Duration::from_secs(2));
        drop(keep);
    }
}
