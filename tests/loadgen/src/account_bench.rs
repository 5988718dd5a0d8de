//! The account scenarios (issue 10), against a running account service whose peers
//! (scoring at `--scoring-target`, the ledger) are running too, with tokens minted from
//! `LOADGEN_JWT_SECRET` (the secret the services were started with):
//!
//! - Setup, shared by both: a seeded synthetic population of `POPULATION` people
//!   (libs/population) is onboarded as the e2e suite does it (`e2e::journey::onboard`:
//!   the `CUSTOMERS` people least likely to default, outside fraud rings, created
//!   through account by an operator, every observed signal ingested through scoring),
//!   then each applies for a credit line with their own customer token (16 in flight).
//!   The customers scoring approved are the ones measured. Every request id is derived
//!   from the population, so a second run on the same databases replays the setup.
//! - `account-credit-line`: `GetCreditLine` with the customer's own token, customers in
//!   turn; one read per customer before the run fills the Redis cache, so every
//!   measured call is a cache hit (compare with the account process's `health` row).
//! - `account-borrow`: `Borrow` of 100 CNY over 5 months, customers in turn, each call
//!   a new request id and no device id (the proto's "unknown"). A customer borrowing
//!   many times a second from one phone would trip scoring's device-velocity rule, 5
//!   an hour, and every later call would be held for review; a new device per call
//!   is a new identifier for scoring, which then takes the customer's component lock
//!   and links the device, so the run would measure identity-graph writes that a real
//!   drawdown from a known phone never makes. Measured: account's checks, scoring's
//!   Evaluate(DRAWDOWN), the ledger's Disburse, account's record and cache update.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use e2e::journey::{Clients, cny, onboard, safest};
use microloan_platform::auth::{Role, TokenKeys};
use microloan_proto::account::v1::{
    ApplyForCreditLineRequest, BorrowRequest, GetCreditLineRequest,
    account_service_client::AccountServiceClient,
};
use microloan_proto::common::v1::{
    CreditLineStatus, DecisionOutcome, LoanPurpose, RepaymentMethod,
};
use microloan_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use microloan_proto::notification::v1::notification_service_client::NotificationServiceClient;
use microloan_proto::scoring::v1::scoring_service_client::ScoringServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};
use uuid::Uuid;

use crate::report::RunReport;
use crate::runner::{self, Limits, Plan};
use crate::scenario::{Bearer, Scenario, ScenarioName, Setup, Worker};
use crate::{DEFAULT_DURATION_SECONDS, DURATION_MAX_SECONDS, RunArgs, connect, endpoint};

/// The synthetic population's seed and size; `CUSTOMERS` of them become customers.
const POPULATION_SEED: u64 = 10;
const POPULATION: usize = 1_000;
/// Customers onboarded (at most 999: the e2e national ids have three serial digits).
/// Enough that at 30 borrows a minute each (the default rate limit) and 100 CNY a
/// loan on lines of at least 2,000 CNY, no customer runs out in a 10 s run.
const CUSTOMERS: usize = 400;
/// Fewer approved lines than this is a setup failure, not a benchmark.
const APPROVED_MIN: usize = 100;
/// Concurrent applications during the setup.
const SETUP_CONCURRENCY: usize = 16;
/// One loan: 100 CNY (the product's minimum drawdown) over 5 months (the shortest
/// default term).
const BORROW_PRINCIPAL_FEN: i64 = 10_000;
const BORROW_TERM_MONTHS: i32 = 5;
/// How long each minted token lives (the setup plus the longest run).
const TOKEN_TTL: Duration = Duration::from_secs(3_600);

/// One approved customer: the id and their token as `authorization` metadata.
#[derive(Debug, Clone)]
struct Customer {
    customer_id: String,
    authorization: MetadataValue<Ascii>,
}

fn authorization(token: &str) -> anyhow::Result<MetadataValue<Ascii>> {
    let mut value: MetadataValue<Ascii> = format!("Bearer {token}")
        .parse()
        .context("a token is not a valid header value")?;
    value.set_sensitive(true);
    Ok(value)
}

fn with_authorization<T>(message: T, value: &MetadataValue<Ascii>) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", value.clone());
    request
}

fn keys() -> anyhow::Result<TokenKeys> {
    let secret = std::env::var("LOADGEN_JWT_SECRET")
        .context("the account scenarios need LOADGEN_JWT_SECRET (customer tokens are minted)")?;
    Ok(TokenKeys::from_secret(secret.as_bytes()))
}

fn mint(keys: &TokenKeys, role: Role, customer_id: Option<&str>) -> anyhow::Result<String> {
    keys.mint("loadgen", role, customer_id, TOKEN_TTL)
        .map_err(|err| anyhow::anyhow!("minting a {role:?} token: {err:?}"))
}

