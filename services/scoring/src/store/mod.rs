//! SQL of the scoring service, one module per aggregate; each function is one
//! statement or a few set-based statements in the caller's transaction, named for what
//! it does. Batches go in as arrays (`unnest`), never one statement per signal.

pub mod decisions;
pub mod features;
pub mod lines;
pub mod pagerank;
pub mod signals;

/// Serialises the maintenance of the identity components and their defaulter counts
/// (`pg_advisory_xact_lock`): two batches merging the same components would otherwise
/// relabel from stale sizes. Taken only by batches with a new identifier link or a new
/// known defaulter, after their other writes.
pub const COMPONENTS_LOCK: i64 = 0x5C0_0001;
/// Lets one replica at a time refresh the PageRank (`pg_try_advisory_lock`).
pub const PAGERANK_LOCK: i64 = 0x5C0_0002;
