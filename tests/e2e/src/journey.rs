//! What the customer journeys share: typed clients with their tokens, onboarding a
//! chosen part of a synthetic population (created through account, their signals
//! ingested through scoring), business days, and the notices a customer received.

use std::collections::HashMap;

use anyhow::{Context, ensure};
use chrono::{Datelike, NaiveDate};
use microloan_proto::{
    account::v1::{
        ApplyForCreditLineRequest, ApplyForCreditLineResponse, CreateCustomerRequest,
        account_service_client::AccountServiceClient,
    },
    common::v1::Money,
    google::r#type::Date,
    ledger::v1::{
        GetBusinessDateRequest, RunEndOfDayRequest, ledger_service_client::LedgerServiceClient,
    },
    notification::v1::{
        Channel as NoticeChannel, ListNotificationsRequest, Notification,
        notification_service_client::NotificationServiceClient,
    },
    scoring::v1::scoring_service_client::ScoringServiceClient,
};
use population::{Person, Population, PopulationConfig, batches};
use tonic::transport::Channel;

use crate::{Service, Stack, customer_token, operator_token, service_token, with_token};

/// The four clients of a stack and the tokens an operator and a service hold.
#[derive(Debug, Clone)]
pub struct Clients {
    pub account: AccountServiceClient<Channel>,
    pub scoring: ScoringServiceClient<Channel>,
    pub ledger: LedgerServiceClient<Channel>,
    pub notification: NotificationServiceClient<Channel>,
    pub operator: String,
    pub service: String,
    /// Scoring's admin address (host:port), when known: `onboard` waits there for a
    /// PageRank refresh of the ingested graph.
    pub scoring_admin: Option<String>,
}

impl Clients {
    pub fn of(stack: &Stack) -> Clients {
        Clients {
            account: AccountServiceClient::new(stack.channel(Service::Account)),
            scoring: ScoringServiceClient::new(stack.channel(Service::Scoring)),
            ledger: LedgerServiceClient::new(stack.channel(Service::Ledger)),
            notification: NotificationServiceClient::new(stack.channel(Service::Notification)),
            operator: operator_token(),
            service: service_token(),
            scoring_admin: Some(format!("127.0.0.1:{}", stack.admin_port(Service::Scoring))),
        }
    }

    /// The customer applies for a line with their own token, as the app would.
    pub async fn apply(
        &mut self,
        request: ApplyForCreditLineRequest,
    ) -> anyhow::Result<ApplyForCreditLineResponse> {
        let token = customer_token(&request.customer_id);
        Ok(self
            .account
            .apply_for_credit_line(with_token(request, &token))
            .await?
            .into_inner())
    }

    /// The ledger's open business date.
    pub async fn business_date(&mut self) -> anyhow::Result<NaiveDate> {
        let answer = self
            .ledger
            .get_business_date(with_token(GetBusinessDateRequest {}, &self.operator))
            .await?
            .into_inner();
        from_date(answer.business_date.as_ref())
    }

    /// Closes `date` (the open one) and returns the new open date.
    pub async fn end_of_day(&mut self, date: NaiveDate) -> anyhow::Result<NaiveDate> {
        let summary = self
            .ledger
            .run_end_of_day(with_token(
                RunEndOfDayRequest {
                    request_id: format!("e2e-eod-{date}"),
                    business_date: Some(to_date(date)),
                },
                &self.operator,
            ))
            .await?
            .into_inner()
            .summary
            .context("an end-of-day summary")?;
        from_date(summary.next_business_date.as_ref())
    }

    /// Every IN_APP notice of `customer_id`, oldest first (pages followed, bounded).
    pub async fn in_app_notices(&mut self, customer_id: &str) -> anyhow::Result<Vec<Notification>> {
        let mut notices = Vec::new();
        let mut page_token = String::new();
        for _ in 0..100 {
            let page = self
                .notification
                .list_notifications(with_token(
                    ListNotificationsRequest {
                        customer_id: customer_id.to_owned(),
                        channels: vec![NoticeChannel::InApp as i32],
                        page_size: 100,
                        page_token: page_token.clone(),
                        ..Default::default()
                    },
                    &self.operator,
                ))
                .await?
                .into_inner();
            notices.extend(page.notifications);
            if page.next_page_token.is_empty() {
                notices.reverse();
                return Ok(notices);
            }
            page_token = page.next_page_token;
        }
        anyhow::bail!("more than 10,000 notices for one customer")
    }
}

/// An application with the data consent given and nothing else optional set.
pub fn application(
    request_id: &str,
    customer_id: &str,
    annual_income: Option<Money>,
) -> ApplyForCreditLineRequest {
    ApplyForCreditLineRequest {
        request_id: request_id.to_owned(),
        customer_id: customer_id.to_owned(),
        annual_income,
        data_consent: true,
        ..Default::default()
    }
}

