//! Conversions to protobuf well-known types that every service's gRPC layer needs.

use chrono::{DateTime, Utc};

/// A UTC instant as `google.protobuf.Timestamp`.
pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    #[test]
    fn a_timestamp_keeps_seconds_and_nanoseconds() {
        let time = chrono::Utc
            .timestamp_opt(1_764_316_800, 123_456_789)
            .single()
            .expect("instant");
        let converted = super::timestamp(time);
        assert_eq!(
            (converted.seconds, converted.nanos),
            (1_764_316_800, 123_456_789)
        );
    }
}
