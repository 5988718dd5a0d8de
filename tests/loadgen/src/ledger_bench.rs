//! The ledger scenarios (issue 8), against a running ledger with a service token
//! minted from `LOADGEN_JWT_SECRET` (the secret the ledger was started with) unless
//! `--token` is given:
//!
//! - `ledger-transfers`: `CreateTransfers` with `--transfers-per-call` transfers each.
//!   Every worker moves money back and forth between its own two platform FUNDING
//!   sub-accounts (no balance flags, directions alternating so nothing drifts, no row
//!   shared between workers). Throughput and `requests` count transfers; latencies are
//!   per call.
//! - `ledger-disburse`: `Disburse` (100–1,000 CNY) across 1,000 customers whose credit
//!   lines are opened first; a worker only draws on its own customers, and the run stops
//!   (by request budget) well before any line runs out.
//! - `ledger-repay`: `Repay` of 1 CNY at a time on loans booked first (1,000 customers,
//!   3 loans each, 100–1,000 CNY over 10 months through `Disburse`); worker i repays
//!   the loans of customers i, i + concurrency, ... in turn, so no customer's line is
//!   shared between workers, and the run stops (by request budget) well before any
//!   loan is paid off.
//! - `ledger-eod`: books loans until `--eod-loans` are active (16 concurrent `Disburse`
//!   calls, several loans per customer), then times one `RunEndOfDay` for the current
//!   business date. One row: `requests` = loans processed, throughput = loans/s, every
//!   latency column = the call's wall time. With `LOADGEN_EOD_DAYS` > 1 it closes that
//!   many days in a row, repaying what is due on `LOADGEN_EOD_PAYING_PERCENT` of the
//!   loans before each (the demo's conditions: instalments due, reminders, some loans
//!   overdue); the latency columns are then over the days, one line per day on stderr.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use hdrhistogram::Histogram;
use microloan_platform::auth::{Role, TokenKeys};
use microloan_proto::common::v1::{Loan, LoanPurpose, LoanStatus, Money, RepaymentMethod};
use microloan_proto::google::r#type::Date;
use microloan_proto::ledger::v1::{
    Account, AccountCode, AccountKey, CreateAccountStatus, CreateAccountsRequest,
    CreateTransferStatus, CreateTransfersRequest, DisburseRequest, GetAccountRequest,
    GetBusinessDateRequest, GetPortfolioReportRequest, OpenCreditLineRequest, RepayRequest,
    RunEndOfDayRequest, Transfer, TransferCode, get_account_request::Lookup,
    ledger_service_client::LedgerServiceClient,
};
use tonic::Status;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::report::{LatencyMs, RunReport};
use crate::runner::{self, Limits, Plan};
use crate::scenario::{Bearer, Scenario, ScenarioName, Setup, Worker};
use crate::{DEFAULT_DURATION_SECONDS, DURATION_MAX_SECONDS, RunArgs, connect, endpoint};

type Client = LedgerServiceClient<InterceptedService<Channel, Bearer>>;

/// Customers of `ledger-disburse`.
const DISBURSE_CUSTOMERS: usize = 1_000;
/// Each line's limit: 200,000 CNY in fen (the largest the book allows), 200 loans at
/// the largest principal.
const LINE_LIMIT_FEN: i64 = 20_000_000;
/// At most this many `Disburse` calls per customer in one run (lines never run out).
const DISBURSE_PER_CUSTOMER_MAX: u64 = 150;
/// `ledger-eod` books at most this many loans on one customer's line.
const EOD_LOANS_PER_CUSTOMER: usize = 10;
/// Loans `ledger-repay` books on each of its customers before the run.
const REPAY_LOANS_PER_CUSTOMER: usize = 3;
/// Each `ledger-repay` call repays this much (fen): 1 CNY.
const REPAY_FEN: i64 = 100;
/// At most this many `Repay` calls per loan in one run: 50 CNY, below the smallest
/// principal (100 CNY), so no loan is paid off (or refused) during a run.
const REPAY_PER_LOAN_MAX: u64 = 50;
/// Concurrent setup calls.
const SETUP_CONCURRENCY: usize = 16;
/// How long one `RunEndOfDay` may take.
const EOD_TIMEOUT: Duration = Duration::from_secs(600);

