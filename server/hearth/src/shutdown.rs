//! The future that resolves when the process is asked to stop (SIGINT or
//! SIGTERM). Touches only signal handlers.

use tracing::info;

/// Resolves on Ctrl-C (SIGINT) or SIGTERM, whichever comes first.
pub async fn signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
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
    tokio::select! {
        () = ctrl_c => info!("SIGINT received, shutting down"),
        () = term => info!("SIGTERM received, shutting down"),
    }
}
