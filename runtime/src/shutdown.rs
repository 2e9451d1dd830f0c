//! Shutdown: a [`CancellationToken`] every task watches and a [`TaskTracker`]
//! that `main` waits on, bounded by a grace period.
//!
//! Signal policy (as Pushpin): the first SIGTERM or SIGINT cancels the token
//! and lets tasks finish; a second one exits at once.

use futures_util::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The token tasks watch and the tracker `main` waits on.
#[derive(Clone, Default)]
pub struct Shutdown {
    /// Cancelled when the process should stop.
    pub token: CancellationToken,
    /// Every long-lived task, so `main` can wait for them.
    pub tracker: TaskTracker,
}

impl Shutdown {
    /// A fresh, uncancelled shutdown pair.
    pub fn new() -> Shutdown {
        Shutdown::default()
    }

    /// Waits for tracked tasks to finish, at most `grace`; returns whether
    /// they all did.
    pub async fn drain(&self, grace: Duration) -> bool {
        self.tracker.close();
        tokio::time::timeout(grace, self.tracker.wait())
            .await
            .is_ok()
    }
}

/// Cancels `token` on the first SIGTERM/SIGINT; exits the process on the second.
pub fn shutdown_on_signals(token: CancellationToken) -> std::io::Result<()> {
    let mut signals = signal_hook_tokio::Signals::new([SIGTERM, SIGINT])?;
    tokio::spawn(async move {
        let mut seen = 0;
        while let Some(signal) = signals.next().await {
            seen += 1;
            if seen == 1 {
                token.cancel();
                tracing::info!(signal, "shutting down");
            } else {
                tracing::warn!(signal, "second signal: exiting now");
                std::process::exit(1);
            }
        }
    });
    Ok(())
}

/// Returns a channel that receives one message per SIGHUP (reload request).
pub fn reload_on_sighup() -> std::io::Result<mpsc::Receiver<()>> {
    let mut signals = signal_hook_tokio::Signals::new([SIGHUP])?;
    // One pending reload is enough: several SIGHUPs before the first is
    // handled mean the same thing.
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(async move {
        while signals.next().await.is_some() {
            let _ = tx.try_send(());
        }
    });
    Ok(rx)
}
