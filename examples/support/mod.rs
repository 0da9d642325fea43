//! What every example does the same way: logs on stderr (results stay on stdout), colour only on a terminal, and a
//! stop on Ctrl-C or SIGTERM alike.

#![allow(dead_code)]

use std::io::IsTerminal;

/// Logs to stderr, filtered by `RUST_LOG` or `default` (e.g. `"warn"`).
pub(crate) fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// Resolves on Ctrl-C or (on Unix) SIGTERM, as a service manager sends it.
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
