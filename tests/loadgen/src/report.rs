//! The result of one run (serialised as one JSON object) and the tables rendered from
//! one or more of them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Latency percentiles in milliseconds (successful calls only).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LatencyMs {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl LatencyMs {
    /// From a histogram of microseconds.
    pub fn from_micros(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        }
    }
}

/// One run of one scenario at one concurrency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    pub scenario: String,
    pub target: String,
    pub concurrency: usize,
    pub connections: usize,
    pub warmup_seconds: u64,
    /// Measured wall time: end of warm-up to the last measured call's completion.
    pub elapsed_seconds: f64,
    /// Calls completed in the measured window (successes + errors).
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    /// Failed calls by gRPC code name (`UNAVAILABLE`, `DEADLINE_EXCEEDED`, ...).
    pub errors_by_code: BTreeMap<String, u64>,
    /// The first message seen for each failing code, to tell what went wrong.
    pub first_error_by_code: BTreeMap<String, String>,
    /// Successful calls per second over `elapsed_seconds`.
    pub throughput_rps: f64,
    pub latency_ms: LatencyMs,
    /// Why the run ended: `duration`, `requests`, `time_limit` or `interrupted`.
    pub stopped_by: String,
    pub loadgen_version: String,
}

/// How tables are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TableStyle {
    Text,
    Markdown,
}

const HEADER: [&str; 11] = [
    "scenario",
    "concurrency",
    "connections",
    "requests",
    "errors",
    "throughput req/s",
    "p50 ms",
    "p90 ms",
    "p99 ms",
    "p99.9 ms",
    "max ms",
];

fn row(report: &RunReport) -> [String; 11] {
    let lat = &report.latency_ms;
    [
        report.scenario.clone(),
        report.concurrency.to_string(),
        report.connections.to_string(),
        report.requests.to_string(),
        report.errors.to_string(),
        format!("{:.0}", report.throughput_rps),
        format!("{:.3}", lat.p50),
        format!("{:.3}", lat.p90),
        format!("{:.3}", lat.p99),
        format!("{:.3}", lat.p999),
        format!("{:.3}", lat.max),
    ]
}

/// The results table for `reports`, one row each, followed by any error breakdown.
pub fn table(reports: &[RunReport], style: TableStyle) -> String {
    let rows: Vec<[String; 11]> = reports.iter().map(row).collect();
    let mut out = String::new();
    match style {
        TableStyle::Markdown => {
            let _ = writeln!(out, "| {} |", HEADER.join(" | "));
            // The first column is text (left); the numbers are right-aligned.
            let align: Vec<&str> = (0..HEADER.len())
                .map(|i| if i == 0 { ":---" } else { "---:" })
                .collect();
            let _ = writeln!(out, "| {} |", align.join(" | "));
            for cells in &rows {
                let _ = writeln!(out, "| {} |", cells.join(" | "));
            }
        }
        TableStyle::Text => {
            let mut widths: Vec<usize> = HEADER.iter().map(|h| h.len()).collect();
            for cells in &rows {
                for (width, cell) in widths.iter_mut().zip(cells) {
                    *width = (*width).max(cell.len());
                }
            }
            let line = |cells: &[String]| {
                let padded: Vec<String> = cells
                    .iter()
                    .zip(&widths)
                    .enumerate()
                    .map(|(i, (cell, &w))| {
                        if i == 0 {
                            format!("{cell:<w$}")
                        } else {
                            format!("{cell:>w$}")
                        }
                    })
                    .collect();
                padded.join("  ").trim_end().to_owned()
            };
            let header: Vec<String> = HEADER.iter().map(|h| (*h).to_owned()).collect();
            let _ = writeln!(out, "{}", line(&header));
            for cells in &rows {
                let _ = writeln!(out, "{}", line(cells));
            }
        }
    }
    let failing: Vec<&RunReport> = reports.iter().filter(|r| r.errors > 0).collect();
    if !failing.is_empty() {
        let _ = writeln!(out);
        for report in failing {
            let codes: Vec<String> = report
                .errors_by_code
                .iter()
                .map(|(code, n)| {
                    let first = report
                        .first_error_by_code
                        .get(code)
                        .map(|m| format!(" (first: {m})"))
                        .unwrap_or_default();
                    format!("{code} x{n}{first}")
                })
                .collect();
            let bullet = if style == TableStyle::Markdown {
                "- "
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "{bullet}errors, {} at concurrency {}: {}",
                report.scenario,
                report.concurrency,
                codes.join("; ")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(errors: u64) -> RunReport {
        let mut histogram = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).unwrap();
        for us in 1..=1000 {
            histogram.record(us).unwrap();
        }
        let mut errors_by_code = BTreeMap::new();
        let mut first_error_by_code = BTreeMap::new();
        if errors > 0 {
            errors_by_code.insert("UNAVAILABLE".to_owned(), errors);
            first_error_by_code.insert("UNAVAILABLE".to_owned(), "down".to_owned());
        }
        RunReport {
            scenario: "health".into(),
            target: "http://127.0.0.1:1".into(),
            concurrency: 16,
            connections: 4,
            warmup_seconds: 2,
            elapsed_seconds: 1.0,
            requests: 1000 + errors,
            ok: 1000,
            errors,
            errors_by_code,
            first_error_by_code,
            throughput_rps: 1000.0,
            latency_ms: LatencyMs::from_micros(&histogram),
            stopped_by: "requests".into(),
            loadgen_version: "0".into(),
        }
    }

    #[test]
    fn percentiles_are_in_milliseconds() {
        let lat = sample(0).latency_ms;
        assert!((lat.p50 - 0.5).abs() < 0.01, "{lat:?}");
        assert!((lat.p99 - 0.99).abs() < 0.01, "{lat:?}");
        assert!((lat.max - 1.0).abs() < 0.01, "{lat:?}");
    }

    #[test]
    fn markdown_table_has_a_row_per_run_and_lists_errors() {
        let md = table(&[sample(0), sample(3)], TableStyle::Markdown);
        let lines: Vec<&str> = md.lines().collect();
        assert!(lines[0].starts_with("| scenario | concurrency"));
        assert_eq!(lines[1].matches("---").count(), HEADER.len());
        assert!(lines[2].starts_with("| health | 16 | 4 | 1000 | 0 | 1000 |"));
        assert!(md.contains("- errors, health at concurrency 16: UNAVAILABLE x3 (first: down)"));
    }

    #[test]
    fn text_table_aligns_columns() {
        let text = table(&[sample(0)], TableStyle::Text);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with("max ms"));
        assert!(lines[1].ends_with("1.000"));
    }

    #[test]
    fn report_round_trips_through_json() {
        let json = serde_json::to_string(&sample(2)).unwrap();
        let back: RunReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.errors_by_code["UNAVAILABLE"], 2);
    }
}
