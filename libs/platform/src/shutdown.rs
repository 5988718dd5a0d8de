//! The process-wide stop signal: SIGTERM (Kubernetes) or SIGINT (Ctrl-C).

use std::future::Future;

use tokio::signal::unix::{Signal, SignalKind, signal as unix_signal};

/// Resolves on the first SIGTERM or SIGINT.
///
/// The handlers are registered when this is called, not when the future is first
/// polled: a SIGTERM that arrives while the service is still starting, or before the
/// server first polls the future, is kept and drains the service, instead of killing
/// the process with the default action. Must be called inside the Tokio runtime.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    let terminate = register(SignalKind::terminate(), "SIGTERM");
    let interrupt = register(SignalKind::interrupt(), "SIGINT");
    async move {
        tokio::select! {
            () = receive(terminate) => tracing::info!("SIGTERM received"),
            () = receive(interrupt) => tracing::info!("SIGINT received"),
        }
    }
}

fn register(kind: SignalKind, name: &'static str) -> Option<Signal> {
    unix_signal(kind)
        .map_err(|err| tracing::error!(%err, "cannot listen for {name}"))
        .ok()
}

async fn receive(stream: Option<Signal>) {
    match stream {
        Some(mut stream) => {
            stream.recv().await;
        }
        None => std::future::pending::<()>().await,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// A SIGTERM delivered after `signal()` returned but before its future is polled is
    /// not lost (and does not kill the test process).
    #[tokio::test]
    async fn a_sigterm_before_the_first_poll_is_kept() {
        let stop = super::signal();
        let pid = std::process::id().to_string();
        let sent = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(sent.success());
        tokio::time::timeout(Duration::from_secs(5), stop)
            .await
            .expect("the early SIGTERM resolves the stop signal");
    }
}
