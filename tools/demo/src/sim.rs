//! The simulation: onboarding, applications, and the book day by day, only through the
//! services' public gRPC API. Per-customer calls run at most `concurrency` at a time and
//! their results are applied in customer order, so the same seed makes the same calls
//! with the same outcomes (latencies aside).

use std::{
    collections::{BTreeMap, HashMap},
    time::{Duration, Instant},
};

use anyhow::{Context, bail, ensure};
use chrono::{Months, NaiveDate};
use futures::{StreamExt, stream};
use indicatif::{ProgressBar, ProgressStyle};
use microloan_platform::auth::{Role, TokenKeys};
use microloan_proto::{
    account::v1::{
        ApplyForCreditLineRequest, BorrowRequest, CreateCustomerRequest, CreditLine,
        GetCreditLineRequest, RepayRequest, account_service_client::AccountServiceClient,
    },
    common::v1::{
        CreditLineStatus, DecisionOutcome, DelinquencyBucket, Loan, LoanPurpose as ProtoPurpose,
        LoanStatus, RepaymentMethod,
    },
    ledger::v1::{
        GetBusinessDateRequest, GetLoanRequest, GetPortfolioReportRequest, GetTrialBalanceRequest,
        PortfolioReport, RunEndOfDayRequest, VerifyIntegrityRequest,
        ledger_service_client::LedgerServiceClient,
    },
    notification::v1::{
        Channel as NoticeChannel, ListNotificationsRequest, Notification,
        notification_service_client::NotificationServiceClient,
    },
    scoring::v1::{
        ExplainDecisionRequest, RunPortfolioReviewRequest,
        scoring_service_client::ScoringServiceClient, signal::Kind as SignalKind,
    },
};
use population::{LoanPurpose, Population, PopulationConfig, batches};
use tonic::{Request, transport::Channel};

use crate::{
    calls::Calls,
    config::{CUSTOMERS_MAX, Config},
    no_social::{self, NoSocial},
    quiet, skew,
};
// The e2e harness's money and date helpers (one copy of each).
use e2e::{
    journey::{cny, from_date, minor, to_date, with_check_digit},
    pagerank,
};

/// Signals per IngestSignals message (the population's batching).
const SIGNALS_PER_BATCH: usize = 1000;
/// Characters of a status message kept in the failure counts.
const MESSAGE_CHARS_MAX: usize = 100;
/// Repay calls at most per customer and day (see `repay`).
const REPAY_ROUNDS_MAX: u32 = 3;
/// Attempts of one IngestSignals batch.
const INGEST_ATTEMPTS_MAX: u32 = 8;
/// IngestSignals streams in flight at once (at most DEMO_CONCURRENCY): scoring applies
/// each batch in one transaction that locks the graph components it touches, so more
/// streams mostly wait on each other's locks (and deadlock more often).
const INGEST_STREAMS_MAX: usize = 4;
/// Business days at most per simulated month (a bound on the day loop).
const DAYS_PER_MONTH_MAX: usize = 31;
/// Pages of notices read per customer at most.
const NOTICE_PAGES_MAX: usize = 100;
/// A drawdown is this share of the headroom (per mille), rounded down to whole CNY
/// hundreds: borrowers keep some headroom, so raised limits show in later loans.
const DRAW_SHARE_PER_MILLE: i64 = 600;
const MINIMUM_DRAWDOWN_MINOR: i64 = 10_000;
/// After a failed borrow (declined drawdown, frozen line) the customer tries again
/// this many days later.
const RETRY_BORROW_DAYS: u64 = 30;
/// After paying a loan off, a customer borrows again within this many days.
const REBORROW_GAP_DAYS_MAX: u64 = 30;

/// An application's outcome, the line it opened (approved only) and latency (ms).
type Applied = (DecisionOutcome, Option<CreditLine>, f64);
/// A decision's score and its model features' values by name.
type Explained = (Option<i32>, HashMap<String, Option<f64>>);

/// What one applicant's application decided.
#[derive(Debug, Clone)]
pub struct Applicant {
    pub defaults: bool,
    pub outcome: DecisionOutcome,
    pub score: Option<i32>,
    /// The model features' values from ExplainDecision, by name (missing = None).
    pub features: HashMap<String, Option<f64>>,
    pub latency_ms: f64,
}

#[derive(Debug, Clone)]
pub struct MonthSnapshot {
    pub month: u32,
    pub as_of: NaiveDate,
    pub active_loans: i64,
    pub outstanding_principal_minor: i64,
    pub overdue_rate: f64,
    pub npl_ratio: f64,
    pub limits_raised: i64,
    pub limits_cut: i64,
    pub lines_reviewed: i64,
}

#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub loans: u64,
    pub principal_minor: i64,
}

#[derive(Debug)]
pub struct Outcome {
    pub applicants: Vec<Applicant>,
    pub months: Vec<MonthSnapshot>,
    /// Loans and principal the demo's borrowers took, by purpose (proto name).
    pub disbursed: BTreeMap<String, Tally>,
    pub final_report: PortfolioReport,
    pub trial_balance_balanced: bool,
    pub integrity_ok: bool,
    pub integrity_detail: String,
    pub notices: Notices,
    /// Every RPC's calls and client-side latencies, by method.
    pub calls: Calls,
    pub phase_seconds: Vec<(String, f64)>,
    pub failures: BTreeMap<String, u64>,
    pub repayments: u64,
    pub repay_calls: u64,
    /// Every call the book made (GetCreditLine, Borrow, Repay, GetLoan, RunEndOfDay).
    pub book_calls: u64,
    pub borrows: u64,
    pub end_of_days: u64,
    pub start_date: NaiveDate,
    pub end_date: NaiveDate,
    pub default_rate: f64,
    pub preexisting_loans: i64,
    /// Everyone's features computed offline by the trainer's code (population order).
    pub offline: Vec<skew::Values>,
    /// The scorecard without social features (trained like `make train-model`).
    pub no_social: NoSocial,
    /// Whether scoring refreshed its PageRank after the ingestion before the applications.
    pub pagerank: pagerank::Waited,
}

#[derive(Clone)]
struct Clients {
    account: AccountServiceClient<Channel>,
    scoring: ScoringServiceClient<Channel>,
    ledger: LedgerServiceClient<Channel>,
    notification: NotificationServiceClient<Channel>,
    operator: String,
    service: String,
    /// Every call's latency by method (report "Calls by RPC").
    calls: Calls,
}

