//! Every RPC the demo makes, timed as the client sees it, by method: what each phase's
//! wall time is made of, and the rate each service sustained (report "Calls by RPC").
//! Calls run `DEMO_CONCURRENCY` at a time, so a method's calls/s is about
//! in-flight / mean latency; the sum of latencies is not wall time.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Serialize;

/// Attempts of a call that answers UNAVAILABLE ("retry with the same request_id"). Under
/// load account's calls to the ledger time out now and then; the same request id makes
/// a retry return the first call's outcome, never a second effect, so the run's figures
/// do not depend on when that happened (the fallback of paying what GetLoan shows, with
/// a new request id, prepaid principal and changed the figures of one run).
const UNAVAILABLE_ATTEMPTS_MAX: u32 = 6;
const RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// Latencies kept per method (a bound on memory; calls past it are only counted).
/// The default run makes about 150,000 calls of all methods together.
const SAMPLES_PER_METHOD_MAX: usize = 1_000_000;

#[derive(Debug, Default)]
struct Method {
    calls: u64,
    total_ms: f64,
    samples: Vec<f64>,
    retried: u64,
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
    /// Calls that answered UNAVAILABLE and were sent again with the same request id.
    pub retried_unavailable: u64,
}

impl Calls {
    /// Awaits `call`, recording its latency under `method` whatever it answers.
    pub async fn time<T>(&self, method: &'static str, call: impl Future<Output = T>) -> T {
        let started = Instant::now();
        let answer = call.await;
        self.record(method, started.elapsed().as_secs_f64() * 1000.0);
        answer
    }

    /// Like [`Calls::time`], but a call that answers UNAVAILABLE is made again (at most
    /// UNAVAILABLE_ATTEMPTS_MAX times, backing off): `call` must send the same request,
    /// request id included, every time.
    pub async fn idempotent<T, F, Fut>(
        &self,
        method: &'static str,
        mut call: F,
    ) -> Result<T, tonic::Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, tonic::Status>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.time(method, call()).await {
                Err(status)
                    if status.code() == tonic::Code::Unavailable
                        && attempt < UNAVAILABLE_ATTEMPTS_MAX =>
                {
                    self.lock().entry(method).or_default().retried += 1;
                    tokio::time::sleep(RETRY_BACKOFF * attempt).await;
                }
                answer => return answer,
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<&'static str, Method>> {
        // A poisoned lock only means another task panicked while recording: the
        // figures are still counts and latencies.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn record(&self, method: &'static str, ms: f64) {
        let mut methods = self.lock();
        let entry = methods.entry(method).or_default();
        entry.calls += 1;
        entry.total_ms += ms;
        if entry.samples.len() < SAMPLES_PER_METHOD_MAX {
            entry.samples.push(ms);
        }
    }

    /// Per method: calls, mean, p50/p99 (nearest rank) and the summed latency.
    pub fn figures(&self) -> BTreeMap<String, CallFigures> {
        let methods = self.lock();
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
                        retried_unavailable: method.retried,
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

    #[tokio::test]
    async fn unavailable_is_retried_and_other_errors_are_not() {
        let calls = Calls::default();
        let mut answers = vec![
            Ok(5),
            Err(tonic::Status::unavailable("ledger")),
            Err(tonic::Status::unavailable("ledger")),
        ];
        let answer = calls
            .idempotent("Repay", || {
                std::future::ready(answers.pop().expect("an answer"))
            })
            .await;
        assert_eq!(answer.ok(), Some(5));
        let refused = calls
            .idempotent("Borrow", || {
                std::future::ready(Err::<(), _>(tonic::Status::failed_precondition("frozen")))
            })
            .await;
        assert_eq!(
            refused.err().map(|s| s.code()),
            Some(tonic::Code::FailedPrecondition)
        );
        let figures = calls.figures();
        assert_eq!(
            (figures["Repay"].calls, figures["Repay"].retried_unavailable),
            (3, 2)
        );
        assert_eq!(
            (
                figures["Borrow"].calls,
                figures["Borrow"].retried_unavailable
            ),
            (1, 0)
        );
    }
}
