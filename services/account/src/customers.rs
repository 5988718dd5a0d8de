//! Customers' rules: what a valid new customer is (parsed from the request once, every
//! bad field collected into one BadRequest), who is eligible, and which status changes
//! are allowed. No SQL here.

use chrono::NaiveDate;
use microloan_domain::{CurrencyCode, Money};
use microloan_proto::{account::v1 as proto, common::v1 as common};

use crate::{
    error::AccountError,
    identity::{AgeBand, FieldError, Locale, MobilePhone, NationalId, PersonName},
};

/// Longest device fingerprint accepted (account.proto).
pub const DEVICE_ID_CHARS_MAX: usize = 128;

/// A customer about to be created: every field valid.
#[derive(Debug, Clone)]
pub struct NewCustomer {
    pub name: PersonName,
    pub national_id: NationalId,
    pub phone: MobilePhone,
    pub annual_income: Money,
    pub locale: Locale,
    pub device_id: String,
}

/// Collects field errors so one response names every bad field.
#[derive(Debug, Default)]
pub struct Violations(Vec<(&'static str, String)>);

impl Violations {
    pub fn take<T>(&mut self, parsed: Result<T, FieldError>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(err) => {
                self.0.push((err.field, err.description));
                None
            }
        }
    }

    pub fn push(&mut self, field: &'static str, description: impl Into<String>) {
        self.0.push((field, description.into()));
    }

    /// `Ok` when nothing was collected.
    pub fn finish(self) -> Result<(), AccountError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(AccountError::InvalidArgument(self.0))
        }
    }
}

/// A non-negative CNY amount from a required proto Money field.
pub fn parse_money(
    field: &'static str,
    money: Option<&common::Money>,
) -> Result<Money, FieldError> {
    let money = money.ok_or_else(|| FieldError {
        field,
        description: "is required".into(),
    })?;
    Money::parse(&money.currency_code, money.minor_units).map_err(|err| FieldError {
        field,
        description: err.to_string(),
    })
}

impl NewCustomer {
    /// Parses the request's customer fields (not request_id: the caller checks it).
    pub fn parse(request: &proto::CreateCustomerRequest) -> Result<Self, AccountError> {
        let mut violations = Violations::default();
        let name = violations.take(PersonName::parse(&request.name));
        let national_id = violations.take(NationalId::parse(&request.national_id));
        let phone = violations.take(MobilePhone::parse(&request.phone));
        let annual_income =
            violations.take(parse_money("annual_income", request.annual_income.as_ref()));
        let locale = violations.take(Locale::parse(&request.locale));
        if request.device_id.chars().count() > DEVICE_ID_CHARS_MAX {
            violations.push("device_id", "must be at most 128 characters");
        }
        violations.finish()?;
        match (name, national_id, phone, annual_income, locale) {
            (Some(name), Some(national_id), Some(phone), Some(annual_income), Some(locale)) => {
                debug_assert_eq!(annual_income.currency(), CurrencyCode::Cny);
                Ok(Self {
                    name,
                    national_id,
                    phone,
                    annual_income,
                    locale,
                    device_id: request.device_id.clone(),
                })
            }
            _ => Err(AccountError::Internal(
                "a field failed to parse without a violation".into(),
            )),
        }
    }

    /// CUSTOMER_NOT_ELIGIBLE unless the age from the national id is within the band.
    pub fn ensure_eligible(&self, band: AgeBand, today: NaiveDate) -> Result<(), AccountError> {
        if band.admits(&self.national_id, today) {
            return Ok(());
        }
        Err(AccountError::FailedPrecondition {
            reason: "CUSTOMER_NOT_ELIGIBLE",
            message: format!(
                "age must be {}-{} (from the national id's birth date)",
                band.min_years, band.max_years
            ),
            metadata: vec![("rule", "age".to_owned())],
        })
    }
}

/// A customer's lifecycle status (account.proto `CustomerStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CustomerStatus {
    Active,
    Suspended,
    Closed,
}

impl CustomerStatus {
    pub fn from_i16(value: i16) -> Option<Self> {
        match value {
            1 => Some(Self::Active),
            2 => Some(Self::Suspended),
            3 => Some(Self::Closed),
            _ => None,
        }
    }

    pub fn as_i16(self) -> i16 {
        match self {
            Self::Active => 1,
            Self::Suspended => 2,
            Self::Closed => 3,
        }
    }

    pub fn to_proto(self) -> proto::CustomerStatus {
        match self {
            Self::Active => proto::CustomerStatus::Active,
            Self::Suspended => proto::CustomerStatus::Suspended,
            Self::Closed => proto::CustomerStatus::Closed,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.to_proto().as_str_name()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn money(minor_units: i64) -> Option<common::Money> {
        Some(common::Money {
            currency_code: "CNY".into(),
            minor_units,
        })
    }

    fn request() -> proto::CreateCustomerRequest {
        proto::CreateCustomerRequest {
            request_id: "r1".into(),
            name: "张三".into(),
            national_id: "11010519491231002X".into(),
            phone: "+8613812345678".into(),
            annual_income: money(12_000_000),
            locale: String::new(),
            device_id: "device-1".into(),
        }
    }

    #[test]
    fn a_valid_request_parses_with_the_default_locale() {
        let customer = NewCustomer::parse(&request()).expect("valid");
        assert_eq!(customer.locale, Locale::ZhCn);
        assert_eq!(customer.annual_income.amount_minor(), 12_000_000);
    }

    #[test]
    fn every_bad_field_is_named_in_one_error() {
        let bad = proto::CreateCustomerRequest {
            name: String::new(),
            national_id: "110105194912310021".into(),
            phone: "13812345678".into(),
            annual_income: money(-1),
            locale: "fr".into(),
            device_id: "d".repeat(129),
            ..request()
        };
        let Err(AccountError::InvalidArgument(violations)) = NewCustomer::parse(&bad) else {
            panic!("expected INVALID_ARGUMENT");
        };
        let fields: Vec<&str> = violations.iter().map(|(field, _)| *field).collect();
        assert_eq!(
            fields,
            [
                "name",
                "national_id",
                "phone",
                "annual_income",
                "locale",
                "device_id"
            ]
        );
        let missing_income = proto::CreateCustomerRequest {
            annual_income: None,
            ..request()
        };
        assert!(NewCustomer::parse(&missing_income).is_err());
        let dollars = proto::CreateCustomerRequest {
            annual_income: Some(common::Money {
                currency_code: "USD".into(),
                minor_units: 1,
            }),
            ..request()
        };
        assert!(NewCustomer::parse(&dollars).is_err());
    }

    #[test]
    fn the_age_band_decides_eligibility() {
        let customer = NewCustomer::parse(&request()).expect("valid");
        // Born 1949-12-31: 76 in 2026.
        let today = NaiveDate::from_ymd_opt(2026, 11, 28).expect("date");
        let Err(AccountError::FailedPrecondition { reason, .. }) =
            customer.ensure_eligible(AgeBand::DEFAULT, today)
        else {
            panic!("too old");
        };
        assert_eq!(reason, "CUSTOMER_NOT_ELIGIBLE");
        let wide = AgeBand {
            min_years: 18,
            max_years: 80,
        };
        assert!(customer.ensure_eligible(wide, today).is_ok());
    }
}