/// Customers per RunPortfolioReview call. One call for a whole 10,000-customer book
/// (about 7,000 lines) took 24 s in a 10,000 x 2 run, near the services' 30 s request
/// ceiling (REQUEST_TIMEOUT_SECONDS); in pages each call stays well inside it and the
/// review's outcome per line is the same (each line is reviewed on its own).
const REVIEW_CHUNK_CUSTOMERS: usize = 2_000;

fn with_token<T>(message: T, token: &str) -> Request<T> {
    microloan_platform::testing::with_token(message, token)
}

async fn channel(url: &str) -> anyhow::Result<Channel> {
    tonic::transport::Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(300))
        .connect()
        .await
        .with_context(|| format!("connecting to {url} (is `make run` up?)"))
}

/// splitmix64: a cheap deterministic hash for per-customer choices.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn purpose_of(purpose: LoanPurpose) -> ProtoPurpose {
    match purpose {
        LoanPurpose::Consumption => ProtoPurpose::Consumption,
        LoanPurpose::SmallBusiness => ProtoPurpose::SmallBusiness,
        LoanPurpose::Education => ProtoPurpose::Education,
        LoanPurpose::Medical => ProtoPurpose::Medical,
        LoanPurpose::HomeImprovement => ProtoPurpose::HomeImprovement,
        LoanPurpose::Other => ProtoPurpose::Other,
    }
}

/// Region codes the demo's national ids use (any six digits pass the format check;
/// these are real PRC district codes).
const REGIONS: [&str; 4] = ["110105", "310101", "440103", "510104"];
/// Birth dates from 1970-01-01 over this many days (people aged 20-56 in 2026).
const BIRTH_DAYS: u64 = 13_000;

/// A valid PRC resident id (GB 11643 check digit) and phone, distinct for every
/// `global` below 4 x 13,000 x 1,000.
fn identity(global: u64) -> (String, String) {
    let serial = global % 1000;
    let day = (global / 1000) % BIRTH_DAYS;
    let region = REGIONS[((global / 1000 / BIRTH_DAYS) % REGIONS.len() as u64) as usize];
    let birth =
        NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date") + chrono::Duration::days(day as i64);
    let national_id = with_check_digit(&format!("{region}{}{serial:03}", birth.format("%Y%m%d")));
    (national_id, format!("+86138{:08}", global % 100_000_000))
}

/// A run's slot: national ids and phones of different runs against one stack differ
/// (slots repeat after about 3.6 days of minutes; customers per run are bounded).
fn run_slot() -> u64 {
    let minutes = microloan_platform::auth::unix_now() / 60;
    minutes % (REGIONS.len() as u64 * BIRTH_DAYS * 1000 / CUSTOMERS_MAX as u64)
}

fn bar(len: u64, prefix: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{elapsed_precise}] {bar:36} {pos}/{len} {per_sec} {msg}",
        )
        .expect("a valid template"),
    );
    bar.set_prefix(prefix.to_owned());
    bar
}

fn code_of(status: &tonic::Status) -> String {
    let reason = tonic_reason(status);
    let mut message: String = status.message().chars().take(MESSAGE_CHARS_MAX).collect();
    // Amounts and ids vary per call; the kind of failure is what is counted.
    message.retain(|c| !c.is_ascii_digit());
    format!(
        "{:?}{} ({message})",
        status.code(),
        reason.map(|r| format!(" {r}")).unwrap_or_default()
    )
}

/// The ErrorInfo reason in a status's details, when there is one (looked for as text:
/// the demo needs it only to count failures by kind).
fn tonic_reason(status: &tonic::Status) -> Option<String> {
    let details = String::from_utf8_lossy(status.details()).into_owned();
    details
        .split(|c: char| !(c.is_ascii_uppercase() || c == '_'))
        .find(|word| word.len() > 3 && word.contains('_'))
        .map(str::to_owned)
}

/// One customer's state in the book.
#[derive(Debug)]
struct Borrower {
    index: usize,
    customer_id: String,
    token: String,
    device_id: String,
    purpose: ProtoPurpose,
    defaults: bool,
    /// Instalments a defaulter pays (in all) before stopping.
    payments_before_stop: u64,
    payments: u64,
    loan: Option<Loan>,
    /// The line as the last answer showed it (ApplyForCreditLine, Borrow, Repay); None
    /// once something the demo does not see may have changed it (a portfolio review,
    /// a failed call): the next borrow reads it with GetCreditLine.
    line: Option<CreditLine>,
    /// False after a failed repayment: the line is then read before every borrow.
    line_trusted: bool,
    next_borrow: NaiveDate,
    loans_taken: u64,
}

/// What a customer does on a business day.
#[derive(Debug, Clone, Copy)]
enum Action {
    Borrow,
    /// Repay this much (fen), everything due by today.
    Repay(i64),
}

/// What an action answered, with the calls it made.
enum Done {
    Borrowed((Result<(Loan, Option<CreditLine>), String>, u64)),
    Repaid(Result<(Loan, Option<CreditLine>, u64), (String, u64)>),
}

impl Borrower {
    fn stopped_paying(&self) -> bool {
        self.defaults && self.payments >= self.payments_before_stop
    }
}