fn new_id() -> String {
    Uuid::now_v7().to_string()
}

fn cny(minor_units: i64) -> Option<Money> {
    Some(Money {
        currency_code: "CNY".into(),
        minor_units,
    })
}

pub(crate) fn bearer(args: &RunArgs) -> anyhow::Result<Bearer> {
    if args.token.as_deref().is_some_and(|t| !t.trim().is_empty()) {
        return Bearer::new(args.token.as_deref());
    }
    let secret = std::env::var("LOADGEN_JWT_SECRET")
        .context("the ledger scenarios need --token / LOADGEN_TOKEN or LOADGEN_JWT_SECRET")?;
    let token = TokenKeys::from_secret(secret.as_bytes())
        .mint("loadgen", Role::Service, None, Duration::from_secs(3_600))
        .map_err(|err| anyhow::anyhow!("minting a service token: {err:?}"))?;
    Bearer::new(Some(&token))
}

/// A pseudo-random principal of 100–1,000 CNY (fen), from a counter.
fn principal(n: u64) -> i64 {
    let mixed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 33;
    10_000 + (mixed % 90_001) as i64
}

fn drawdown(customer_id: &str, credit_line_id: &str, principal_fen: i64) -> DisburseRequest {
    DisburseRequest {
        request_id: new_id(),
        customer_id: customer_id.to_owned(),
        loan_id: new_id(),
        credit_line_id: credit_line_id.to_owned(),
        principal: cny(principal_fen),
        term_months: 10,
        repayment_method: RepaymentMethod::EqualPrincipal as i32,
        daily_rate: "0.0005".into(),
        penalty_daily_rate: String::new(),
        purpose: LoanPurpose::Consumption as i32,
    }
}

/// Opens `count` credit lines (new customers) with 16 calls in flight.
async fn open_lines(client: &Client, count: usize) -> anyhow::Result<Vec<(String, String)>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SETUP_CONCURRENCY {
        let mut client = client.clone();
        let next = next.clone();
        tasks.spawn(async move {
            let mut opened = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let (customer_id, credit_line_id) = (new_id(), new_id());
                client
                    .open_credit_line(OpenCreditLineRequest {
                        request_id: new_id(),
                        customer_id: customer_id.clone(),
                        credit_line_id: credit_line_id.clone(),
                        limit: cny(LINE_LIMIT_FEN),
                    })
                    .await
                    .context("OpenCreditLine")?;
                opened.push((customer_id, credit_line_id));
            }
            anyhow::Ok(opened)
        });
    }
    let mut lines = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        lines.extend(joined??);
    }
    Ok(lines)
}

