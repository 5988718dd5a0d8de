//! Waiting for the event pipeline to go quiet before each portfolio review and before
//! the notices are counted.
//!
//! The book's last day ends with RunEndOfDay, whose events (overdue instalments, new
//! defaulters) travel on: ledger outbox -> stream -> scoring's consumer (live line
//! policy: a freeze is AdjustCreditLine) -> account's outbox -> stream -> notification.
//! Listed right away, the notices of that tail depend on how fast the run was (a run at
//! concurrency 32 counted 5 CREDIT_LINE_CHANGED notices fewer than one at 8, every other
//! figure equal). So the demo waits until every service's admin port shows no outbox
//! backlog, no consumer lag or pending entries, and no event published or consumed for
//! a while (the gauges are refreshed by the relay and consumers in rounds, so zero
//! gauges alone could be a stale reading).

use std::time::{Duration, Instant};

use anyhow::Context;

use e2e::pagerank::metrics_page;

/// How long the demo waits at most (then it counts what is there and says so).
pub const WAIT_MAX: Duration = Duration::from_secs(120);
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Nothing published or consumed for this long (the relay's idle poll and the
/// consumers' block are 1 s each on `make run`).
const STILL_FOR: Duration = Duration::from_secs(3);

/// What one reading of the admin pages says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Reading {
    /// Outbox backlog + consumer lag + pending, over every service and group.
    waiting: i64,
    /// Events published + consumed, over every service and group.
    moved: i64,
}

/// Sums the events gauges and counters on one Prometheus page.
fn reading_of(page: &str) -> Reading {
    let mut reading = Reading {
        waiting: 0,
        moved: 0,
    };
    for line in page.lines().filter(|line| !line.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let metric = name.split('{').next().unwrap_or(name);
        match metric {
            "events_outbox_backlog" | "events_consumer_lag" | "events_consumer_pending" => {
                reading.waiting += value as i64;
            }
            "events_published_total" | "events_consumed_total" => reading.moved += value as i64,
            _ => {}
        }
    }
    reading
}

/// Waits (at most [`WAIT_MAX`]) until the events of every service have settled;
/// returns whether they did.
pub async fn wait_for_events(admins: Vec<String>) -> anyhow::Result<bool> {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let read = || -> anyhow::Result<Reading> {
            let mut total = Reading {
                waiting: 0,
                moved: 0,
            };
            for admin in &admins {
                let reading = reading_of(&metrics_page(admin)?);
                total.waiting += reading.waiting;
                total.moved += reading.moved;
            }
            Ok(total)
        };
        let mut last = read()?;
        let mut still_since = Instant::now();
        while started.elapsed() < WAIT_MAX {
            std::thread::sleep(POLL_INTERVAL);
            let now = read()?;
            if now != last || now.waiting > 0 {
                still_since = Instant::now();
                last = now;
            } else if still_since.elapsed() >= STILL_FOR {
                return Ok(true);
            }
        }
        Ok(false)
    })
    .await
    .context("the events wait")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_and_counters_are_summed_over_groups() {
        let page = "HTTP/1.0 200 OK\r\n\r\n# TYPE events_outbox_backlog gauge\n\
                    events_outbox_backlog 3\n\
                    events_published_total 40\n\
                    events_consumer_lag{group=\"notification\"} 2\n\
                    events_consumer_pending{group=\"notification\"} 1\n\
                    events_consumed_total{group=\"notification\"} 7\n\
                    events_consumed_total{group=\"scoring\"} 5\n\
                    events_dead_letters_total{group=\"scoring\"} 9\n";
        assert_eq!(
            reading_of(page),
            Reading {
                waiting: 6,
                moved: 52
            }
        );
        assert_eq!(reading_of("scoring_pagerank_iterations 70\n").waiting, 0);
    }
}