pub async fn run(config: &Config) -> anyhow::Result<Outcome> {
    let keys = TokenKeys::from_secret(config.jwt_secret.as_bytes());
    let ttl = Duration::from_secs(24 * 3600);
    let mut clients = Clients {
        account: AccountServiceClient::new(channel(&config.account_url).await?),
        scoring: ScoringServiceClient::new(channel(&config.scoring_url).await?),
        ledger: LedgerServiceClient::new(channel(&config.ledger_url).await?),
        notification: NotificationServiceClient::new(channel(&config.notification_url).await?),
        operator: keys.mint("demo", Role::Operator, None, ttl)?,
        service: keys.mint("demo", Role::Service, None, ttl)?,
        calls: Calls::default(),
    };
    let mut phases = Vec::new();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let slot = run_slot();
    let tag = format!("demo-{}-{slot}", config.seed);

    let preexisting = portfolio(&mut clients).await?;
    if preexisting.active_loans > 0 || minor(&preexisting.cumulative_disbursed) > 0 {
        eprintln!(
            "demo: note: the ledger already holds a book ({} active loans): the portfolio figures include it; a fresh `make run` (DEMO_FRESH=1 scripts/demo.sh) gives reproducible figures",
            preexisting.active_loans
        );
    }

    // --- population --------------------------------------------------------------------
    let phase = Instant::now();
    let mut population =
        Population::generate(&PopulationConfig::new(config.seed, config.customers));
    phases.push((
        "generate population".to_owned(),
        phase.elapsed().as_secs_f64(),
    ));

    // --- customers -----------------------------------------------------------------------
    let phase = Instant::now();
    let progress = bar(config.customers as u64, "customers");
    let created: Vec<anyhow::Result<String>> = stream::iter(population.people.iter().enumerate())
        .map(|(index, person)| {
            let mut account = clients.account.clone();
            let operator = clients.operator.clone();
            let (national_id, phone) = identity(slot * CUSTOMERS_MAX as u64 + index as u64);
            let request = CreateCustomerRequest {
                request_id: format!("{tag}-create-{index}"),
                name: format!("Demo Customer {}", char::from(b'A' + (index % 26) as u8)),
                national_id,
                phone,
                annual_income: cny(person.monthly_income_fen * 12),
                locale: "en".to_owned(),
                device_id: person.devices.first().cloned().unwrap_or_default(),
            };
            let progress = progress.clone();
            let calls = clients.calls.clone();
            async move {
                let answer = calls
                    .time(
                        "account.CreateCustomer",
                        account.create_customer(with_token(request, &operator)),
                    )
                    .await;
                progress.inc(1);
                Ok(answer?
                    .into_inner()
                    .customer
                    .context("the created customer")?
                    .customer_id)
            }
        })
        .buffered(config.concurrency)
        .collect()
        .await;
    progress.finish();
    let mut renames = HashMap::new();
    let mut customer_ids = Vec::with_capacity(created.len());
    for (person, created) in population.people.iter().zip(created) {
        let customer_id = created.context("CreateCustomer")?;
        renames.insert(person.customer_id, customer_id.parse()?);
        customer_ids.push(customer_id);
    }
    population.rename_customers(&renames);
    phases.push(("create customers".to_owned(), phase.elapsed().as_secs_f64()));
    // --- signals -------------------------------------------------------------------------
    let phase = Instant::now();
    // Repayment outcomes first: a new known defaulter asks scoring for an early PageRank
    // refresh (about a second later; requests coalesce, one refresh at a time); sent
    // first, those requests are over before the graph is, and the refreshes the
    // applications wait for come after the last batch (see `e2e::pagerank`). The stored
    // features are sums and sets, the same in any order (the skew check says so).
    let (outcomes, others): (Vec<_>, Vec<_>) = population
        .observed_signals()
        .into_iter()
        .partition(|signal| matches!(signal.kind, Some(SignalKind::RepaymentOutcome(_))));
    let requests = batches(
        outcomes.into_iter().chain(others).collect(),
        &format!("{tag}-signals"),
        SIGNALS_PER_BATCH,
    );
    let batch_count = requests.len();
    let progress = bar(batch_count as u64, "signals");
    // One batch per stream (a stream of many batches answered INTERNAL, "deadlock
    // detected" in scoring's log, under `make run`), a few streams at once, each batch
    // retried a few times. Started in order, so the outcome batches go first.
    let ingested: Vec<anyhow::Result<u64>> = stream::iter(requests)
        .map(|request| {
            let mut scoring = clients.scoring.clone();
            let service = clients.service.clone();
            let calls = clients.calls.clone();
            let progress = progress.clone();
            async move {
                let mut retried = 0;
                loop {
                    let answer = calls
                        .time(
                            "scoring.IngestSignals",
                            scoring.ingest_signals(with_token(
                                tokio_stream::iter([request.clone()]),
                                &service,
                            )),
                        )
                        .await;
                    match answer {
                        Ok(summary) => {
                            let summary = summary.into_inner();
                            ensure!(
                                summary.batches_received == 1 && summary.signals_rejected == 0,
                                "every signal ingested: {summary:?}"
                            );
                            progress.inc(1);
                            return Ok(retried);
                        }
                        Err(status) if retried + 1 < u64::from(INGEST_ATTEMPTS_MAX) => {
                            retried += 1;
                            eprintln!("demo: IngestSignals {} (retrying)", code_of(&status));
                            tokio::time::sleep(Duration::from_millis(200 * retried)).await;
                        }
                        Err(status) => {
                            return Err(status).context("IngestSignals (after retries)");
                        }
                    }
                }
            }
        })
        .buffer_unordered(config.concurrency.min(INGEST_STREAMS_MAX))
        .collect()
        .await;
    for retried in ingested {
        let retried = retried?;
        if retried > 0 {
            *failures
                .entry("IngestSignals retried (deadlock under load)".to_owned())
                .or_default() += retried;
        }
    }
    progress.finish();
    phases.push(("ingest signals".to_owned(), phase.elapsed().as_secs_f64()));
    // The demo's own CPU work, on one blocking thread while the demo waits for the
    // PageRank refresh (the machine is otherwise idle then; before, these two ran
    // beside customer creation, ingestion and applications and took the services'
    // cores): the trainer's view of the same people, then the no-social scorecard.
    let own_work = tokio::task::spawn_blocking({
        let population = population.clone();
        move || -> anyhow::Result<(Vec<skew::Values>, NoSocial)> {
            let offline = skew::offline_values(&population).context("the offline features")?;
            let no_social =
                no_social::train().context("training the scorecard without social features")?;
            Ok((offline, no_social))
        }
    });
    let phase = Instant::now();
    eprintln!("demo: waiting for scoring's PageRank refresh of the ingested graph");
    let pagerank = pagerank::wait_for_refresh(config.scoring_admin.clone()).await?;
    if !pagerank.refreshed {
        eprintln!(
            "demo: warning: no PageRank refresh within {} s (SCORING_PAGERANK_REFRESH_SECONDS?): defaulter_pagerank is stale for the applications",
            pagerank::WAIT_MAX.as_secs()
        );
    }
    phases.push((
        "wait for the PageRank refresh".to_owned(),
        phase.elapsed().as_secs_f64(),
    ));

    // --- applications ----------------------------------------------------------------------
    // Each applicant's ExplainDecision follows their own application in the same task:
    // no second pass over everyone with its own tail.
    let phase = Instant::now();
    let progress = bar(config.customers as u64, "applications");
    let applied: Vec<anyhow::Result<(Applied, Explained)>> =
        stream::iter(population.people.iter().zip(&customer_ids).enumerate())
            .map(|(index, (person, customer_id))| {
                let account = clients.account.clone();
                let mut scoring = clients.scoring.clone();
                let operator = clients.operator.clone();
                let calls = clients.calls.clone();
                let token = keys.mint("demo", Role::Customer, Some(customer_id), ttl);
                let request = ApplyForCreditLineRequest {
                    request_id: format!("{tag}-apply-{index}"),
                    customer_id: customer_id.clone(),
                    annual_income: cny(person.monthly_income_fen * 12),
                    device_id: person.devices.first().cloned().unwrap_or_default(),
                    data_consent: true,
                    ..Default::default()
                };
                let progress = progress.clone();
                async move {
                    let token = token?;
                    let started = Instant::now();
                    let answer = calls
                        .idempotent("account.ApplyForCreditLine", || {
                            let mut account = account.clone();
                            let request = with_token(request.clone(), &token);
                            async move { account.apply_for_credit_line(request).await }
                        })
                        .await
                        .context("ApplyForCreditLine")?
                        .into_inner();
                    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
                    let outcome = DecisionOutcome::try_from(answer.outcome)
                        .unwrap_or(DecisionOutcome::Unspecified);
                    let applied = (outcome, answer.credit_line, latency_ms);
                    if answer.decision_id.is_empty() {
                        progress.inc(1);
                        return Ok((applied, (None, HashMap::new())));
                    }
                    let decision_id = answer.decision_id;
                    let explained = calls
                        .time(
                            "scoring.ExplainDecision",
                            scoring.explain_decision(with_token(
                                ExplainDecisionRequest {
                                    decision_id: decision_id.clone(),
                                },
                                &operator,
                            )),
                        )
                        .await
                        .with_context(|| format!("ExplainDecision {decision_id}"))?
                        .into_inner();
                    progress.inc(1);
                    let score = explained.decision.as_ref().map(|decision| decision.score);
                    let features = explained
                        .contributions
                        .iter()
                        .map(|contribution| {
                            (
                                contribution.feature.clone(),
                                contribution.value.parse::<f64>().ok(),
                            )
                        })
                        .collect();
                    Ok((applied, (score, features)))
                }
            })
            .buffered(config.concurrency)
            .collect()
            .await;
    progress.finish();
    let mut applicants = Vec::with_capacity(applied.len());
    // The line each approved applicant was opened with (ApplyForCreditLine's answer):
    // their first borrow needs no GetCreditLine.
    let mut opened_lines = Vec::with_capacity(applied.len());
    for (person, answer) in population.people.iter().zip(applied) {
        let ((outcome, line, latency_ms), (score, features)) = answer?;
        opened_lines.push(line);
        applicants.push(Applicant {
            defaults: person.defaults,
            outcome,
            score,
            features,
            latency_ms,
        });
    }
    phases.push((
        "applications + explanations".to_owned(),
        phase.elapsed().as_secs_f64(),
    ));

    // --- the book, day by day ----------------------------------------------------------
    let start_date = business_date(&mut clients).await?;
    let end_date = start_date
        .checked_add_months(Months::new(config.months))
        .context("the end date")?;
    let mut borrowers: Vec<Borrower> = population
        .people
        .iter()
        .zip(&customer_ids)
        .zip(applicants.iter().zip(opened_lines))
        .enumerate()
        .filter(|(_, (_, (applicant, _)))| applicant.outcome == DecisionOutcome::Approved)
        .map(|(index, ((person, customer_id), (_, line)))| {
            Ok(Borrower {
                index,
                customer_id: customer_id.clone(),
                token: keys.mint("demo", Role::Customer, Some(customer_id), ttl)?,
                device_id: person.devices.first().cloned().unwrap_or_default(),
                purpose: purpose_of(person.purpose),
                defaults: person.defaults,
                // Spread over the horizon: some default early, some late in the year.
                payments_before_stop: mix(config.seed ^ (index as u64) << 8)
                    % u64::from(config.months.max(1)),
                payments: 0,
                loan: None,
                line,
                line_trusted: true,
                next_borrow: start_date,
                loans_taken: 0,
            })
        })
        .collect::<anyhow::Result<_>>()?;

    // The month-end review covers the lines of this run's approved customers, in calls
    // of REVIEW_CHUNK_CUSTOMERS (sorted, so each call's customers are the same every run).
    let mut review_ids: Vec<String> = borrowers.iter().map(|b| b.customer_id.clone()).collect();
    review_ids.sort_unstable();
    let phase = Instant::now();
    let days_max = config.months as usize * DAYS_PER_MONTH_MAX;
    let progress = ProgressBar::new((end_date - start_date).num_days().max(1) as u64);
    progress.set_style(
        ProgressStyle::with_template(
            "{prefix:>12} [{elapsed_precise}] {bar:36} {pos}/{len} days {msg}",
        )
        .expect("a valid template"),
    );
    progress.set_prefix("book");
    let mut months = Vec::new();
    let mut disbursed: BTreeMap<String, Tally> = BTreeMap::new();
    let mut repayments = 0u64;
    let mut borrows = 0u64;
    let mut end_of_days = 0u64;
    let mut calls = 0u64;
    // Repay (and GetLoan) calls: a repayment takes more than one when the last view's
    // interest differs from the ledger's.
    let mut repay_calls_total = 0u64;
    let mut month = 1u32;
    let mut date = start_date;
    let (mut day_seconds, mut end_of_day_seconds, mut month_end_seconds) = (0.0, 0.0, 0.0);
    for _ in 0..days_max {
        if date >= end_date {
            break;
        }
        // The day's borrows and repayments, as one stream: a customer with no loan may
        // borrow, one with a loan may repay, never both on one day, and each call
        // depends only on that customer's own state, so there is no barrier between
        // the borrows and the repayments (the borrows start first, as before). Results
        // are applied in customer order; the day closes after all of them.
        let day_started = Instant::now();
        let mut actions: Vec<(usize, Action)> = borrowers
            .iter()
            .enumerate()
            .filter(|(_, b)| b.loan.is_none() && b.next_borrow <= date && !b.stopped_paying())
            .map(|(position, _)| (position, Action::Borrow))
            .collect();
        actions.extend(
            borrowers
                .iter()
                .enumerate()
                .filter(|(_, b)| !b.stopped_paying())
                .filter_map(|(position, b)| {
                    let owed = owed_by(b.loan.as_ref()?, date);
                    (owed > 0).then_some((position, Action::Repay(owed)))
                }),
        );
        let results: Vec<Done> = stream::iter(actions.iter())
            .map(|&(position, action)| {
                let borrower = &borrowers[position];
                let clients = clients.clone();
                let tag = &tag;
                async move {
                    match action {
                        Action::Borrow => Done::Borrowed(
                            borrow(
                                clients,
                                borrower,
                                tag,
                                mix(config.seed.wrapping_mul(31)
                                    ^ ((borrower.index as u64) << 16)
                                    ^ borrower.loans_taken),
                            )
                            .await,
                        ),
                        Action::Repay(owed) => {
                            Done::Repaid(repay(clients, borrower, owed, date, tag).await)
                        }
                    }
                }
            })
            .buffered(config.concurrency)
            .collect()
            .await;
        for (&(position, _), result) in actions.iter().zip(results) {
            let borrower = &mut borrowers[position];
            match result {
                Done::Borrowed((result, made)) => {
                    calls += made;
                    match result {
                        Ok((loan, line)) => {
                            borrows += 1;
                            borrower.loans_taken += 1;
                            let tally = disbursed
                                .entry(
                                    borrower
                                        .purpose
                                        .as_str_name()
                                        .trim_start_matches("LOAN_PURPOSE_")
                                        .to_owned(),
                                )
                                .or_default();
                            tally.loans += 1;
                            tally.principal_minor += minor(&loan.principal);
                            borrower.loan = Some(loan);
                            borrower.line = line;
                        }
                        Err(code) => {
                            *failures.entry(format!("Borrow {code}")).or_default() += 1;
                            borrower.line = None;
                            borrower.next_borrow =
                                date + chrono::Duration::days(RETRY_BORROW_DAYS as i64);
                        }
                    }
                }
                Done::Repaid(Ok((loan, line, repay_calls))) => {
                    calls += repay_calls;
                    repay_calls_total += repay_calls;
                    repayments += 1;
                    borrower.payments += 1;
                    borrower.line = line;
                    if loan.status == LoanStatus::Active as i32 {
                        borrower.loan = Some(loan);
                    } else {
                        borrower.loan = None;
                        borrower.next_borrow = date
                            + chrono::Duration::days(
                                1 + (mix(borrower.index as u64
                                    ^ borrower.loans_taken << 32
                                    ^ config.seed)
                                    % REBORROW_GAP_DAYS_MAX)
                                    as i64,
                            );
                    }
                }
                Done::Repaid(Err((code, made))) => {
                    calls += made;
                    *failures.entry(format!("Repay {code}")).or_default() += 1;
                    // Possibly overdue from tonight: scoring's live policy may freeze
                    // the line (and unfreeze it later) behind the demo's back, so
                    // this customer's line is read before every borrow from now on.
                    borrower.line = None;
                    borrower.line_trusted = false;
                }
            }
        }
        day_seconds += day_started.elapsed().as_secs_f64();

        let end_of_day_started = Instant::now();
        let next = end_of_day(&mut clients, date, &tag).await?;
        end_of_day_seconds += end_of_day_started.elapsed().as_secs_f64();
        end_of_days += 1;
        calls += 1;
        progress.inc((next - date).num_days().max(1) as u64);
        date = next;

        let boundary = start_date
            .checked_add_months(Months::new(month))
            .context("a month boundary")?;
        if date >= boundary {
            let month_end_started = Instant::now();
            // The review rescores every line from scoring's features, which the day's
            // repayment and delinquency events reach through scoring's consumer: a run
            // at concurrency 64 reviewed before the consumer had caught up and raised 2
            // limits fewer than the same seed at 8-32. So the events settle first.
            if month < config.months && !quiet::wait_for_events(config.admins.clone()).await? {
                *failures
                    .entry(format!(
                        "events still moving after {} s before a portfolio review",
                        quiet::WAIT_MAX.as_secs()
                    ))
                    .or_default() += 1;
            }
            // The month's snapshot (delinquency and outstanding principal, which no
            // limit change touches) is read while the review changes limits.
            let review = async {
                if month >= config.months {
                    return Vec::new();
                }
                let mut scoring = clients.scoring.clone();
                let mut answers = Vec::new();
                for (chunk, customer_ids) in review_ids.chunks(REVIEW_CHUNK_CUSTOMERS).enumerate() {
                    answers.push(
                        clients
                            .calls
                            .time(
                                "scoring.RunPortfolioReview",
                                scoring.run_portfolio_review(with_token(
                                    RunPortfolioReviewRequest {
                                        request_id: format!("{tag}-review-{month}-{chunk}"),
                                        customer_ids: customer_ids.to_vec(),
                                        ..Default::default()
                                    },
                                    &clients.operator,
                                )),
                            )
                            .await,
                    );
                }
                answers
            };
            let mut reading = clients.clone();
            let (report, review) = tokio::join!(portfolio(&mut reading), review);
            let mut snapshot = snapshot(month, &report?)?;
            for answer in review {
                match answer {
                    Ok(review) => {
                        let review = review.into_inner();
                        snapshot.lines_reviewed += review.lines_reviewed;
                        snapshot.limits_raised += review.limits_raised;
                        snapshot.limits_cut += review.limits_cut;
                    }
                    Err(status) => {
                        *failures
                            .entry(format!("RunPortfolioReview {}", code_of(&status)))
                            .or_default() += 1;
                    }
                }
            }
            if month < config.months {
                // Limits, rates and statuses may have changed: every line is read
                // again before its next borrow.
                for borrower in &mut borrowers {
                    borrower.line = None;
                }
            }
            months.push(snapshot);
            month += 1;
            month_end_seconds += month_end_started.elapsed().as_secs_f64();
        }
        let elapsed = phase.elapsed().as_secs_f64().max(0.001);
        progress.set_message(format!(
            "month {}/{} {date} | {:.0} calls/s, {} loans, {} repayments",
            month.min(config.months),
            config.months,
            calls as f64 / elapsed,
            borrows,
            repayments
        ));
    }
    progress.finish();
    phases.push((
        "book (business days)".to_owned(),
        phase.elapsed().as_secs_f64(),
    ));
    phases.push(("book: borrows and repayments".to_owned(), day_seconds));
    phases.push(("book: RunEndOfDay".to_owned(), end_of_day_seconds));
    phases.push((
        "book: month ends (portfolio report, review)".to_owned(),
        month_end_seconds,
    ));

    // --- the end: the books, notices ---------------------------------------------------------
    let phase = Instant::now();
    let final_report = portfolio(&mut clients).await?;
    if months.len() < config.months as usize {
        months.push(snapshot(config.months, &final_report)?);
    }
    let trial = clients
        .ledger
        .get_trial_balance(with_token(
            GetTrialBalanceRequest::default(),
            &clients.operator,
        ))
        .await
        .context("GetTrialBalance")?
        .into_inner();
    let integrity = clients
        .ledger
        .verify_integrity(with_token(
            VerifyIntegrityRequest::default(),
            &clients.operator,
        ))
        .await
        .context("VerifyIntegrity")?
        .into_inner();
    let integrity_detail = if integrity.ok {
        String::new()
    } else {
        format!("{integrity:?}")
    };
    phases.push((
        "trial balance, integrity".to_owned(),
        phase.elapsed().as_secs_f64(),
    ));

    let phase = Instant::now();
    if !quiet::wait_for_events(config.admins.clone()).await? {
        *failures
            .entry(format!(
                "events still moving after {} s: notices counted anyway",
                quiet::WAIT_MAX.as_secs()
            ))
            .or_default() += 1;
    }
    phases.push((
        "wait for the events to settle".to_owned(),
        phase.elapsed().as_secs_f64(),
    ));
    let phase = Instant::now();
    let notices = match notices(&clients, &customer_ids, config.concurrency).await {
        Ok(notices) => notices,
        Err(err) => {
            *failures
                .entry(format!("ListNotifications: {err:#}"))
                .or_default() += 1;
            Notices::default()
        }
    };
    phases.push(("notices".to_owned(), phase.elapsed().as_secs_f64()));

    let (offline, no_social) = own_work
        .await
        .context("the offline features and no-social training task")??;
    Ok(Outcome {
        offline,
        no_social,
        pagerank,
        applicants,
        months,
        disbursed,
        final_report,
        trial_balance_balanced: trial.balanced,
        integrity_ok: integrity.ok,
        integrity_detail,
        notices,
        calls: clients.calls.clone(),
        phase_seconds: phases,
        failures,
        repayments,
        repay_calls: repay_calls_total,
        book_calls: calls,
        borrows,
        end_of_days,
        start_date,
        end_date,
        default_rate: population.default_rate(),
        preexisting_loans: preexisting.active_loans,
    })
}