pub fn to_date(date: NaiveDate) -> Date {
    Date {
        year: date.year(),
        month: date.month() as i32,
        day: date.day() as i32,
    }
}

pub fn from_date(date: Option<&Date>) -> anyhow::Result<NaiveDate> {
    let date = date.context("a date")?;
    NaiveDate::from_ymd_opt(date.year, date.month as u32, date.day as u32)
        .with_context(|| format!("not a date: {date:?}"))
}

pub fn cny(minor_units: i64) -> Option<Money> {
    Some(Money {
        currency_code: "CNY".to_owned(),
        minor_units,
    })
}

pub fn minor(money: &Option<Money>) -> i64 {
    money.as_ref().map_or(0, |money| money.minor_units)
}

/// A valid PRC resident id (GB 11643 check digit), distinct per serial (< 1000),
/// born 1990-03-07.
pub fn national_id(serial: u32) -> String {
    assert!(serial < 1000, "three serial digits");
    with_check_digit(&format!("11010519900307{serial:03}"))
}

/// The 17 digits of a PRC resident id `body` followed by its GB 11643 check digit.
pub fn with_check_digit(body: &str) -> String {
    microloan_domain::national_id::with_check_character(body)
        .unwrap_or_else(|| panic!("17 digits: {body}"))
}

pub fn phone(serial: u32) -> String {
    format!("+86138{serial:08}")
}

/// A population whose chosen people are customers of the stack and whose observed
/// signals scoring has ingested.
#[derive(Debug)]
pub struct Onboarded {
    pub population: Population,
    /// The chosen people (renamed to their account ids), in the order chosen.
    pub customers: Vec<Person>,
}

/// Generates a population of `size` (seeded), creates the people `choose` picks as
/// customers (locale `en`), gives them their account ids everywhere, and ingests every
/// observed signal. People not chosen stay parties scoring knows from signals only.
pub async fn onboard(
    clients: &mut Clients,
    seed: u64,
    size: usize,
    choose: impl FnOnce(&Population) -> Vec<usize>,
) -> anyhow::Result<Onboarded> {
    let mut population = Population::generate(&PopulationConfig::new(seed, size));
    let chosen = choose(&population);
    let mut renames = HashMap::new();
    for (serial, index) in chosen.iter().enumerate() {
        let person = &population.people[*index];
        let serial = serial as u32 + 1;
        let created = clients
            .account
            .create_customer(with_token(
                CreateCustomerRequest {
                    request_id: format!("e2e-create-{serial}"),
                    name: format!("Test Customer {}", char::from(b'A' + (serial % 26) as u8)),
                    national_id: national_id(serial),
                    phone: phone(serial),
                    annual_income: cny(person.monthly_income_fen * 12),
                    locale: "en".to_owned(),
                    device_id: person.devices.first().cloned().unwrap_or_default(),
                },
                &clients.operator,
            ))
            .await?
            .into_inner()
            .customer
            .context("the created customer")?;
        renames.insert(person.customer_id, created.customer_id.parse()?);
    }
    population.rename_customers(&renames);
    let customers = chosen
        .iter()
        .map(|index| population.people[*index].clone())
        .collect();

    let requests = batches(population.observed_signals(), "e2e-signals", 1000);
    let batch_count = requests.len() as i64;
    let summary = clients
        .scoring
        .ingest_signals(with_token(tokio_stream::iter(requests), &clients.service))
        .await?
        .into_inner();
    ensure!(
        summary.batches_received == batch_count && summary.signals_rejected == 0,
        "every signal ingested: {summary:?}"
    );
    // Applications are scored on the graph as the product would score them: after a
    // PageRank refresh that saw every ingested signal and known defaulter (a refresh
    // in flight at the last batch could miss some), as `make demo` does.
    if let Some(admin) = &clients.scoring_admin {
        let waited = crate::pagerank::wait_for_refresh(admin.clone()).await?;
        ensure!(
            waited.refreshed,
            "no PageRank refresh at {admin} within {} s",
            crate::pagerank::WAIT_MAX.as_secs()
        );
    }
    Ok(Onboarded {
        population,
        customers,
    })
}

/// The `count` people least likely to default, outside fraud rings and without a
/// default in their history: the ones a good scorecard approves.
pub fn safest(population: &Population, count: usize) -> Vec<usize> {
    let mut candidates: Vec<usize> = (0..population.people.len())
        .filter(|&index| {
            let person = &population.people[index];
            person.fraud_ring.is_none() && !person.known_defaulter
        })
        .collect();
    candidates.sort_by(|&a, &b| {
        population.people[a]
            .default_probability
            .total_cmp(&population.people[b].default_probability)
    });
    candidates.truncate(count);
    candidates
}
