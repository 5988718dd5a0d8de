//! Ids of batch items. A bad id is the item's result status, never an RPC error, so
//! parsing keeps "empty" and "malformed" apart instead of failing.

use uuid::Uuid;

/// A UUID in canonical hyphenated form (36 characters, any case), not the nil UUID.
pub fn parse_uuid(text: &str) -> Option<Uuid> {
    let bytes = text.as_bytes();
    let hyphens_in_place = bytes.len() == 36 && [8, 13, 18, 23].iter().all(|&at| bytes[at] == b'-');
    if !hyphens_in_place {
        return None;
    }
    Uuid::try_parse(text).ok().filter(|id| !id.is_nil())
}

/// An optional id field as received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdField {
    Empty,
    Valid(Uuid),
    Malformed,
}

impl IdField {
    pub fn parse(text: &str) -> Self {
        if text.is_empty() {
            Self::Empty
        } else {
            parse_uuid(text).map_or(Self::Malformed, Self::Valid)
        }
    }

    pub fn valid(self) -> Option<Uuid> {
        match self {
            Self::Valid(id) => Some(id),
            Self::Empty | Self::Malformed => None,
        }
    }

    pub fn is_empty(self) -> bool {
        self == Self::Empty
    }

    /// Whether the field names exactly `stored` (None = stored empty).
    pub fn names(self, stored: Option<Uuid>) -> bool {
        match (self, stored) {
            (Self::Empty, None) => true,
            (Self::Valid(id), Some(stored)) => id == stored,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_non_nil_uuids_parse() {
        let id = "0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f";
        assert!(parse_uuid(id).is_some());
        assert_eq!(parse_uuid(&id.to_uppercase()), parse_uuid(id));
        for bad in [
            "",
            "0190c1e44b0a7c1e9f3a1d2b3c4d5e6f",
            "{0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f}",
            "urn:uuid:0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6f",
            "00000000-0000-0000-0000-000000000000",
            "0190c1e4-4b0a-7c1e-9f3a-1d2b3c4d5e6g",
        ] {
            assert_eq!(parse_uuid(bad), None, "{bad}");
        }
    }

    #[test]
    fn id_fields_keep_empty_and_malformed_apart() {
        assert_eq!(IdField::parse(""), IdField::Empty);
        assert_eq!(IdField::parse("x"), IdField::Malformed);
        assert!(IdField::parse("").names(None));
        assert!(!IdField::parse("x").names(None));
    }
}
