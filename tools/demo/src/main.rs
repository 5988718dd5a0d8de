//! `make demo` (issue #12): a seeded synthetic population run through the four running
//! services, only through their public gRPC API: customers created, signals ingested,
//! credit lines applied for, loans borrowed with the population's purpose mix and repaid
//! (or not, by hidden risk) while the ledger's business days advance with RunEndOfDay
//! and scoring's RunPortfolioReview changes limits once a month. The report (stdout,
//! demo-report/report.md, report.json and SVG charts) says what the book did and what
//! the social features buy. How each figure is computed: docs/demo.md.
#![forbid(unsafe_code)]

mod calls;
mod charts;
mod config;
mod no_social;
mod quiet;
mod report;
mod sim;
mod skew;

use std::time::Instant;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let started = Instant::now();
    let config = config::Config::from_env()?;
    eprintln!(
        "demo: {} customers, {} months, seed {}, concurrency {}; account {}, scoring {}, ledger {}, notification {}",
        config.customers,
        config.months,
        config.seed,
        config.concurrency,
        config.account_url,
        config.scoring_url,
        config.ledger_url,
        config.notification_url
    );
    // (The no-social scorecard is trained inside the run, while it waits for scoring.)
    let outcome = sim::run(&config).await?;
    let report = report::Report::build(&config, &outcome, &outcome.no_social, started.elapsed())?;
    report.write(&config.report_dir)?;
    charts::draw(&config.report_dir, &report)?;
    println!("{}", report.markdown());
    eprintln!(
        "demo: report written to {}/report.md, report.json and charts (*.svg)",
        config.report_dir.display()
    );
    Ok(())
}
