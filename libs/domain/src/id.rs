//! Identifiers are UUIDs in their canonical hyphenated lower-case text form on the wire.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{value}` is not a valid {kind} (expected a UUID such as 0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f)"
)]
pub struct IdError {
    pub kind: &'static str,
    pub value: String,
}

/// Largest input echoed back in an error, so a huge bad id cannot bloat a response.
const ECHO_CHARS_MAX: usize = 64;

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
        pub struct $name(uuid::Uuid);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, IdError> {
                uuid::Uuid::try_parse(value).map(Self).map_err(|_| IdError {
                    kind: $kind,
                    value: value.chars().take(ECHO_CHARS_MAX).collect(),
                })
            }

            /// A new time-ordered (v7) id: keeps B-tree inserts local in Postgres.
            pub fn generate() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl From<uuid::Uuid> for $name {
            fn from(value: uuid::Uuid) -> Self {
                Self(value)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.hyphenated().fmt(f)
            }
        }
    };
}

uuid_id!(
    /// A customer of the platform; also the partition key of every customer-owned row.
    CustomerId,
    "customer id"
);
uuid_id!(
    /// One drawdown on a credit line.
    LoanId,
    "loan id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_round_trips_canonical_text() {
        let text = "0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f";
        assert_eq!(CustomerId::parse(text).expect("valid").to_string(), text);
    }

    #[test]
    fn parse_refuses_garbage_and_bounds_the_echo() {
        let err = LoanId::parse("not-a-uuid").expect_err("garbage");
        assert_eq!(err.kind, "loan id");
        let huge = "x".repeat(10_000);
        let err = CustomerId::parse(&huge).expect_err("huge");
        assert_eq!(err.value.chars().count(), ECHO_CHARS_MAX);
        assert!(CustomerId::parse("").is_err());
        assert!(CustomerId::parse("０１９０c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f").is_err());
    }

    #[test]
    fn generated_ids_are_distinct_and_time_ordered() {
        let first = CustomerId::generate();
        let second = CustomerId::generate();
        assert_ne!(first, second);
        assert!(first < second);
    }
}