/// What is owed on `loan` by `date`: every unpaid instalment due on or before it, from
/// the last view of the loan (the answer to the borrow or the last repayment).
fn owed_by(loan: &Loan, date: NaiveDate) -> i64 {
    let Some(schedule) = loan.schedule.as_ref() else {
        return 0;
    };
    schedule
        .installments
        .iter()
        .filter(|installment| from_date(installment.due_date.as_ref()).is_ok_and(|due| due <= date))
        .map(|installment| {
            if installment.settled_date.is_some() {
                0
            } else if minor(&installment.amount_outstanding) > 0 {
                minor(&installment.amount_outstanding)
            } else {
                // A view in which instalments not yet due show nothing outstanding.
                minor(&installment.total)
                    - minor(&installment.principal_paid)
                    - minor(&installment.interest_paid)
            }
        })
        .sum()
}

/// Borrows on the line as the last answer showed it (or as GetCreditLine reads it when
/// the demo has no trusted view); returns the loan, the line after it and the calls made.
async fn borrow(
    mut clients: Clients,
    borrower: &Borrower,
    tag: &str,
    choice: u64,
) -> (Result<(Loan, Option<CreditLine>), String>, u64) {
    let mut made = 0;
    let known = borrower.line.as_ref().filter(|_| borrower.line_trusted);
    let line = match known {
        Some(line) => line.clone(),
        None => {
            made += 1;
            let read = clients
                .calls
                .time(
                    "account.GetCreditLine",
                    clients.account.get_credit_line(with_token(
                        GetCreditLineRequest {
                            customer_id: borrower.customer_id.clone(),
                        },
                        &borrower.token,
                    )),
                )
                .await;
            match read {
                Ok(answer) => match answer.into_inner().credit_line {
                    Some(line) => line,
                    None => return (Err("GetCreditLine without a line".to_owned()), made),
                },
                Err(status) => {
                    return (Err(format!("GetCreditLine {}", code_of(&status))), made);
                }
            }
        }
    };
    if line.status != CreditLineStatus::Active as i32 || line.allowed_term_months.is_empty() {
        return (
            Err(format!(
                "skipped: line {}",
                CreditLineStatus::try_from(line.status)
                    .map(|status| status.as_str_name())
                    .unwrap_or("status unknown")
            )),
            made,
        );
    }
    let headroom = minor(&line.available).min(minor(&line.max_drawdown));
    let principal =
        headroom * DRAW_SHARE_PER_MILLE / 1000 / MINIMUM_DRAWDOWN_MINOR * MINIMUM_DRAWDOWN_MINOR;
    if principal < MINIMUM_DRAWDOWN_MINOR {
        return (
            Err(format!(
                "skipped: headroom below the minimum drawdown (available {}, max drawdown {})",
                if minor(&line.available) > 0 {
                    "> 0"
                } else {
                    "0"
                },
                if minor(&line.max_drawdown) > 0 {
                    "> 0"
                } else {
                    "0"
                },
            )),
            made,
        );
    }
    let terms = &line.allowed_term_months;
    let term_months = terms[(choice % terms.len() as u64) as usize];
    made += 1;
    let request = BorrowRequest {
        request_id: format!("{tag}-borrow-{}-{}", borrower.index, borrower.loans_taken),
        customer_id: borrower.customer_id.clone(),
        principal: cny(principal),
        term_months,
        repayment_method: RepaymentMethod::EqualPrincipal as i32,
        device_id: borrower.device_id.clone(),
        purpose: borrower.purpose as i32,
        ..Default::default()
    };
    let answer = clients
        .calls
        .idempotent("account.Borrow", || {
            let mut account = clients.account.clone();
            let request = with_token(request.clone(), &borrower.token);
            async move { account.borrow(request).await }
        })
        .await;
    let result = match answer {
        Ok(answer) => {
            let answer = answer.into_inner();
            answer
                .loan
                .map(|loan| (loan, answer.credit_line))
                .ok_or_else(|| "Borrow without a loan".to_owned())
        }
        Err(status) => Err(code_of(&status)),
    };
    (result, made)
}

