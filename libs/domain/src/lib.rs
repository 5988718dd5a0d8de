//! The vocabulary every service shares: money in minor units, identifiers, rates and
//! the loan product's arithmetic ([`loan`]).
//! Each type can only hold a valid value: construct it with `parse`, never by hand.
#![forbid(unsafe_code)]

mod id;
pub mod loan;
mod money;
pub mod national_id;
mod product;
mod rate;

pub use id::{CustomerId, IdError, LoanId};
pub use money::{CurrencyCode, Money, MoneyError};
pub use product::{ProductRules, ProductRulesError};
pub use rate::{DailyRate, RateError};