/// A channel that connects on first use (the ledger and notification clients the
/// onboarding helper carries but never calls).
fn lazy(target: &str) -> anyhow::Result<Channel> {
    Ok(Endpoint::from_shared(target.to_owned())
        .with_context(|| format!("{target:?} is not a valid URL"))?
        .connect_lazy())
}

/// Onboards the population, applies for every customer's line, and returns the
/// approved customers (see the module docs).
async fn approved_customers(
    args: &RunArgs,
    account: Channel,
    keys: &TokenKeys,
) -> anyhow::Result<Vec<Customer>> {
    let started = Instant::now();
    let scoring_endpoint = Endpoint::from_shared(args.scoring_target.clone())
        .with_context(|| format!("--scoring-target {:?}", args.scoring_target))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(120));
    let mut clients = Clients {
        account: AccountServiceClient::new(account),
        scoring: ScoringServiceClient::new(connect(&scoring_endpoint, &args.scoring_target).await?),
        ledger: LedgerServiceClient::new(lazy(&args.scoring_target)?),
        notification: NotificationServiceClient::new(lazy(&args.scoring_target)?),
        operator: mint(keys, Role::Operator, None)?,
        service: mint(keys, Role::Service, None)?,
        scoring_admin: args.scoring_admin.clone(),
    };
    let onboarded = onboard(&mut clients, POPULATION_SEED, POPULATION, |population| {
        safest(population, CUSTOMERS)
    })
    .await
    .context("onboarding the population (CreateCustomer, IngestSignals)")?;

    let mut applications = Vec::with_capacity(onboarded.customers.len());
    for (index, person) in onboarded.customers.iter().enumerate() {
        let customer_id = person.customer_id.to_string();
        let token = mint(keys, Role::Customer, Some(&customer_id))?;
        let request = ApplyForCreditLineRequest {
            request_id: format!("bench-apply-{index}"),
            customer_id: customer_id.clone(),
            annual_income: cny(person.monthly_income_fen * 12),
            data_consent: true,
            device_id: person.devices.first().cloned().unwrap_or_default(),
            ..ApplyForCreditLineRequest::default()
        };
        applications.push((authorization(&token)?, request));
    }
    let applied = applications.len();
    let queue = Arc::new(std::sync::Mutex::new(applications));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SETUP_CONCURRENCY {
        let mut account = clients.account.clone();
        let queue = queue.clone();
        tasks.spawn(async move {
            let mut approved = Vec::new();
            loop {
                let next = queue.lock().expect("the application queue").pop();
                let Some((authorization, request)) = next else {
                    return anyhow::Ok(approved);
                };
                let customer_id = request.customer_id.clone();
                let answer = account
                    .apply_for_credit_line(with_authorization(request, &authorization))
                    .await
                    .with_context(|| format!("ApplyForCreditLine for {customer_id}"))?
                    .into_inner();
                if answer.outcome == DecisionOutcome::Approved as i32
                    && answer.credit_line.is_some()
                {
                    approved.push(Customer {
                        customer_id,
                        authorization,
                    });
                }
            }
        });
    }
    let mut approved = Vec::with_capacity(applied);
    while let Some(joined) = tasks.join_next().await {
        approved.extend(joined??);
    }
    anyhow::ensure!(
        approved.len() >= APPROVED_MIN,
        "only {} of {applied} applications were approved (at least {APPROVED_MIN} needed)",
        approved.len()
    );
    // The same order every run, whatever order the applications finished in.
    approved.sort_by(|a, b| a.customer_id.cmp(&b.customer_id));
    eprintln!(
        "loadgen: {} of {applied} customers approved ({POPULATION} people onboarded) in {:.1} s",
        approved.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(approved)
}