/// Pays `owed`; if the ledger disagrees with the last view (an error), reads the loan
/// and pays what it says is due.
async fn repay(
    mut clients: Clients,
    borrower: &Borrower,
    owed: i64,
    date: NaiveDate,
    tag: &str,
) -> Result<(Loan, Option<CreditLine>, u64), (String, u64)> {
    let loan_id = borrower
        .loan
        .as_ref()
        .map(|loan| loan.loan_id.clone())
        .unwrap_or_default();
    let request = |amount: i64, attempt: u32| RepayRequest {
        // (request ids are bounded in length: the borrower and its loan count, not the
        // loan's UUID, name the loan)
        request_id: format!(
            "{tag}-repay-{}-{}-{date}-{attempt}",
            borrower.index, borrower.loans_taken
        ),
        customer_id: borrower.customer_id.clone(),
        loan_id: loan_id.clone(),
        amount: cny(amount),
        ..Default::default()
    };
    // Pays, then pays again what the answer still shows due by today (the last view's
    // interest can differ from what the ledger charges by a few fen), at most
    // REPAY_ROUNDS_MAX times, so a payer is never left a day overdue.
    let mut amount = owed;
    let mut attempt = 0;
    let status = loop {
        let answer = clients
            .calls
            .idempotent("account.Repay", || {
                let mut account = clients.account.clone();
                let request = with_token(request(amount, attempt), &borrower.token);
                async move { account.repay(request).await }
            })
            .await;
        match answer {
            Ok(answer) => {
                let answer = answer.into_inner();
                attempt += 1;
                let Some(loan) = answer.loan else {
                    return Err(("Repay without a loan".to_owned(), u64::from(attempt)));
                };
                let rest = owed_by(&loan, date);
                if rest > 0
                    && loan.status == LoanStatus::Active as i32
                    && attempt < REPAY_ROUNDS_MAX
                {
                    amount = rest;
                    continue;
                }
                return Ok((loan, answer.credit_line, u64::from(attempt)));
            }
            Err(status) => break status,
        }
    };
    // the failed call and the successful ones before it
    let made = u64::from(attempt) + 1;
    let fresh = clients
        .calls
        .time(
            "ledger.GetLoan",
            clients.ledger.get_loan(with_token(
                GetLoanRequest {
                    loan_id: loan_id.clone(),
                },
                &clients.operator,
            )),
        )
        .await;
    let fresh = match fresh {
        Ok(answer) => answer.into_inner().loan,
        Err(err) => {
            return Err((
                format!("{} then GetLoan {}", code_of(&status), code_of(&err)),
                made + 1,
            ));
        }
    };
    let Some(fresh) = fresh else {
        return Err(("GetLoan without a loan".to_owned(), made + 1));
    };
    let owed_now = owed_by(&fresh, date);
    if owed_now == 0 {
        return Err((
            format!("{} (nothing owed per GetLoan)", code_of(&status)),
            made + 1,
        ));
    }
    let answer = clients
        .calls
        .idempotent("account.Repay", || {
            let mut account = clients.account.clone();
            let request = with_token(request(owed_now, attempt + 1), &borrower.token);
            async move { account.repay(request).await }
        })
        .await;
    match answer {
        Ok(answer) => {
            let answer = answer.into_inner();
            match answer.loan {
                // the failed call(s), GetLoan and this one
                Some(loan) => Ok((loan, answer.credit_line, made + 2)),
                None => Err(("Repay without a loan".to_owned(), made + 2)),
            }
        }
        Err(err) => Err((
            format!("{} then {}", code_of(&status), code_of(&err)),
            made + 2,
        )),
    }
}