pub async fn run(args: &RunArgs) -> anyhow::Result<RunReport> {
    let concurrency = args.concurrency as usize;
    let connections = (args.connections as usize).min(concurrency);
    let bearer = bearer(args)?;
    let mut endpoint = endpoint(args)?;
    if args.scenario == ScenarioName::LedgerEod {
        endpoint = endpoint.timeout(EOD_TIMEOUT);
    }
    let setup = connect(&endpoint, &args.target).await?;
    let client = LedgerServiceClient::with_interceptor(setup, bearer.clone());
    if args.scenario == ScenarioName::LedgerEod {
        return end_of_day(args, client).await;
    }
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(connect(&endpoint, &args.target).await?);
    }
    let duration = args.duration_seconds.or(Some(DEFAULT_DURATION_SECONDS));
    let mut limits = Limits {
        warmup: Duration::from_secs(args.warmup_seconds),
        duration: duration.map(Duration::from_secs),
        requests: args.requests,
        time_limit: Duration::from_secs(DURATION_MAX_SECONDS),
    };
    let plan = |limits: Limits| Plan {
        scenario: args.scenario.as_str(),
        target: args.target.clone(),
        concurrency,
        channels,
        bearer,
        limits,
        interrupted: Arc::default(),
    };
    eprintln!(
        "loadgen: {} against {}: concurrency {concurrency} over {connections} connection(s); preparing",
        args.scenario.as_str(),
        args.target
    );
    match args.scenario {
        ScenarioName::LedgerTransfers => {
            let batch = args.transfers_per_call as usize;
            let scenario = Transfers::prepare_with(client, concurrency, batch).await?;
            let mut report = runner::run(scenario, plan(limits)).await?;
            report.scenario = format!("ledger-transfers ({batch}/call, transfers/s)");
            report.requests *= batch as u64;
            report.ok *= batch as u64;
            report.throughput_rps *= batch as f64;
            Ok(report)
        }
        ScenarioName::LedgerDisburse => {
            let lines = open_lines(&client, DISBURSE_CUSTOMERS).await?;
            let budget = DISBURSE_PER_CUSTOMER_MAX * DISBURSE_CUSTOMERS as u64;
            limits.requests = Some(limits.requests.map_or(budget, |r| r.min(budget)));
            let scenario = Disburse {
                lines: Arc::new(lines),
                workers: concurrency,
            };
            let mut report = runner::run(scenario, plan(limits)).await?;
            report.scenario = format!("ledger-disburse ({DISBURSE_CUSTOMERS} customers)");
            Ok(report)
        }
        ScenarioName::LedgerRepay => {
            let lines = open_lines(&client, DISBURSE_CUSTOMERS).await?;
            let loans = book_loans(&client, &lines, lines.len() * REPAY_LOANS_PER_CUSTOMER).await?;
            let budget = REPAY_PER_LOAN_MAX * loans.len() as u64;
            limits.requests = Some(limits.requests.map_or(budget, |r| r.min(budget)));
            let scenario = Repay {
                loans: Arc::new(loans),
                workers: concurrency,
            };
            let mut report = runner::run(scenario, plan(limits)).await?;
            report.scenario = format!(
                "ledger-repay ({DISBURSE_CUSTOMERS} customers x {REPAY_LOANS_PER_CUSTOMER} loans)"
            );
            Ok(report)
        }
        other => anyhow::bail!("{} is not a ledger scenario", other.as_str()),
    }
}

/// An existing platform FUNDING sub-account's id, or a new one's.
async fn funding_account(client: &mut Client, sub_account: i32) -> anyhow::Result<String> {
    let key = AccountKey {
        code: AccountCode::Funding as i32,
        currency_code: "CNY".into(),
        sub_account,
        ..AccountKey::default()
    };
    match client
        .get_account(GetAccountRequest {
            lookup: Some(Lookup::Key(key)),
        })
        .await
    {
        Ok(found) => {
            return found
                .into_inner()
                .account
                .map(|a| a.account_id)
                .context("GetAccount answered no account");
        }
        Err(status) if status.code() == tonic::Code::NotFound => {}
        Err(status) => return Err(status).context("GetAccount"),
    }
    let account_id = new_id();
    let created = client
        .create_accounts(CreateAccountsRequest {
            request_id: new_id(),
            accounts: vec![Account {
                account_id: account_id.clone(),
                code: AccountCode::Funding as i32,
                currency_code: "CNY".into(),
                sub_account,
                ..Account::default()
            }],
        })
        .await
        .context("CreateAccounts")?
        .into_inner();
    let status = created.results.first().map(|r| r.status());
    anyhow::ensure!(
        status == Some(CreateAccountStatus::Created),
        "creating FUNDING sub-account {sub_account}: {status:?}"
    );
    Ok(account_id)
}

/// `ledger-transfers`: worker i between FUNDING sub-accounts i and i + 32 (mod 64).
#[derive(Debug)]
struct Transfers {
    accounts: Vec<String>,
    batch: usize,
}

impl Transfers {
    async fn prepare_with(
        mut client: Client,
        concurrency: usize,
        batch: usize,
    ) -> anyhow::Result<Self> {
        let mut accounts = Vec::with_capacity(64);
        for sub_account in 0..64 {
            accounts.push(funding_account(&mut client, sub_account).await?);
        }
        if concurrency > 32 {
            eprintln!(
                "loadgen: ledger-transfers: {concurrency} workers share 32 account pairs (some rows are shared)"
            );
        }
        Ok(Self { accounts, batch })
    }
}

impl Scenario for Transfers {
    type Worker = TransfersWorker;

