//! Stopping: the one shutdown future every binary waits on ([`signal`]:
//! SIGINT or SIGTERM), closing Kafka clients without hanging
//! ([`close_within`], [`drop_within`]), and running a binary's async `main`
//! so that the process exits even when a blocking call never returns
//! ([`block_on`]). Library `run` functions take any `Future<Output = ()>`
//! instead of [`signal`], so tests and the all-in-one launcher can stop them
//! on their own terms.
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
