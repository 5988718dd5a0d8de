//! The report: figures from the simulation's outcome, as markdown and JSON.

use std::{collections::BTreeMap, fmt::Write as _, path::Path, time::Duration};

use anyhow::Context;
use e2e::journey::minor;
use microloan_proto::common::v1::DecisionOutcome;
use serde::Serialize;

use crate::{calls::CallFigures, config::Config, no_social::NoSocial, sim::Outcome};

/// ROC points kept per curve for the chart (a bound on report.json's size).
const ROC_POINTS_MAX: usize = 200;

#[derive(Debug, Clone, Serialize)]
pub struct PurposeFigures {
    pub loans: u64,
    pub principal_minor: i64,
    pub share: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct MonthFigures {
    pub month: u32,
    pub as_of: String,
    pub active_loans: i64,
    pub outstanding_principal_minor: i64,
    pub overdue_rate: f64,
    pub npl_ratio: f64,
    pub lines_reviewed: i64,
    pub limits_raised: i64,
    pub limits_cut: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub customers: usize,
    pub months: u32,
    pub seed: u64,
    pub population_default_rate: f64,
    pub applications: usize,
    pub approved: usize,
    pub declined: usize,
    pub manual_review: usize,
    pub approval_rate: f64,
    /// Approved applicants whose hidden label says they default.
    pub approved_default_rate: f64,
    pub scored_applications: usize,
    pub auc_full: f64,
    pub auc_without_social: f64,
    pub social_lift: f64,
    /// Explanations that lacked a feature the no-social scorecard uses (scored missing).
    pub no_social_features_missing: usize,
    /// The shipped model's AUC on the same applicants' features computed offline by the
    /// trainer's code: what auc_full would be with no train/serve skew.
    pub auc_offline: f64,
    /// Per model feature: applicants whose served value (ExplainDecision, 4 decimals)
    /// differs from the offline one.
    pub feature_mismatches: BTreeMap<String, usize>,
    /// Whether scoring refreshed its PageRank after ingestion, before the applications.
    pub pagerank_refreshed_before_applications: bool,
    pub no_social_features: Vec<String>,
    pub model_version: String,
    pub decision_latency_p50_ms: f64,
    pub decision_latency_p99_ms: f64,
    pub loans_borrowed: u64,
    pub repayments: u64,
    pub repay_calls: u64,
    pub book_calls: u64,
    pub end_of_days: u64,
    pub start_date: String,
    pub end_date: String,
    pub disbursed_by_purpose: BTreeMap<String, PurposeFigures>,
    pub overdue_rate: f64,
    pub npl_ratio: f64,
    pub monthly: Vec<MonthFigures>,
    pub loans_written_off: i64,
    pub written_off_minor: i64,
    pub interest_income_minor: i64,
    pub loans_paid_off: i64,
    pub active_loans: i64,
    pub preexisting_active_loans: i64,
    /// Notices by template, every channel together (one notice per channel of an
    /// event: see notices_by_type_and_channel).
    pub notices_by_type: BTreeMap<String, u64>,
    pub notices_by_type_and_channel: BTreeMap<String, BTreeMap<String, u64>>,
    /// Distinct events behind each template's notices.
    pub notice_events_by_type: BTreeMap<String, u64>,
    /// Notices made twice for the same event, channel and template (0 expected).
    pub duplicate_notices: u64,
    pub duplicate_notice_examples: Vec<String>,
    pub trial_balance_balanced: bool,
    pub integrity_ok: bool,
    pub integrity_detail: String,
    pub failures: BTreeMap<String, u64>,
    pub phase_seconds: BTreeMap<String, f64>,
    /// Every RPC the demo made, by method: calls and client-side latencies.
    pub calls_by_rpc: BTreeMap<String, CallFigures>,
    pub concurrency: usize,
    pub no_social_train_seconds: f64,
    pub wall_seconds: f64,
    pub roc_full: Vec<(f64, f64)>,
    pub roc_without_social: Vec<(f64, f64)>,
}

/// ROC AUC of `scores` (higher = safer) against `bad`: the probability that a random
/// bad applicant scores below a random good one, ties counted half.
pub fn auc(scores: &[i32], bad: &[bool]) -> f64 {
    let mut pairs: Vec<(i32, bool)> = scores.iter().copied().zip(bad.iter().copied()).collect();
    pairs.sort_by_key(|(score, _)| *score);
    let bads = pairs.iter().filter(|(_, bad)| *bad).count() as f64;
    let goods = pairs.len() as f64 - bads;
    if bads == 0.0 || goods == 0.0 {
        return f64::NAN;
    }
    // Sum over goods of the bads scoring strictly below, plus half the ties.
    let mut wins = 0.0;
    let mut bads_below = 0.0;
    let mut start = 0;
    while start < pairs.len() {
        let mut end = start;
        while end < pairs.len() && pairs[end].0 == pairs[start].0 {
            end += 1;
        }
        let tie_bads = pairs[start..end].iter().filter(|(_, bad)| *bad).count() as f64;
        let tie_goods = (end - start) as f64 - tie_bads;
        wins += tie_goods * (bads_below + tie_bads / 2.0);
        bads_below += tie_bads;
        start = end;
    }
    wins / (bads * goods)
}

/// The ROC curve (false positive rate, true positive rate) of flagging applicants at or
/// below each score as bad, thinned to at most ROC_POINTS_MAX points.
pub fn roc(scores: &[i32], bad: &[bool]) -> Vec<(f64, f64)> {
    let mut pairs: Vec<(i32, bool)> = scores.iter().copied().zip(bad.iter().copied()).collect();
    pairs.sort_by_key(|(score, _)| *score);
    let bads = pairs.iter().filter(|(_, bad)| *bad).count().max(1) as f64;
    let goods = (pairs.len() as f64 - bads).max(1.0);
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    let mut start = 0;
    while start < pairs.len() {
        let mut end = start;
        while end < pairs.len() && pairs[end].0 == pairs[start].0 {
            end += 1;
        }
        for (_, bad) in &pairs[start..end] {
            if *bad {
                tp += 1.0;
            } else {
                fp += 1.0;
            }
        }
        points.push((fp / goods, tp / bads));
        start = end;
    }
    let step = points.len().div_ceil(ROC_POINTS_MAX).max(1);
    let last = *points.last().expect("at least the origin");
    let mut thinned: Vec<(f64, f64)> = points.into_iter().step_by(step).collect();
    if thinned.last() != Some(&last) {
        thinned.push(last);
    }
    thinned
}

pub(crate) fn percentile(sorted: &[f64], quantile: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((quantile * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn yuan(minor_units: i64) -> String {
    format!("{:.2}", minor_units as f64 / 100.0)
}

impl Report {
    pub fn build(
        config: &Config,
        outcome: &Outcome,
        no_social: &NoSocial,
        wall: Duration,
    ) -> anyhow::Result<Report> {
        let applicants = &outcome.applicants;
        let count = |outcome: DecisionOutcome| {
            applicants
                .iter()
                .filter(|applicant| applicant.outcome == outcome)
                .count()
        };
        let approved = count(DecisionOutcome::Approved);
        let scored: Vec<_> = applicants
            .iter()
            .filter(|applicant| applicant.score.is_some())
            .collect();
        let full: Vec<i32> = scored
            .iter()
            .map(|applicant| applicant.score.unwrap_or_default())
            .collect();
        let mut missing = 0;
        let without: Vec<i32> = scored
            .iter()
            .map(|applicant| {
                let (score, lacking) = no_social.score(&applicant.features);
                missing += usize::from(lacking > 0);
                score
            })
            .collect();
        let bad: Vec<bool> = scored.iter().map(|applicant| applicant.defaults).collect();
        let mut offline_scores = Vec::with_capacity(scored.len());
        let mut feature_mismatches: BTreeMap<String, usize> = BTreeMap::new();
        for (applicant, offline) in applicants.iter().zip(&outcome.offline) {
            if applicant.score.is_none() {
                continue;
            }
            offline_scores.push(no_social.score_full(offline));
            for (name, served) in &applicant.features {
                let mismatch = !crate::skew::same(*served, offline.get(name).copied().flatten());
                *feature_mismatches.entry(name.clone()).or_default() += usize::from(mismatch);
            }
        }
        let auc_offline = auc(&offline_scores, &bad);
        let auc_full = auc(&full, &bad);
        let auc_without_social = auc(&without, &bad);
        let mut latencies: Vec<f64> = applicants.iter().map(|a| a.latency_ms).collect();
        latencies.sort_by(f64::total_cmp);
        let total_disbursed: i64 = outcome.disbursed.values().map(|t| t.principal_minor).sum();
        let disbursed_by_purpose = outcome
            .disbursed
            .iter()
            .map(|(purpose, tally)| {
                (
                    purpose.clone(),
                    PurposeFigures {
                        loans: tally.loans,
                        principal_minor: tally.principal_minor,
                        share: if total_disbursed > 0 {
                            tally.principal_minor as f64 / total_disbursed as f64
                        } else {
                            0.0
                        },
                    },
                )
            })
            .collect();
        let last = outcome.months.last().context("at least one month")?;
        let approved_bad = applicants
            .iter()
            .filter(|a| a.outcome == DecisionOutcome::Approved && a.defaults)
            .count();
        let report = &outcome.final_report;
        Ok(Report {
            customers: config.customers,
            months: config.months,
            seed: config.seed,
            population_default_rate: outcome.default_rate,
            applications: applicants.len(),
            approved,
            declined: count(DecisionOutcome::Declined),
            manual_review: count(DecisionOutcome::ManualReview),
            approval_rate: approved as f64 / applicants.len().max(1) as f64,
            approved_default_rate: approved_bad as f64 / approved.max(1) as f64,
            scored_applications: scored.len(),
            auc_full,
            auc_without_social,
            social_lift: auc_full - auc_without_social,
            no_social_features_missing: missing,
            auc_offline,
            feature_mismatches,
            pagerank_refreshed_before_applications: outcome.pagerank.refreshed,
            no_social_features: no_social.feature_names(),
            model_version: no_social.full.model_version.clone(),
            decision_latency_p50_ms: percentile(&latencies, 0.50),
            decision_latency_p99_ms: percentile(&latencies, 0.99),
            loans_borrowed: outcome.borrows,
            repayments: outcome.repayments,
            repay_calls: outcome.repay_calls,
            book_calls: outcome.book_calls,
            end_of_days: outcome.end_of_days,
            start_date: outcome.start_date.to_string(),
            end_date: outcome.end_date.to_string(),
            disbursed_by_purpose,
            overdue_rate: last.overdue_rate,
            npl_ratio: last.npl_ratio,
            monthly: outcome
                .months
                .iter()
                .map(|m| MonthFigures {
                    month: m.month,
                    as_of: m.as_of.to_string(),
                    active_loans: m.active_loans,
                    outstanding_principal_minor: m.outstanding_principal_minor,
                    overdue_rate: m.overdue_rate,
                    npl_ratio: m.npl_ratio,
                    lines_reviewed: m.lines_reviewed,
                    limits_raised: m.limits_raised,
                    limits_cut: m.limits_cut,
                })
                .collect(),
            loans_written_off: report.loans_written_off,
            written_off_minor: minor(&report.cumulative_written_off),
            interest_income_minor: minor(&report.cumulative_interest_income),
            loans_paid_off: report.loans_paid_off,
            active_loans: report.active_loans,
            preexisting_active_loans: outcome.preexisting_loans,
            notices_by_type: outcome.notices.by_type.clone(),
            notices_by_type_and_channel: outcome.notices.by_type_and_channel.clone(),
            notice_events_by_type: outcome.notices.events_by_type.clone(),
            duplicate_notices: outcome.notices.duplicates,
            duplicate_notice_examples: outcome.notices.duplicate_examples.clone(),
            trial_balance_balanced: outcome.trial_balance_balanced,
            integrity_ok: outcome.integrity_ok,
            integrity_detail: outcome.integrity_detail.clone(),
            failures: outcome.failures.clone(),
            phase_seconds: outcome.phase_seconds.iter().cloned().collect(),
            calls_by_rpc: outcome.calls.figures(),
            concurrency: config.concurrency,
            no_social_train_seconds: no_social.train_seconds,
            wall_seconds: wall.as_secs_f64(),
            roc_full: roc(&full, &bad),
            roc_without_social: roc(&without, &bad),
        })
    }

    pub fn write(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        std::fs::write(dir.join("report.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("report.md"), self.markdown())?;
        Ok(())
    }

    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Portfolio simulation (`make demo`)\n");
        let _ = writeln!(
            md,
            "{} customers, {} months ({} to {}), seed {}; hidden default rate of the population {:.3}. Wall time {:.0} s.\n",
            self.customers,
            self.months,
            self.start_date,
            self.end_date,
            self.seed,
            self.population_default_rate,
            self.wall_seconds
        );
        let _ = writeln!(md, "| figure | value |\n| --- | --- |");
        let rows: Vec<(&str, String)> = vec![
            ("applications", self.applications.to_string()),
            (
                "approved / declined / manual review",
                format!(
                    "{} / {} / {}",
                    self.approved, self.declined, self.manual_review
                ),
            ),
            ("approval rate", format!("{:.3}", self.approval_rate)),
            (
                "hidden default rate among the approved",
                format!("{:.3}", self.approved_default_rate),
            ),
            (
                "decision latency p50 / p99 (ms, ApplyForCreditLine as the client sees it)",
                format!(
                    "{:.1} / {:.1}",
                    self.decision_latency_p50_ms, self.decision_latency_p99_ms
                ),
            ),
            (
                "ROC AUC, full model (service's scores)",
                format!("{:.4}", self.auc_full),
            ),
            (
                "ROC AUC, without social features",
                format!("{:.4}", self.auc_without_social),
            ),
            ("social lift", format!("{:+.4}", self.social_lift)),
            (
                "ROC AUC, shipped model on the trainer's offline features of the same people",
                format!("{:.4}", self.auc_offline),
            ),
            (
                "served feature values that differ from the offline ones",
                self.feature_mismatches.values().sum::<usize>().to_string(),
            ),
            (
                "PageRank refreshed after ingestion, before the applications",
                self.pagerank_refreshed_before_applications.to_string(),
            ),
            ("loans borrowed", self.loans_borrowed.to_string()),
            ("repayments", self.repayments.to_string()),
            (
                "calls the book made (of them Repay and GetLoan)",
                format!("{} ({})", self.book_calls, self.repay_calls),
            ),
            (
                "overdue rate at the last month (principal past due / outstanding)",
                format!("{:.4}", self.overdue_rate),
            ),
            (
                "NPL ratio at the last month",
                format!("{:.4}", self.npl_ratio),
            ),
            (
                "loans written off (CNY written off)",
                format!(
                    "{} ({})",
                    self.loans_written_off,
                    yuan(self.written_off_minor)
                ),
            ),
            ("loans paid off", self.loans_paid_off.to_string()),
            (
                "interest and penalty income (CNY)",
                yuan(self.interest_income_minor),
            ),
            (
                "trial balance balanced",
                self.trial_balance_balanced.to_string(),
            ),
            ("integrity ok", self.integrity_ok.to_string()),
        ];
        for (name, value) in rows {
            let _ = writeln!(md, "| {name} | {value} |");
        }
        let _ = writeln!(
            md,
            "\n## Disbursed by purpose\n\n| purpose | loans | CNY | share |\n| --- | --- | --- | --- |"
        );
        for (purpose, figures) in &self.disbursed_by_purpose {
            let _ = writeln!(
                md,
                "| {purpose} | {} | {} | {:.3} |",
                figures.loans,
                yuan(figures.principal_minor),
                figures.share
            );
        }
        let _ = writeln!(
            md,
            "\n## Month by month\n\n| month | as of | active loans | outstanding CNY | overdue rate | NPL ratio | lines reviewed | limits raised | limits cut |\n| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
        );
        for m in &self.monthly {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {:.4} | {:.4} | {} | {} | {} |",
                m.month,
                m.as_of,
                m.active_loans,
                yuan(m.outstanding_principal_minor),
                m.overdue_rate,
                m.npl_ratio,
                m.lines_reviewed,
                m.limits_raised,
                m.limits_cut
            );
        }
        // One notice per channel of an event: the columns say which.
        let channels: std::collections::BTreeSet<&String> = self
            .notices_by_type_and_channel
            .values()
            .flat_map(|by_channel| by_channel.keys())
            .collect();
        let _ = write!(
            md,
            "\n## Notices by type\n\n| template | events | notices |"
        );
        for channel in &channels {
            let _ = write!(md, " {channel} |");
        }
        let _ = write!(md, "\n| --- | --- | --- |");
        for _ in &channels {
            let _ = write!(md, " --- |");
        }
        let _ = writeln!(md);
        for (key, count) in &self.notices_by_type {
            let events = self.notice_events_by_type.get(key).copied().unwrap_or(0);
            let _ = write!(md, "| {key} | {events} | {count} |");
            for channel in &channels {
                let n = self
                    .notices_by_type_and_channel
                    .get(key)
                    .and_then(|by_channel| by_channel.get(*channel))
                    .copied()
                    .unwrap_or(0);
                let _ = write!(md, " {n} |");
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(
            md,
            "\nNotices made twice for one event and channel: {}.",
            self.duplicate_notices
        );
        for example in &self.duplicate_notice_examples {
            let _ = writeln!(md, "- {example}");
        }
        if !self.failures.is_empty() {
            let _ = writeln!(
                md,
                "\n## Calls that did not go through\n\n| what | count |\n| --- | --- |"
            );
            for (what, count) in &self.failures {
                let _ = writeln!(md, "| {what} | {count} |");
            }
        }
        let _ = writeln!(
            md,
            "\n## Where the time went\n\n| phase | seconds |\n| --- | --- |"
        );
        for (phase, seconds) in &self.phase_seconds {
            let _ = writeln!(md, "| {phase} | {seconds:.1} |");
        }
        let _ = writeln!(
            md,
            "| training the no-social scorecard (in parallel) | {:.1} |",
            self.no_social_train_seconds
        );
        let _ = writeln!(
            md,
            "\n## Calls by RPC\n\nClient-side latencies at DEMO_CONCURRENCY={} (calls overlap: \
             the seconds in flight are not wall time).\n\n\
             | RPC | calls | mean ms | p50 ms | p99 ms | seconds in flight |\n\
             | --- | --- | --- | --- | --- | --- |",
            self.concurrency
        );
        for (rpc, figures) in &self.calls_by_rpc {
            let _ = writeln!(
                md,
                "| {rpc} | {} | {:.1} | {:.1} | {:.1} | {:.1} |",
                figures.calls,
                figures.mean_ms,
                figures.p50_ms,
                figures.p99_ms,
                figures.seconds_in_flight
            );
        }
        if !self.integrity_detail.is_empty() {
            let _ = writeln!(md, "\nIntegrity: {}", self.integrity_detail);
        }
        if self.preexisting_active_loans > 0 {
            let _ = writeln!(
                md,
                "\nNote: the ledger held {} active loans before this run; portfolio figures include them.",
                self.preexisting_active_loans
            );
        }
        let _ = writeln!(
            md,
            "\nCharts: roc.svg, monthly.svg, purpose.svg. How each figure is computed: docs/demo.md."
        );
        md
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_pairs_and_ties() {
        // Perfect separation: every bad below every good.
        assert_eq!(auc(&[1, 2, 3, 4], &[true, true, false, false]), 1.0);
        // Reversed.
        assert_eq!(auc(&[1, 2, 3, 4], &[false, false, true, true]), 0.0);
        // All tied: a coin.
        assert_eq!(auc(&[5, 5, 5, 5], &[true, false, true, false]), 0.5);
        // One bad (2) against goods 1, 3: one pair won, one lost.
        assert_eq!(auc(&[1, 2, 3], &[false, true, false]), 0.5);
    }

    #[test]
    fn roc_runs_from_origin_to_one() {
        let curve = roc(&[1, 2, 3, 4], &[true, false, true, false]);
        assert_eq!(curve.first(), Some(&(0.0, 0.0)));
        assert_eq!(curve.last(), Some(&(1.0, 1.0)));
    }
}
