//! What the ledger's integration tests share: a ledger on port 0 with its own database
//! and a service token, ids, money and dates. Each test binary uses a subset.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use chrono::{Datelike, NaiveDate};
use ledger::Ledger;
use microloan_platform::{
    auth::Role,
    testing::{self, TestApp},
};
use microloan_proto::{
    common::v1::Money, google::r#type::Date, ledger::v1::ledger_service_client::LedgerServiceClient,
};
use tonic::transport::Channel;
use uuid::Uuid;

pub type Client = LedgerServiceClient<Channel>;

/// A running ledger, a client and a service token.
pub struct Book {
    pub app: TestApp,
    pub client: Client,
    pub token: String,
}

pub async fn book() -> Book {
    book_with(&[]).await
}

/// A ledger started with extra environment `overrides`.
pub async fn book_with(overrides: &[(&str, &str)]) -> Book {
    let app = testing::spawn::<Ledger>(overrides).await;
    let client = LedgerServiceClient::new(app.channel().await);
    Book {
        app,
        client,
        token: testing::token(Role::Service, None),
    }
}

pub fn new_id() -> String {
    Uuid::now_v7().to_string()
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

pub fn proto_date(date: NaiveDate) -> Option<Date> {
    Some(Date {
        year: date.year(),
        month: date.month() as i32,
        day: date.day() as i32,
    })
}

pub fn naive(date: &Option<Date>) -> NaiveDate {
    let date = date.as_ref().expect("date");
    NaiveDate::from_ymd_opt(date.year, date.month as u32, date.day as u32).expect("valid")
}