async fn business_date(clients: &mut Clients) -> anyhow::Result<NaiveDate> {
    let answer = clients
        .ledger
        .get_business_date(with_token(GetBusinessDateRequest {}, &clients.operator))
        .await
        .context("GetBusinessDate")?
        .into_inner();
    if answer.end_of_day_running {
        bail!("an end of day is running in the ledger: try again when it has finished");
    }
    from_date(answer.business_date.as_ref())
}

async fn end_of_day(
    clients: &mut Clients,
    date: NaiveDate,
    tag: &str,
) -> anyhow::Result<NaiveDate> {
    let summary = clients
        .calls
        .time(
            "ledger.RunEndOfDay",
            clients.ledger.run_end_of_day(with_token(
                RunEndOfDayRequest {
                    request_id: format!("{tag}-eod-{date}"),
                    business_date: Some(to_date(date)),
                },
                &clients.operator,
            )),
        )
        .await
        .with_context(|| format!("RunEndOfDay {date}"))?
        .into_inner()
        .summary
        .context("an end-of-day summary")?;
    from_date(summary.next_business_date.as_ref())
}

async fn portfolio(clients: &mut Clients) -> anyhow::Result<PortfolioReport> {
    clients
        .calls
        .time(
            "ledger.GetPortfolioReport",
            clients.ledger.get_portfolio_report(with_token(
                GetPortfolioReportRequest::default(),
                &clients.operator,
            )),
        )
        .await
        .context("GetPortfolioReport")?
        .into_inner()
        .report
        .context("a portfolio report")
}

