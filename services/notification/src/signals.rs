//! In-process wake-ups: a new notification wakes the delivery workers, a delivered
//! IN_APP notice wakes the open Subscribe streams. Both also poll, so notices written
//! by other replicas (or committed after the wake-up) are found within a poll interval.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use tokio::sync::watch;

/// A wake-up sent again this long after the first, for writers that signal before
/// their transaction commits (the event consumer).
const LATE_WAKE: Duration = Duration::from_millis(25);

#[derive(Debug, Clone)]
pub struct Signals {
    delivery: watch::Sender<u64>,
    in_app: watch::Sender<u64>,
    /// A late-wake task runs: later `created_soon` calls ride on it (one timer task
    /// under load, not one per event).
    late_wake_pending: Arc<AtomicBool>,
    /// A `created_soon` call came since the late-wake task last slept.
    late_wake_again: Arc<AtomicBool>,
}

impl Default for Signals {
    fn default() -> Self {
        Self {
            delivery: watch::channel(0).0,
            in_app: watch::channel(0).0,
            late_wake_pending: Arc::new(AtomicBool::new(false)),
            late_wake_again: Arc::new(AtomicBool::new(false)),
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
        self.late_wake_again.store(true, Ordering::Release);
        if self.late_wake_pending.swap(true, Ordering::AcqRel) {
            return;
        }
        let signals = self.clone();
        // Every call is followed by a wake-up at least LATE_WAKE after it: the task
        // sleeps again while calls keep coming, and ends only after a quiet sleep.
        tokio::spawn(async move {
            loop {
                signals.late_wake_again.store(false, Ordering::Release);
                tokio::time::sleep(LATE_WAKE).await;
                signals.created();
                if signals.late_wake_again.load(Ordering::Acquire) {
                    continue;
                }
                signals.late_wake_pending.store(false, Ordering::Release);
                // A call between the check and the store found the task still running.
                if !signals.late_wake_again.load(Ordering::Acquire)
                    || signals.late_wake_pending.swap(true, Ordering::AcqRel)
                {
                    break;
                }
            }
        });
    }

    pub fn in_app_sent(&self) {
        self.in_app.send_modify(|count| *count += 1);
    }
}
