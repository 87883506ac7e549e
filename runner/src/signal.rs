//! Ctrl-C and SIGTERM as a future, so that every long step can race it and
//! clean up (remove its container) before returning [`Interrupted`].
//!
//! The handlers are installed once, first thing in `commands::run`: a signal
//! that arrives between two steps is remembered, not lost, and never kills
//! the process with a container still standing.

use std::future::Future;
use std::sync::OnceLock;

use tokio_util::sync::CancellationToken;

use crate::exit::Interrupted;

static TOKEN: OnceLock<CancellationToken> = OnceLock::new();

fn token() -> &'static CancellationToken {
    TOKEN.get_or_init(CancellationToken::new)
}

/// Installs the SIGINT and SIGTERM handlers. Call once, inside the runtime.
pub fn install() {
    let token = token().clone();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt()).ok();
    if term.is_none() || int.is_none() {
        tracing::warn!("cannot install signal handlers; Ctrl-C may leave containers behind");
    }
    tokio::spawn(async move {
        let term = async {
            match term.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        let int = async {
            match int.as_mut() {
                Some(s) => s.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term => {}
            _ = int => {}
        }
        tracing::info!("signal received; stopping and cleaning up");
        token.cancel();
    });
}

/// Whether a signal asked us to stop: for long blocking work (making the
/// source tree), which checks between files and returns [`Interrupted`].
pub fn stop_requested() -> bool {
    token().is_cancelled()
}

/// Runs `fut` unless a signal comes first; then `fut` is dropped (which
/// kills child processes started with `kill_on_drop`) and the result is
/// [`Interrupted`]. Callers remove their containers after this returns.
pub async fn cancellable<T>(fut: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let token = token();
    if token.is_cancelled() {
        return Err(Interrupted.into());
    }
    tokio::select! {
        r = fut => r,
        _ = token.cancelled() => Err(Interrupted.into()),
    }
}
