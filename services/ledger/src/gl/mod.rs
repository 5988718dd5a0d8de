//! The general ledger's rules, as plain functions over values: no SQL, no proto. The
//! store loads and locks what a batch touches, these functions decide every item's
//! result in the proto's order of precedence, and the store writes the outcome back.
//!
//! - [`ids`]: parsing the UUID fields of batch items.
//! - [`accounts`]: the chart of accounts and the checks of `CreateAccounts`.
//! - [`transfers`]: the checks and balance arithmetic of `CreateTransfers`.
//! - [`chains`]: linked chains (all or nothing), shared by both batches.
//! - [`requests`]: limits and checks of the requests themselves (INVALID_ARGUMENT).
//! - [`integrity`]: the invariants `VerifyIntegrity` checks.

pub mod accounts;
pub mod chains;
pub mod ids;
pub mod integrity;
pub mod requests;
pub mod transfers;

/// The only ledger (currency) today.
pub const CURRENCY_CNY: &str = "CNY";
/// Platform accounts may be split into this many sub-accounts (0..63).
pub const SUB_ACCOUNTS: i32 = 64;
/// The time zone business dates are in.
pub const TIME_ZONE: &str = "Asia/Shanghai";
