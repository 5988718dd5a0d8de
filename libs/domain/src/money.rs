//! Money is an integer count of minor units (fen for CNY) plus an ISO 4217 code.
//! Floats never hold money: every arithmetic step is checked and refuses to overflow.

use std::fmt;

/// An ISO 4217 currency code. The platform lends in CNY only; the type is kept so that
/// the ledger can refuse a posting across currencies instead of silently mixing them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum CurrencyCode {
    Cny,
}

impl CurrencyCode {
    pub fn parse(code: &str) -> Result<Self, MoneyError> {
        match code {
            "CNY" => Ok(Self::Cny),
            other => Err(MoneyError::UnsupportedCurrency(other.to_owned())),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Cny => "CNY",
        }
    }
}

impl fmt::Display for CurrencyCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("currency `{0}` is not supported (only CNY)")]
    UnsupportedCurrency(String),
    #[error("amount must not be negative (got {0} minor units)")]
    Negative(i64),
    #[error("amount overflows 64-bit minor units")]
    Overflow,
    #[error("currencies differ: {0} and {1}")]
    CurrencyMismatch(CurrencyCode, CurrencyCode),
}

/// A non-negative amount of money. Direction (debit/credit, in/out) is carried by the
/// operation, never by the sign, so a negative amount is unrepresentable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Money {
    currency: CurrencyCode,
    amount_minor: i64,
}

impl Money {
    pub fn parse(currency_code: &str, amount_minor: i64) -> Result<Self, MoneyError> {
        let currency = CurrencyCode::parse(currency_code)?;
        Self::from_minor(currency, amount_minor)
    }

    pub fn from_minor(currency: CurrencyCode, amount_minor: i64) -> Result<Self, MoneyError> {
        if amount_minor < 0 {
            return Err(MoneyError::Negative(amount_minor));
        }
        Ok(Self {
            currency,
            amount_minor,
        })
    }

    pub fn zero(currency: CurrencyCode) -> Self {
        Self {
            currency,
            amount_minor: 0,
        }
    }

    pub fn currency(&self) -> CurrencyCode {
        self.currency
    }

    pub fn amount_minor(&self) -> i64 {
        self.amount_minor
    }

    pub fn is_zero(&self) -> bool {
        self.amount_minor == 0
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount_minor = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Money::from_minor(self.currency, amount_minor)
    }

    /// `self - other`; refuses to go below zero rather than wrapping or going negative.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount_minor = self
            .amount_minor
            .checked_sub(other.amount_minor)
            .ok_or(MoneyError::Overflow)?;
        Money::from_minor(self.currency, amount_minor)
    }

    fn same_currency(&self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch(self.currency, other.currency))
        }
    }
}

impl fmt::Display for Money {
    /// `CNY 1234.56`: minor units are shown with two decimals (CNY has two).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}.{:02}",
            self.currency,
            self.amount_minor / 100,
            self.amount_minor % 100
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cny(amount_minor: i64) -> Money {
        Money::parse("CNY", amount_minor).expect("valid CNY amount")
    }

    #[test]
    fn parse_accepts_zero_and_positive_cny() {
        assert_eq!(cny(0).amount_minor(), 0);
        assert_eq!(cny(i64::MAX).amount_minor(), i64::MAX);
    }

    #[test]
    fn parse_refuses_negative_amounts_and_other_currencies() {
        assert_eq!(Money::parse("CNY", -1), Err(MoneyError::Negative(-1)));
        assert_eq!(
            Money::parse("USD", 1),
            Err(MoneyError::UnsupportedCurrency("USD".into()))
        );
        assert!(Money::parse("cny", 1).is_err(), "codes are upper case");
        assert!(Money::parse("", 1).is_err());
        assert!(Money::parse("人民币", 1).is_err());
    }

    #[test]
    fn arithmetic_is_checked() {
        assert_eq!(cny(150).checked_add(cny(50)), Ok(cny(200)));
        assert_eq!(cny(i64::MAX).checked_add(cny(1)), Err(MoneyError::Overflow));
        assert_eq!(cny(150).checked_sub(cny(150)), Ok(cny(0)));
        assert_eq!(cny(1).checked_sub(cny(2)), Err(MoneyError::Negative(-1)));
    }

    #[test]
    fn display_shows_two_decimals() {
        assert_eq!(cny(123_456).to_string(), "CNY 1234.56");
        assert_eq!(cny(5).to_string(), "CNY 0.05");
    }
}