    async fn prepare(_setup: &Setup) -> anyhow::Result<Self> {
        anyhow::bail!("ledger-transfers is prepared by ledger_bench::run")
    }

    fn worker(
        &self,
        index: usize,
        channel: Channel,
        bearer: Bearer,
    ) -> anyhow::Result<Self::Worker> {
        let pair = index % 32;
        Ok(TransfersWorker {
            client: LedgerServiceClient::with_interceptor(channel, bearer),
            a: self.accounts[pair].clone(),
            b: self.accounts[pair + 32].clone(),
            batch: self.batch,
        })
    }
}

#[derive(Debug)]
struct TransfersWorker {
    client: Client,
    a: String,
    b: String,
    batch: usize,
}

impl Worker for TransfersWorker {
    async fn call(&mut self) -> Result<(), Status> {
        let transfers = (0..self.batch)
            .map(|i| {
                let (debit, credit) = if i % 2 == 0 {
                    (&self.a, &self.b)
                } else {
                    (&self.b, &self.a)
                };
                Transfer {
                    transfer_id: new_id(),
                    debit_account_id: debit.clone(),
                    credit_account_id: credit.clone(),
                    amount: cny(100),
                    code: TransferCode::ManualAdjustment as i32,
                    ..Transfer::default()
                }
            })
            .collect();
        // An odd batch leaves one transfer a→b; the next call's first goes a→b too,
        // so swap sides to keep the pair balanced over time.
        if self.batch % 2 == 1 {
            std::mem::swap(&mut self.a, &mut self.b);
        }
        let answer = self
            .client
            .create_transfers(CreateTransfersRequest {
                request_id: new_id(),
                transfers,
            })
            .await?
            .into_inner();
        match answer
            .results
            .iter()
            .find(|r| r.status() != CreateTransferStatus::Created)
        {
            None if answer.results.len() == self.batch => Ok(()),
            None => Err(Status::internal("fewer results than transfers")),
            Some(bad) => Err(Status::failed_precondition(format!(
                "transfer {} answered {:?}",
                bad.index,
                bad.status()
            ))),
        }
    }
}

/// `ledger-disburse`: worker i draws on customers i, i + concurrency, ...
#[derive(Debug)]
struct Disburse {
    lines: Arc<Vec<(String, String)>>,
    workers: usize,
}

impl Scenario for Disburse {
    type Worker = DisburseWorker;

    async fn prepare(_setup: &Setup) -> anyhow::Result<Self> {
        anyhow::bail!("ledger-disburse is prepared by ledger_bench::run")
    }

    fn worker(
        &self,
        index: usize,
        channel: Channel,
        bearer: Bearer,
    ) -> anyhow::Result<Self::Worker> {
        Ok(DisburseWorker {
            client: LedgerServiceClient::with_interceptor(channel, bearer),
            lines: self.lines.clone(),
            next: index,
            step: self.workers,
            calls: 0,
        })
    }
}

#[derive(Debug)]
struct DisburseWorker {
    client: Client,
    lines: Arc<Vec<(String, String)>>,
    next: usize,
    /// The stride: the worker count.
    step: usize,
    calls: u64,
}

impl Worker for DisburseWorker {
    async fn call(&mut self) -> Result<(), Status> {
        let (customer_id, line_id) = &self.lines[self.next % self.lines.len()];
        let request = drawdown(
            customer_id,
            line_id,
            principal(self.calls + self.next as u64),
        );
        self.next += self.step;
        self.calls += 1;
        self.client.disburse(request).await.map(|_| ())
    }
}

/// Books `count` loans on `lines` in turn (consecutive loans on different customers, so
/// no line waits on another call) with 16 calls in flight; returns (customer id, loan
/// id) of each.
async fn book_loans(
    client: &Client,
    lines: &[(String, String)],
    count: usize,
) -> anyhow::Result<Vec<(String, String)>> {
    Ok(book_loan_views(client, lines, count)
        .await?
        .into_iter()
        .map(|(customer_id, loan)| (customer_id, loan.loan_id))
        .collect())
}

