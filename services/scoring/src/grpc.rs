//! The gRPC face of the scoring service: proto ⇄ domain and errors → `Status`. RPCs not yet
//! implemented answer UNIMPLEMENTED (generated default methods).

use microloan_platform::client::PeerChannel;
use microloan_platform::{
    auth::{PermissionTable, Role},
    cache::Cache,
};
use microloan_proto::scoring::v1::scoring_service_server::{SERVICE_NAME, ScoringService};
use microloan_proto::{
    account::v1::account_service_client::AccountServiceClient,
    ledger::v1::ledger_service_client::LedgerServiceClient,
};
use sqlx::PgPool;

const STAFF: &[Role] = &[Role::Operator, Role::Service];

/// Who may call what, exactly as each RPC's `Roles:` comment says (checked by test).
/// Customers never reach scoring: account asks on their behalf.
pub fn permissions() -> PermissionTable {
    PermissionTable::new(
        SERVICE_NAME,
        &[
            ("IngestSignals", STAFF),
            ("Evaluate", STAFF),
            ("ExplainDecision", STAFF),
            ("GetModelInfo", STAFF),
            ("RunPortfolioReview", STAFF),
        ],
    )
}

#[derive(Debug, Clone)]
pub struct ScoringApi {
    #[allow(dead_code, reason = "used by the scoring RPCs as they land")]
    pool: PgPool,
    #[allow(dead_code, reason = "used by the scoring RPCs as they land")]
    cache: Cache,
    #[allow(dead_code, reason = "used by the scoring RPCs as they land")]
    peers: Peers,
}

/// Clients for the services this one calls.
#[derive(Debug, Clone)]
pub struct Peers {
    pub account: AccountServiceClient<PeerChannel>,
    pub ledger: LedgerServiceClient<PeerChannel>,
}

impl ScoringApi {
    pub fn new(pool: PgPool, cache: Cache, peers: Peers) -> Self {
        Self { pool, cache, peers }
    }
}

#[tonic::async_trait]
impl ScoringService for ScoringApi {}

#[cfg(test)]
mod tests {
    /// Every RPC has exactly one entry, granting exactly its documented `Roles:`.
    #[test]
    fn the_permission_table_matches_the_proto() {
        microloan_platform::auth::assert_table_matches_proto(
            &super::permissions(),
            microloan_proto::FILE_DESCRIPTOR_SET,
            super::SERVICE_NAME,
        );
    }
}
