//! Interest rates are exact decimals (`rust_decimal`), written on the wire as strings.

use std::{fmt, str::FromStr};

use rust_decimal::Decimal;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateError {
    #[error("`{0}` is not a decimal number")]
    NotADecimal(String),
    #[error("daily rate {value} is outside {min}..={max}")]
    OutOfRange {
        value: Decimal,
        min: Decimal,
        max: Decimal,
    },
}

/// A daily interest rate as a fraction (0.0005 = 0.05% a day). The bounds are the
/// product's hard limits (DESIGN §4: 0.02%..0.05%); pricing chooses within them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DailyRate(Decimal);

impl DailyRate {
    pub const MIN: Decimal = Decimal::from_parts(2, 0, 0, false, 4); // 0.0002
    pub const MAX: Decimal = Decimal::from_parts(5, 0, 0, false, 4); // 0.0005

    pub fn parse(text: &str) -> Result<Self, RateError> {
        let value =
            Decimal::from_str(text.trim()).map_err(|_| RateError::NotADecimal(text.to_owned()))?;
        Self::from_decimal(value)
    }

    pub fn from_decimal(value: Decimal) -> Result<Self, RateError> {
        if value < Self::MIN || value > Self::MAX {
            return Err(RateError::OutOfRange {
                value,
                min: Self::MIN,
                max: Self::MAX,
            });
        }
        Ok(Self(value.normalize()))
    }

    pub fn as_decimal(&self) -> Decimal {
        self.0
    }
}

impl fmt::Display for DailyRate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_accepts_the_product_range_inclusive() {
        assert_eq!(
            DailyRate::parse("0.0002").expect("min").to_string(),
            "0.0002"
        );
        assert_eq!(
            DailyRate::parse("0.00050").expect("max").to_string(),
            "0.0005"
        );
        assert_eq!(
            DailyRate::parse(" 0.0003 ").expect("trim").to_string(),
            "0.0003"
        );
    }

    #[test]
    fn parse_refuses_out_of_range_and_non_decimals() {
        assert!(matches!(
            DailyRate::parse("0.0001"),
            Err(RateError::OutOfRange { .. })
        ));
        assert!(matches!(
            DailyRate::parse("0.00051"),
            Err(RateError::OutOfRange { .. })
        ));
        assert!(matches!(
            DailyRate::parse("-0.0003"),
            Err(RateError::OutOfRange { .. })
        ));
        assert!(matches!(
            DailyRate::parse("NaN"),
            Err(RateError::NotADecimal(_))
        ));
        assert!(matches!(
            DailyRate::parse(""),
            Err(RateError::NotADecimal(_))
        ));
        assert!(matches!(
            DailyRate::parse("1e999"),
            Err(RateError::NotADecimal(_))
        ));
    }
}