/// [`book_loans`] with each loan as `Disburse` answered it (schedule included).
async fn book_loan_views(
    client: &Client,
    lines: &[(String, String)],
    count: usize,
) -> anyhow::Result<Vec<(String, Loan)>> {
    let lines = Arc::new(lines.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SETUP_CONCURRENCY {
        let (mut client, lines, next) = (client.clone(), lines.clone(), next.clone());
        tasks.spawn(async move {
            let mut booked = Vec::new();
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= count {
                    return anyhow::Ok(booked);
                }
                let (customer_id, line_id) = &lines[n % lines.len()];
                let request = drawdown(customer_id, line_id, principal(n as u64));
                let loan = client
                    .disburse(request)
                    .await
                    .context("Disburse while booking")?
                    .into_inner()
                    .loan
                    .context("Disburse answered no loan")?;
                booked.push((customer_id.clone(), loan));
            }
        });
    }
    let mut loans = Vec::with_capacity(count);
    while let Some(joined) = tasks.join_next().await {
        loans.extend(joined??);
    }
    Ok(loans)
}

/// `ledger-repay`: worker i repays the loans of customers i, i + workers, ... in turn.
#[derive(Debug)]
struct Repay {
    /// (customer id, loan id).
    loans: Arc<Vec<(String, String)>>,
    workers: usize,
}

impl Scenario for Repay {
    type Worker = RepayWorker;

    async fn prepare(_setup: &Setup) -> anyhow::Result<Self> {
        anyhow::bail!("ledger-repay is prepared by ledger_bench::run")
    }

    fn worker(
        &self,
        index: usize,
        channel: Channel,
        bearer: Bearer,
    ) -> anyhow::Result<Self::Worker> {
        // A customer belongs to exactly one worker: the customers are numbered in
        // order of first appearance, and worker i takes those equal to i modulo workers.
        let mut customers: std::collections::HashMap<&str, usize> =
            std::collections::HashMap::new();
        let mut mine = Vec::new();
        for (customer_id, loan_id) in self.loans.iter() {
            let seen = customers.len();
            let number = *customers.entry(customer_id.as_str()).or_insert(seen);
            if number % self.workers == index % self.workers {
                mine.push((customer_id.clone(), loan_id.clone()));
            }
        }
        anyhow::ensure!(
            !mine.is_empty(),
            "ledger-repay: worker {index} has no loans (more workers than customers)"
        );
        Ok(RepayWorker {
            client: LedgerServiceClient::with_interceptor(channel, bearer),
            loans: mine,
            next: 0,
        })
    }
}

#[derive(Debug)]
struct RepayWorker {
    client: Client,
    loans: Vec<(String, String)>,
    next: usize,
}

impl Worker for RepayWorker {
    async fn call(&mut self) -> Result<(), Status> {
        let (customer_id, loan_id) = &self.loans[self.next % self.loans.len()];
        self.next += 1;
        self.client
            .repay(RepayRequest {
                request_id: new_id(),
                customer_id: customer_id.clone(),
                loan_id: loan_id.clone(),
                amount: cny(REPAY_FEN),
                pay_off: false,
                external_reference: String::new(),
            })
            .await
            .map(|_| ())
    }
}

async fn active_loans(client: &mut Client) -> anyhow::Result<i64> {
    let report = client
        .get_portfolio_report(GetPortfolioReportRequest::default())
        .await
        .context("GetPortfolioReport")?
        .into_inner();
    Ok(report.report.map_or(0, |r| r.active_loans))
}

/// `ledger-eod`'s extra knobs, from the environment (loadgen's flags live elsewhere):
/// `LOADGEN_EOD_DAYS` consecutive business days to close (default 1: only the date the
/// loans were booked on, no instalment due), and `LOADGEN_EOD_PAYING_PERCENT` of the
/// loans booked by this run that pay what is due on each due date before its end of
/// day (default 95; the others fall overdue: penalty, overdue reminders). With 35 days
/// or more a run crosses the first due date as the demo's book does (loans drawn on
/// one day, so every reminder of an offset falls on one date).
fn eod_knob(name: &str, default: u64, max: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(text) => {
            let value: u64 = text
                .trim()
                .parse()
                .with_context(|| format!("{name} must be a whole number, got {text:?}"))?;
            anyhow::ensure!(value <= max, "{name} must be at most {max}, got {value}");
            Ok(value)
        }
        Err(_) => Ok(default),
    }
}

