//! Checks of the requests themselves: the only INVALID_ARGUMENT of the batch RPCs,
//! and the page tokens of ListTransfers.

/// Items per batch.
pub const BATCH_ITEMS_MAX: usize = 1000;
/// page_size 0 means this many.
pub const PAGE_SIZE_DEFAULT: i64 = 50;
/// Larger page sizes are treated as this.
pub const PAGE_SIZE_MAX: i64 = 500;
/// max_violations 0 means this many.
pub const VIOLATIONS_DEFAULT: i64 = 100;
/// max_violations above this is INVALID_ARGUMENT.
pub const VIOLATIONS_MAX: i32 = 1000;

/// A bad request field: its proto path and what is wrong.
pub type Violation = (&'static str, String);

/// What is wrong with a batch request: request_id and the item count.
pub fn check_batch(request_id: &str, items_field: &'static str, items: usize) -> Vec<Violation> {
    let mut violations = Vec::new();
    if let Some(problem) = microloan_platform::idempotency::request_id_problem(request_id) {
        violations.push(("request_id", problem.to_owned()));
    }
    if items == 0 {
        violations.push((items_field, "must hold at least one item".to_owned()));
    } else if items > BATCH_ITEMS_MAX {
        violations.push((
            items_field,
            format!("must hold at most {BATCH_ITEMS_MAX} items"),
        ));
    }
    violations
}

/// page_size → rows per page: 0 = default, larger than the maximum = the maximum.
pub fn page_size(requested: i32) -> Result<i64, Violation> {
    match i64::from(requested) {
        size if size < 0 => Err(("page_size", "must not be negative".to_owned())),
        0 => Ok(PAGE_SIZE_DEFAULT),
        size => Ok(size.min(PAGE_SIZE_MAX)),
    }
}

/// FNV-1a, 64 bits: a stable fingerprint of a list's filters, so a page token is only
/// accepted with the filters it was made for.
pub fn fingerprint(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0xff]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    hash
}

/// A page token: where the previous page ended (a sequence number) and the filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageToken {
    pub after_seq: i64,
    pub filters: u64,
}

impl PageToken {
    pub fn encode(self) -> String {
        format!("t1.{}.{:016x}", self.after_seq, self.filters)
    }

    /// Decodes a token made for `filters`; empty = the first page.
    pub fn decode(token: &str, filters: u64) -> Result<Option<Self>, Violation> {
        if token.is_empty() {
            return Ok(None);
        }
        let bad = || {
            (
                "page_token",
                "is not a token from a previous call with these filters".to_owned(),
            )
        };
        let mut parts = token.split('.');
        let (Some("t1"), Some(seq), Some(hash), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let after_seq = seq.parse::<i64>().map_err(|_| bad())?;
        let hash = u64::from_str_radix(hash, 16).map_err(|_| bad())?;
        if hash != filters || after_seq < 0 {
            return Err(bad());
        }
        Ok(Some(Self { after_seq, filters }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_request_names_each_bad_field() {
        assert!(check_batch("req-1", "transfers", 1).is_empty());
        let fields = |violations: Vec<Violation>| -> Vec<&str> {
            violations
                .into_iter()
                .map(|violation| violation.0)
                .collect()
        };
        assert_eq!(
            fields(check_batch("", "transfers", 0)),
            ["request_id", "transfers"]
        );
        assert_eq!(
            fields(check_batch(&"a".repeat(65), "accounts", 1001)),
            ["request_id", "accounts"]
        );
        assert_eq!(fields(check_batch("a b", "accounts", 1000)), ["request_id"]);
    }

    #[test]
    fn page_sizes_default_and_clamp() {
        assert_eq!(page_size(0), Ok(50));
        assert_eq!(page_size(7), Ok(7));
        assert_eq!(page_size(10_000), Ok(500));
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn page_tokens_round_trip_only_with_their_filters() {
        let token = PageToken {
            after_seq: 42,
            filters: fingerprint(&["a", "b"]),
        };
        assert_eq!(
            PageToken::decode(&token.encode(), token.filters),
            Ok(Some(token))
        );
        assert!(PageToken::decode(&token.encode(), fingerprint(&["a"])).is_err());
        assert!(PageToken::decode("garbage", token.filters).is_err());
        assert_eq!(PageToken::decode("", 0), Ok(None));
        assert_ne!(fingerprint(&["ab", ""]), fingerprint(&["a", "b"]));
    }
}
