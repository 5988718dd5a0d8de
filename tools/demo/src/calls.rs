//! Every RPC the demo makes, timed as the client sees it, by method: what each phase's
//! wall time is made of, and the rate each service sustained (report "Calls by RPC").
//! Calls run `DEMO_CONCURRENCY` at a time, so a method's calls/s is about
//! in-flight / mean latency; the sum of latencies is not wall time.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::Instant,
};

use serde::Serialize;

/// Latencies kept per method (a bound on memory; calls past it are only counted).
/// The default run makes about 150,000 calls of all methods together.
const SAMPLES_PER_METHOD_MAX: usize = 1_000_000;

#[derive(Debug, Default)]
struct Method {
    calls: u64,
    total_ms: f64,
    samples: Vec<f64>,
}

/// Shared by every task of the run (cheap to clone).
#[derive(Debug, Clone, Default)]
pub struct Calls(Arc<Mutex<BTreeMap<&'static str, Method>>>);

/// One method's figures in the report (client-side latencies).
#[derive(Debug, Clone, Serialize)]
pub struct CallFigures {
    pub calls: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Sum of the calls' latencies (not wall time: calls overlap).
    pub seconds_in_flight: f64,
}

impl Calls {
    /// Awaits `call`, recording its latency under `method` whatever it answers.
    pub async fn time<T>(&self, method: &'static str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let answer = call.await;
        self.record(method, started.elapsed().as_secs_f64() * 1000.0);
        answer
    }

    fn record(&self, method: &'static str, ms: f64) {
        // A poisoned lock only means another task panicked while recording: the
        // figures are still counts and latencies.
        let mut methods = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = methods.entry(method).or_default();
        entry.calls += 1;
        entry.total_ms += ms;
        if entry.samples.len() < SAMPLES_PER_METHOD_MAX {
            entry.samples.push(ms);
        }
    }

    /// Per method: calls, mean, p50/p99 (nearest rank) and the summed latency.
    pub fn figures(&self) -> BTreeMap<String, CallFigures> {
        let methods = self
            .0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        methods
            .iter()
            .map(|(name, method)| {
                let mut sorted = method.samples.clone();
                sorted.sort_by(f64::total_cmp);
                (
                    (*name).to_owned(),
                    CallFigures {
                        calls: method.calls,
                        mean_ms: method.total_ms / method.calls.max(1) as f64,
                        p50_ms: crate::report::percentile(&sorted, 0.50),
                        p99_ms: crate::report::percentile(&sorted, 0.99),
                        seconds_in_flight: method.total_ms / 1000.0,
                    },
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn calls_are_counted_and_timed_by_method() {
        let calls = Calls::default();
        let answer = calls
            .time("Borrow", async {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                7
            })
            .await;
        assert_eq!(answer, 7);
        calls.time("Repay", async {}).await;
        calls.time("Repay", async {}).await;
        let figures = calls.figures();
        assert_eq!(figures["Borrow"].calls, 1);
        assert!(figures["Borrow"].mean_ms >= 20.0);
        assert_eq!(figures["Repay"].calls, 2);
        assert!(figures["Repay"].p99_ms < figures["Borrow"].p50_ms);
    }
}