fn minor(money: Option<&Money>) -> i64 {
    money.map_or(0, |m| m.minor_units)
}

/// What the loan owes by `date` as its last view shows it (instalments due on or
/// before it, not settled), as the demo computes it.
fn owed_by(loan: &Loan, date: &Date) -> i64 {
    let key = |d: &Date| (d.year, d.month, d.day);
    loan.schedule.as_ref().map_or(0, |schedule| {
        schedule
            .installments
            .iter()
            .filter(|i| i.settled_date.is_none())
            .filter(|i| i.due_date.as_ref().is_some_and(|due| key(due) <= key(date)))
            .map(|i| match minor(i.amount_outstanding.as_ref()) {
                0 => {
                    minor(i.total.as_ref())
                        - minor(i.principal_paid.as_ref())
                        - minor(i.interest_paid.as_ref())
                }
                owed => owed,
            })
            .sum()
    })
}

/// Repays what each paying loan owes by `date` (16 calls in flight); returns the calls
/// made. Views are updated from the answers; paid-off loans drop out.
async fn repay_due(
    client: &Client,
    loans: &mut Vec<(String, Loan)>,
    date: &Date,
) -> anyhow::Result<usize> {
    let mut chunks: Vec<Vec<(String, Loan)>> = (0..SETUP_CONCURRENCY).map(|_| Vec::new()).collect();
    for (n, loan) in loans.drain(..).enumerate() {
        chunks[n % SETUP_CONCURRENCY].push(loan);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in chunks {
        let (mut client, date) = (client.clone(), *date);
        tasks.spawn(async move {
            let (mut kept, mut calls) = (Vec::with_capacity(chunk.len()), 0usize);
            for (customer_id, loan) in chunk {
                let owed = owed_by(&loan, &date);
                if owed <= 0 {
                    kept.push((customer_id, loan));
                    continue;
                }
                calls += 1;
                let after = client
                    .repay(RepayRequest {
                        request_id: new_id(),
                        customer_id: customer_id.clone(),
                        loan_id: loan.loan_id.clone(),
                        amount: cny(owed),
                        pay_off: false,
                        external_reference: String::new(),
                    })
                    .await
                    .context("Repay of what is due")?
                    .into_inner()
                    .loan
                    .context("Repay answered no loan")?;
                if after.status == LoanStatus::Active as i32 {
                    kept.push((customer_id, after));
                }
            }
            anyhow::Ok((kept, calls))
        });
    }
    let mut calls = 0;
    while let Some(joined) = tasks.join_next().await {
        let (kept, made) = joined??;
        loans.extend(kept);
        calls += made;
    }
    Ok(calls)
}

/// `ledger-eod`: book up to `--eod-loans` active loans, then time one end of day (or
/// `LOADGEN_EOD_DAYS` in a row, repaying what is due before each, see [`eod_knob`]).
async fn end_of_day(args: &RunArgs, mut client: Client) -> anyhow::Result<RunReport> {
    let days = eod_knob("LOADGEN_EOD_DAYS", 1, 3_660)?.max(1);
    let paying_percent = eod_knob("LOADGEN_EOD_PAYING_PERCENT", 95, 100)?;
    let wanted = args.eod_loans as i64;
    let active = active_loans(&mut client).await?;
    let missing = (wanted - active).max(0) as usize;
    eprintln!("loadgen: ledger-eod: {active} active loans; booking {missing} more");
    let booking = std::time::Instant::now();
    let mut paying = Vec::new();
    if missing > 0 {
        let customers = missing.div_ceil(EOD_LOANS_PER_CUSTOMER);
        let lines = open_lines(&client, customers).await?;
        let booked = book_loan_views(&client, &lines, missing).await?;
        paying = booked
            .into_iter()
            .enumerate()
            .filter(|(n, _)| (*n as u64 % 100) < paying_percent)
            .map(|(_, loan)| loan)
            .collect();
    }
    eprintln!(
        "loadgen: ledger-eod: booked {missing} loans in {:.1} s; running end of day",
        booking.elapsed().as_secs_f64()
    );
    let mut histogram = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3)?;
    let (mut loans, mut total) = (0u64, Duration::ZERO);
    for day in 1..=days {
        let date = client
            .get_business_date(GetBusinessDateRequest {})
            .await
            .context("GetBusinessDate")?
            .into_inner()
            .business_date
            .context("GetBusinessDate answered no date")?;
        let repaid = if days > 1 {
            repay_due(&client, &mut paying, &date).await?
        } else {
            0
        };
        let started = std::time::Instant::now();
        let summary = client
            .run_end_of_day(RunEndOfDayRequest {
                request_id: new_id(),
                business_date: Some(date),
            })
            .await
            .context("RunEndOfDay")?
            .into_inner()
            .summary
            .context("RunEndOfDay answered no summary")?;
        let wall = started.elapsed();
        total += wall;
        let processed = summary.loans_processed.max(0) as u64;
        loans += processed;
        histogram.saturating_record((wall.as_micros() as u64).max(1));
        eprintln!(
            "loadgen: ledger-eod: day {day} {}-{:02}-{:02}: {processed} loans processed in {:.3} s \
             ({repaid} repaid before it; {} due, {} newly overdue, penalty {} fen, {} events)",
            date.year,
            date.month,
            date.day,
            wall.as_secs_f64(),
            summary.installments_due,
            summary.installments_newly_overdue,
            minor(summary.penalty_accrued.as_ref()),
            summary.events_emitted,
        );
    }
    let scenario = if days == 1 {
        format!("ledger-eod ({loans} loans; loans/s, wall time)")
    } else {
        format!(
            "ledger-eod ({} loans x {days} days; loans/s, wall time per day)",
            loans / days
        )
    };
    Ok(RunReport {
        scenario,
        target: args.target.clone(),
        concurrency: 1,
        connections: 1,
        warmup_seconds: 0,
        elapsed_seconds: total.as_secs_f64(),
        requests: loans,
        ok: loans,
        errors: 0,
        errors_by_code: Default::default(),
        first_error_by_code: Default::default(),
        throughput_rps: loans as f64 / total.as_secs_f64().max(1e-9),
        latency_ms: LatencyMs::from_micros(&histogram),
        stopped_by: "requests".into(),
        loadgen_version: env!("CARGO_PKG_VERSION").to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_stay_within_100_to_1000_cny_and_lines_cannot_run_out() {
        for n in 0..100_000 {
            assert!((10_000..=100_000).contains(&principal(n)), "{n}");
        }
        assert!(DISBURSE_PER_CUSTOMER_MAX as i64 * 100_000 <= LINE_LIMIT_FEN);
    }

    #[test]
    fn what_is_owed_counts_unsettled_instalments_due_by_the_date() {
        use microloan_proto::common::v1::{Installment, RepaymentSchedule};
        let date = |day| Date {
            year: 2027,
            month: 1,
            day,
        };
        let installment = |day, outstanding, total, paid, settled: bool| Installment {
            due_date: Some(date(day)),
            amount_outstanding: cny(outstanding),
            total: cny(total),
            principal_paid: cny(paid),
            settled_date: settled.then(|| date(day)),
            ..Installment::default()
        };
        let loan = Loan {
            schedule: Some(RepaymentSchedule {
                installments: vec![
                    installment(5, 0, 900, 900, true),
                    installment(8, 1_234, 1_200, 0, false),
                    installment(9, 0, 1_100, 100, false),
                    installment(20, 5_000, 5_000, 0, false),
                ],
                ..RepaymentSchedule::default()
            }),
            ..Loan::default()
        };
        assert_eq!(owed_by(&loan, &date(4)), 0);
        assert_eq!(owed_by(&loan, &date(8)), 1_234);
        // No outstanding figure: the plan's total less what was paid.
        assert_eq!(owed_by(&loan, &date(9)), 1_234 + 1_000);
        assert_eq!(owed_by(&loan, &date(19)), 2_234);
        assert_eq!(owed_by(&Loan::default(), &date(19)), 0);
    }

    #[test]
    fn repayments_stop_before_the_smallest_loan_is_paid_off() {
        assert!(REPAY_PER_LOAN_MAX as i64 * REPAY_FEN < 10_000);
    }
}
