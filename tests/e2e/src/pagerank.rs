//! Waiting for scoring's PageRank refresh of the ingested graph before anyone applies
//! (the e2e onboarding and `make demo`).
//!
//! `defaulter_pagerank` is served from the last refresh (docs/scoring-features.md): a
//! refresh every `SCORING_PAGERANK_REFRESH_SECONDS` (scripts/run.sh: 15 s on the dev
//! stack, 2 s in an e2e stack) and one about a second after a new known defaulter asks
//! (requests coalesce; one refresh at a time). Applications that
//! start right after ingestion are therefore scored with whatever graph the last
//! refresh happened to see — a partial one, or none — and two runs of one seed decided
//! differently. The public signal of a refresh is the admin port's
//! `scoring_pagerank_refreshes_total{result="done"}`: once it has grown by two after
//! the last batch was acknowledged, a refresh has started (the second one) after that
//! and finished, so every later read sees the whole ingested graph.

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use anyhow::Context;

/// How long the demo waits for the refresh at most (then it goes on and says so).
pub const WAIT_MAX: Duration = Duration::from_secs(300);
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// The metrics page is a few kilobytes; read at most this much of it.
const METRICS_BYTES_MAX: u64 = 4 << 20;
const COUNTER: &str = "scoring_pagerank_refreshes_total";

/// A service's Prometheus page from its admin port (`GET /metrics`).
pub fn metrics_page(admin: &str) -> anyhow::Result<String> {
    let mut stream =
        TcpStream::connect(admin).with_context(|| format!("the admin port {admin}"))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET /metrics HTTP/1.0\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )?;
    let mut page = String::new();
    stream.take(METRICS_BYTES_MAX).read_to_string(&mut page)?;
    Ok(page)
}

/// `scoring_pagerank_refreshes_total{result="done"}` (0 before the first refresh: a
/// counter vector shows no line until a label is used).
fn refreshes_done(admin: &str) -> anyhow::Result<u64> {
    Ok(done_count(&metrics_page(admin)?))
}

/// The `done` refreshes on a Prometheus text page (0 when the line is absent).
fn done_count(page: &str) -> u64 {
    page.lines()
        .filter(|line| line.starts_with(COUNTER) && line.contains("result=\"done\""))
        .find_map(|line| line.rsplit(' ').next()?.trim().parse::<f64>().ok())
        .map_or(0, |value| value as u64)
}

/// What waiting found.
#[derive(Debug, Clone, Copy)]
pub struct Waited {
    pub refreshed: bool,
}

/// Waits (at most [`WAIT_MAX`]) until two PageRank refreshes have finished after now.
pub async fn wait_for_refresh(admin: String) -> anyhow::Result<Waited> {
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let before = refreshes_done(&admin)?;
        while started.elapsed() < WAIT_MAX {
            if refreshes_done(&admin)? >= before + 2 {
                return Ok(Waited { refreshed: true });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
        Ok(Waited { refreshed: false })
    })
    .await
    .context("the PageRank wait")?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_done_counter_is_read_from_the_metrics_page() {
        let page = "HTTP/1.0 200 OK\r\n\r\n# TYPE scoring_pagerank_refreshes_total counter\n\
                    scoring_pagerank_refreshes_total{result=\"skipped\"} 4\n\
                    scoring_pagerank_refreshes_total{result=\"done\"} 17\n\
                    scoring_pagerank_iterations 70\n";
        assert_eq!(done_count(page), 17);
        assert_eq!(done_count("scoring_pagerank_iterations 70\n"), 0);
    }
}
