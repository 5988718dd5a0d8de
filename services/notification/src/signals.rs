//! In-process wake-ups: a new notification wakes the delivery workers, a delivered
//! IN_APP notice wakes the open Subscribe streams. Both also poll, so notices written
//! by other replicas (or committed after the wake-up) are found within a poll interval.

use std::time::Duration;

use tokio::sync::watch;

/// A wake-up sent again this long after the first, for writers that signal before
/// their transaction commits (the event consumer).
const LATE_WAKE: Duration = Duration::from_millis(25);

#[derive(Debug, Clone)]
pub struct Signals {
    delivery: watch::Sender<u64>,
    in_app: watch::Sender<u64>,
}

impl Default for Signals {
    fn default() -> Self {
        Self {
            delivery: watch::channel(0).0,
            in_app: watch::channel(0).0,
        }
    }
}

impl Signals {
    pub fn delivery(&self) -> watch::Receiver<u64> {
        self.delivery.subscribe()
    }

    pub fn in_app(&self) -> watch::Receiver<u64> {
        self.in_app.subscribe()
    }

    /// New notifications are committed: wake the workers and the streams.
    pub fn created(&self) {
        self.delivery.send_modify(|count| *count += 1);
        self.in_app_sent();
    }

    /// New notifications are about to commit (the caller cannot see the commit):
    /// wake now and again shortly after.
    pub fn created_soon(&self) {
        self.created();
        let signals = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(LATE_WAKE).await;
            signals.created();
        });
    }

    pub fn in_app_sent(&self) {
        self.in_app.send_modify(|count| *count += 1);
    }
}
