//! A shutdown trigger shared by the server, the admin port and anything else that must stop.

use tokio_util::sync::CancellationToken;

/// Cloneable shutdown trigger. Fired by SIGTERM/SIGINT (see [`Shutdown::on_signals`]) or by
/// [`Shutdown::trigger`] (tests, fatal errors).
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
}

impl Shutdown {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts shutdown. Idempotent.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Completes once shutdown has been triggered.
    pub async fn triggered(&self) {
        self.token.cancelled().await
    }

    /// Spawns a task that triggers shutdown on SIGTERM (Kubernetes) or SIGINT (Ctrl-C).
    /// Must be called from within a Tokio runtime.
    pub fn on_signals(&self) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                name = wait_for_signal() => {
                    tracing::info!(signal = name, "shutdown requested");
                    this.trigger();
                }
                () = this.triggered() => {}
            }
        })
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    match (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        (Err(e), _) | (_, Err(e)) => {
            // Without handlers the process would die on SIGTERM without draining; say so loudly.
            tracing::error!(error = %e, "cannot install signal handlers; graceful shutdown disabled");
            std::future::pending().await
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    match tokio::signal::ctrl_c().await {
        Ok(()) => "Ctrl-C",
        Err(_) => std::future::pending().await,
    }
}