/// Overdue rate: outstanding principal of active loans past due (every bucket but
/// CURRENT) over all outstanding principal; NPL ratio as the ledger reports it.
fn snapshot(month: u32, report: &PortfolioReport) -> anyhow::Result<MonthSnapshot> {
    let outstanding = minor(&report.outstanding_principal);
    let overdue: i64 = report
        .buckets
        .iter()
        .filter(|bucket| bucket.bucket != DelinquencyBucket::Current as i32)
        .map(|bucket| minor(&bucket.outstanding_principal))
        .sum();
    Ok(MonthSnapshot {
        month,
        as_of: from_date(report.as_of_date.as_ref())?,
        active_loans: report.active_loans,
        outstanding_principal_minor: outstanding,
        overdue_rate: if outstanding > 0 {
            overdue as f64 / outstanding as f64
        } else {
            0.0
        },
        npl_ratio: report.npl_ratio.parse().unwrap_or(f64::NAN),
        limits_raised: 0,
        limits_cut: 0,
        lines_reviewed: 0,
    })
}

/// What the notification service holds for the demo's customers.
#[derive(Debug, Clone, Default)]
pub struct Notices {
    /// Notices by template, every channel together.
    pub by_type: BTreeMap<String, u64>,
    /// Notices by template, then channel (IN_APP, PUSH, ...): the service makes one
    /// notice per channel of an event, so a template's total is events x channels.
    pub by_type_and_channel: BTreeMap<String, BTreeMap<String, u64>>,
    /// Distinct source events per template (direct sends, with no event, not counted).
    pub events_by_type: BTreeMap<String, u64>,
    /// Notices beyond the first with the same event, channel and template: a notice
    /// really made twice (0 expected).
    pub duplicates: u64,
    /// Up to DUPLICATE_EXAMPLES_MAX of them: customer, event, template, channel, ids.
    pub duplicate_examples: Vec<String>,
}