pub async fn run(args: &RunArgs) -> anyhow::Result<RunReport> {
    let concurrency = args.concurrency as usize;
    let connections = (args.connections as usize).min(concurrency);
    let keys = keys()?;
    let endpoint = endpoint(args)?;
    let setup_endpoint = endpoint.clone().timeout(Duration::from_secs(120));
    let setup = connect(&setup_endpoint, &args.target).await?;
    let customers = Arc::new(approved_customers(args, setup.clone(), &keys).await?);
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(connect(&endpoint, &args.target).await?);
    }
    let duration = args.duration_seconds.or(Some(DEFAULT_DURATION_SECONDS));
    let plan = Plan {
        scenario: args.scenario.as_str(),
        target: args.target.clone(),
        concurrency,
        channels,
        bearer: Bearer::default(),
        limits: Limits {
            warmup: Duration::from_secs(args.warmup_seconds),
            duration: duration.map(Duration::from_secs),
            requests: args.requests,
            time_limit: Duration::from_secs(DURATION_MAX_SECONDS),
        },
        interrupted: Arc::default(),
    };
    let count = customers.len();
    match args.scenario {
        ScenarioName::AccountCreditLine => {
            // One read each fills the cache; the measured calls are hits.
            let mut account = AccountServiceClient::new(setup);
            for customer in customers.iter() {
                read_line(&mut account, customer)
                    .await
                    .with_context(|| format!("GetCreditLine for {}", customer.customer_id))?;
            }
            let mut report = runner::run(
                InTurn {
                    call: Call::ReadLine,
                    customers,
                    next: Arc::default(),
                },
                plan,
            )
            .await?;
            report.scenario = format!("account-credit-line (cache hits, {count} customers)");
            Ok(report)
        }
        ScenarioName::AccountBorrow => {
            let mut report = runner::run(
                InTurn {
                    call: Call::Borrow,
                    customers,
                    next: Arc::default(),
                },
                plan,
            )
            .await?;
            report.scenario = format!("account-borrow (100 CNY, {count} customers)");
            Ok(report)
        }
        other => anyhow::bail!("{} is not an account scenario", other.as_str()),
    }
}

type Client = AccountServiceClient<Channel>;

/// One GetCreditLine; an answer for another customer or a line not ACTIVE is an error.
async fn read_line(client: &mut Client, customer: &Customer) -> Result<(), Status> {
    let line = client
        .get_credit_line(with_authorization(
            GetCreditLineRequest {
                customer_id: customer.customer_id.clone(),
            },
            &customer.authorization,
        ))
        .await?
        .into_inner()
        .credit_line
        .ok_or_else(|| Status::internal("GetCreditLine answered no line"))?;
    if line.customer_id != customer.customer_id || line.status != CreditLineStatus::Active as i32 {
        return Err(Status::internal(format!(
            "GetCreditLine answered line {} of {} in status {}",
            line.credit_line_id, line.customer_id, line.status
        )));
    }
    Ok(())
}

/// What each call of a run is.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// `account-credit-line`.
    ReadLine,
    /// `account-borrow`.
    Borrow,
}

/// Both scenarios: customers in turn across all workers (a shared counter).
#[derive(Debug)]
struct InTurn {
    call: Call,
    customers: Arc<Vec<Customer>>,
    next: Arc<AtomicU64>,
}

impl Scenario for InTurn {
    type Worker = InTurnWorker;

    async fn prepare(_setup: &Setup) -> anyhow::Result<Self> {
        anyhow::bail!("prepared by account_bench::run")
    }

    fn worker(&self, _index: usize, channel: Channel, _: Bearer) -> anyhow::Result<Self::Worker> {
        Ok(InTurnWorker {
            call: self.call,
            client: AccountServiceClient::new(channel),
            customers: self.customers.clone(),
            next: self.next.clone(),
        })
    }
}

struct InTurnWorker {
    call: Call,
    client: Client,
    customers: Arc<Vec<Customer>>,
    next: Arc<AtomicU64>,
}

impl Worker for InTurnWorker {
    async fn call(&mut self) -> Result<(), Status> {
        let n = self.next.fetch_add(1, Ordering::Relaxed) as usize;
        let customer = &self.customers[n % self.customers.len()];
        match self.call {
            Call::ReadLine => read_line(&mut self.client, customer).await,
            Call::Borrow => borrow(&mut self.client, customer).await,
        }
    }
}

/// One Borrow of 100 CNY, a new request id and no device id; the loan must come back
/// with that principal, and the line with it.
async fn borrow(client: &mut Client, customer: &Customer) -> Result<(), Status> {
    let answer = client
        .borrow(with_authorization(
            BorrowRequest {
                request_id: Uuid::now_v7().to_string(),
                customer_id: customer.customer_id.clone(),
                principal: cny(BORROW_PRINCIPAL_FEN),
                term_months: BORROW_TERM_MONTHS,
                repayment_method: RepaymentMethod::EqualInstallment as i32,
                device_id: String::new(),
                purpose: LoanPurpose::Consumption as i32,
                ..BorrowRequest::default()
            },
            &customer.authorization,
        ))
        .await?
        .into_inner();
    let principal = answer
        .loan
        .as_ref()
        .and_then(|loan| loan.principal.as_ref())
        .map(|money| money.minor_units);
    if principal != Some(BORROW_PRINCIPAL_FEN) || answer.credit_line.is_none() {
        return Err(Status::internal(format!(
            "Borrow answered principal {principal:?}, line present: {}",
            answer.credit_line.is_some()
        )));
    }
    Ok(())
}
