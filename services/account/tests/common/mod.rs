//! What the account journey tests share: a real ledger and account on port 0 (each
//! with its own database, one Redis key prefix so account consumes the ledger's
//! events), customers, lines and tokens.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use account::Account;
use ledger::Ledger;
use microloan_platform::{
    auth::Role,
    testing::{self, TestApp},
};
use microloan_proto::{
    account::v1::{
        CreateCustomerRequest, GetCreditLineRequest, account_service_client::AccountServiceClient,
    },
    common::v1::Money,
    ledger::v1::{OpenCreditLineRequest, ledger_service_client::LedgerServiceClient},
};
use sqlx::PgPool;
use tonic::{Status, transport::Channel};
use tonic_types::StatusExt;
use uuid::Uuid;

pub type AccountClient = AccountServiceClient<Channel>;
pub type LedgerClient = LedgerServiceClient<Channel>;

/// A ledger and an account server wired together.
pub struct World {
    pub ledger_app: Option<TestApp>,
    pub app: TestApp,
    pub account: AccountClient,
    pub ledger: LedgerClient,
    pub pool: PgPool,
    pub redis_prefix: String,
    pub service: String,
    pub operator: String,
}

/// Starts a ledger, then account pointed at it (and at `scoring_url`, a closed port
/// unless given), with `overrides` for account.
pub async fn world(scoring_url: Option<&str>, overrides: &[(&str, &str)]) -> World {
    let redis_prefix = format!("test:{}:", Uuid::new_v4().simple());
    let ledger_app = testing::spawn::<Ledger>(&[("REDIS_KEY_PREFIX", redis_prefix.as_str())]).await;
    let ledger_url = ledger_app.url();
    let closed = closed_port_url().await;
    let mut vars = vec![
        ("LEDGER_URL", ledger_url.as_str()),
        ("SCORING_URL", scoring_url.unwrap_or(closed.as_str())),
        ("REDIS_KEY_PREFIX", redis_prefix.as_str()),
        ("CUSTOMER_AGE_MAX_YEARS", "99"),
    ];
    vars.extend_from_slice(overrides);
    let app = testing::spawn::<Account>(&vars).await;
    let account = AccountServiceClient::new(app.channel().await);
    let ledger = LedgerServiceClient::new(ledger_app.channel().await);
    let pool = PgPool::connect(&app.database_url)
        .await
        .expect("account db");
    World {
        ledger_app: Some(ledger_app),
        app,
        account,
        ledger,
        pool,
        redis_prefix,
        service: testing::token(Role::Service, None),
        operator: testing::token(Role::Operator, None),
    }
}

/// A URL whose port nothing listens on.
pub async fn closed_port_url() -> String {
    let addr = testing::free_local_addr().await;
    format!("http://{addr}")
}

impl World {
    pub async fn stop(self) {
        self.pool.close().await;
        self.app.stop().await.expect("account stopped");
        if let Some(ledger_app) = self.ledger_app {
            ledger_app.stop().await.expect("ledger stopped");
        }
    }

    /// Stops the ledger (its port then refuses connections).
    pub async fn stop_ledger(&mut self) {
        if let Some(ledger_app) = self.ledger_app.take() {
            ledger_app.stop().await.expect("ledger stopped");
        }
    }

    /// A new ACTIVE customer; returns its id.
    pub async fn customer(&mut self, serial: u32) -> String {
        self.account
            .create_customer(testing::with_token(new_customer(serial), &self.service))
            .await
            .expect("customer created")
            .into_inner()
            .customer
            .expect("customer")
            .customer_id
    }

    /// Opens a line of `limit_minor` at `daily_rate` as an approved application does:
    /// in the ledger, then the terms in account's table.
    pub async fn open_line(
        &mut self,
        customer_id: &str,
        limit_minor: i64,
        daily_rate: &str,
    ) -> String {
        let credit_line_id = Uuid::now_v7();
        self.ledger
            .open_credit_line(testing::with_token(
                OpenCreditLineRequest {
                    request_id: Uuid::now_v7().to_string(),
                    customer_id: customer_id.to_owned(),
                    credit_line_id: credit_line_id.to_string(),
                    limit: cny(limit_minor),
                },
                &self.service,
            ))
            .await
            .expect("line opened in the ledger");
        let rate: rust_decimal::Decimal = daily_rate.parse().expect("rate");
        sqlx::query(
            "INSERT INTO credit_lines (credit_line_id, customer_id, status, daily_rate, \
                 penalty_daily_rate, risk_grade) VALUES ($1, $2, 1, $3, $4, 2)",
        )
        .bind(credit_line_id)
        .bind(Uuid::parse_str(customer_id).expect("uuid"))
        .bind(rate)
        .bind(rate * rust_decimal::Decimal::new(15, 1))
        .execute(&self.pool)
        .await
        .expect("line terms");
        credit_line_id.to_string()
    }

    pub async fn credit_line(
        &mut self,
        customer_id: &str,
        token: &str,
    ) -> Result<microloan_proto::account::v1::CreditLine, Status> {
        Ok(self
            .account
            .get_credit_line(testing::with_token(
                GetCreditLineRequest {
                    customer_id: customer_id.to_owned(),
                },
                token,
            ))
            .await?
            .into_inner()
            .credit_line
            .expect("line"))
    }

    pub fn cache(&self) -> account::line_cache::LineCache {
        let cache =
            microloan_platform::cache::Cache::open(&testing::redis_url(), &self.redis_prefix)
                .expect("redis url");
        account::line_cache::LineCache::new(cache, std::time::Duration::from_secs(300))
    }
}

/// A valid national id (born 1988-03-01..28), distinct per serial.
pub fn national_id(serial: u32) -> String {
    let body = format!(
        "110105198803{:02}{:03}",
        1 + serial / 1000 % 28,
        serial % 1000
    );
    microloan_domain::national_id::with_check_character(&body).expect("17 digits")
}

pub const NAME: &str = "李四光";

/// A distinct mobile number per serial (scoring counts customers sharing one).
pub fn phone(serial: u32) -> String {
    format!("+861371{:07}", serial % 10_000_000)
}

pub fn new_customer(serial: u32) -> CreateCustomerRequest {
    CreateCustomerRequest {
        request_id: Uuid::now_v7().to_string(),
        name: NAME.into(),
        national_id: national_id(serial),
        phone: phone(serial),
        annual_income: cny(60_000_000),
        locale: "zh-CN".into(),
        device_id: String::new(),
    }
}

pub fn cny(minor_units: i64) -> Option<Money> {
    Some(Money {
        currency_code: "CNY".into(),
        minor_units,
    })
}

/// The fen of a Money field; -1 when unset, so a missing amount never passes as 0.
pub fn minor(money: &Option<Money>) -> i64 {
    money.as_ref().map_or(-1, |money| money.minor_units)
}

pub fn reason(status: &Status) -> String {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
        .unwrap_or_default()
}

pub fn metadata(status: &Status, key: &str) -> String {
    status
        .get_error_details()
        .error_info()
        .and_then(|info| info.metadata.get(key).cloned())
        .unwrap_or_default()
}

pub fn customer_token(customer_id: &str) -> String {
    testing::token(Role::Customer, Some(customer_id))
}