/// Duplicate notices named in the report at most.
const DUPLICATE_EXAMPLES_MAX: usize = 5;

fn channel_name(channel: i32) -> String {
    NoticeChannel::try_from(channel)
        .map(|channel| {
            channel
                .as_str_name()
                .trim_start_matches("CHANNEL_")
                .to_owned()
        })
        .unwrap_or_else(|_| format!("channel {channel}"))
}

impl Notices {
    /// Adds one customer's notices.
    fn add(&mut self, customer_id: &str, notices: Vec<Notification>) {
        // (event, channel, template) -> notification ids
        let mut seen: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
        let mut events: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
        for notice in notices {
            let channel = channel_name(notice.channel);
            *self.by_type.entry(notice.template_key.clone()).or_default() += 1;
            *self
                .by_type_and_channel
                .entry(notice.template_key.clone())
                .or_default()
                .entry(channel.clone())
                .or_default() += 1;
            if notice.event_id.is_empty() {
                continue;
            }
            events
                .entry(notice.template_key.clone())
                .or_default()
                .insert(notice.event_id.clone());
            seen.entry((notice.event_id, channel, notice.template_key))
                .or_default()
                .push(notice.notification_id);
        }
        for (template, ids) in events {
            *self.events_by_type.entry(template).or_default() += ids.len() as u64;
        }
        for ((event_id, channel, template), ids) in seen {
            if ids.len() < 2 {
                continue;
            }
            self.duplicates += ids.len() as u64 - 1;
            if self.duplicate_examples.len() < DUPLICATE_EXAMPLES_MAX {
                self.duplicate_examples.push(format!(
                    "customer {customer_id} event {event_id} {template} {channel}: notifications {}",
                    ids.join(", ")
                ));
            }
        }
    }
}

/// Every notice of the demo's customers (operator token: every channel).
async fn notices(
    clients: &Clients,
    customer_ids: &[String],
    concurrency: usize,
) -> anyhow::Result<Notices> {
    let progress = bar(customer_ids.len() as u64, "notices");
    let listed: Vec<anyhow::Result<Vec<Notification>>> = stream::iter(customer_ids)
        .map(|customer_id| {
            let mut notification = clients.notification.clone();
            let operator = clients.operator.clone();
            let calls = clients.calls.clone();
            let progress = progress.clone();
            async move {
                let mut all = Vec::new();
                let mut page_token = String::new();
                for _ in 0..NOTICE_PAGES_MAX {
                    let page = calls
                        .time(
                            "notification.ListNotifications",
                            notification.list_notifications(with_token(
                                ListNotificationsRequest {
                                    customer_id: customer_id.clone(),
                                    page_size: 500,
                                    page_token: page_token.clone(),
                                    ..Default::default()
                                },
                                &operator,
                            )),
                        )
                        .await?
                        .into_inner();
                    all.extend(page.notifications);
                    if page.next_page_token.is_empty() {
                        break;
                    }
                    page_token = page.next_page_token;
                }
                progress.inc(1);
                Ok(all)
            }
        })
        .buffered(concurrency)
        .collect()
        .await;
    progress.finish();
    let mut total = Notices::default();
    for (customer_id, listed) in customer_ids.iter().zip(listed) {
        total.add(customer_id, listed?);
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(id: &str, event: &str, template: &str, channel: NoticeChannel) -> Notification {
        Notification {
            notification_id: id.to_owned(),
            event_id: event.to_owned(),
            template_key: template.to_owned(),
            channel: channel as i32,
            ..Default::default()
        }
    }

    #[test]
    fn notices_are_counted_per_channel_and_a_second_notice_of_one_event_is_a_duplicate() {
        let mut notices = Notices::default();
        notices.add(
            "c1",
            vec![
                notice("n1", "e1", "CUSTOMER_CREATED", NoticeChannel::InApp),
                notice("n2", "e1", "CUSTOMER_CREATED", NoticeChannel::Push),
                notice("n3", "e2", "LOAN_DISBURSED", NoticeChannel::InApp),
                notice("n4", "e2", "LOAN_DISBURSED", NoticeChannel::InApp),
                notice("n5", "", "OPERATOR_NOTE", NoticeChannel::InApp),
            ],
        );
        assert_eq!(notices.by_type["CUSTOMER_CREATED"], 2);
        assert_eq!(notices.events_by_type["CUSTOMER_CREATED"], 1);
        assert_eq!(notices.by_type_and_channel["CUSTOMER_CREATED"]["PUSH"], 1);
        assert_eq!(notices.by_type_and_channel["LOAN_DISBURSED"]["IN_APP"], 2);
        // One event and channel twice: one duplicate, named with both ids.
        assert_eq!(notices.duplicates, 1);
        assert!(notices.duplicate_examples[0].contains("n3, n4"));
        // A direct send has no event: counted, never a duplicate.
        assert_eq!(notices.by_type["OPERATOR_NOTE"], 1);
        assert!(!notices.events_by_type.contains_key("OPERATOR_NOTE"));
    }
}
