//! In-process wake-ups: a new notification wakes the delivery workers, a delivered
//! IN_APP notice wakes the open Subscribe streams. Writers signal after their commit
//! (the event consumer through the events runner's `committed` hook), so a woken
//! worker finds the rows. Both also poll, so notices written by other replicas are
//! found within a poll interval.

use tokio::sync::watch;

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

    pub fn in_app_sent(&self) {
        self.in_app.send_modify(|count| *count += 1);
    }
}
