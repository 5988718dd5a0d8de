//! The gRPC face of the account service: proto ⇄ domain and errors → `Status`. RPCs not yet
//! implemented answer UNIMPLEMENTED (generated default methods).

use microloan_platform::client::PeerChannel;
use microloan_platform::{
    auth::{PermissionTable, Role},
    cache::Cache,
};
use microloan_proto::account::v1::account_service_server::{AccountService, SERVICE_NAME};
use microloan_proto::{
    ledger::v1::ledger_service_client::LedgerServiceClient,
    notification::v1::notification_service_client::NotificationServiceClient,
    scoring::v1::scoring_service_client::ScoringServiceClient,
};
use sqlx::PgPool;

const STAFF: &[Role] = &[Role::Operator, Role::Service];
const OPERATOR: &[Role] = &[Role::Operator];
/// Customers call these for their own data only; the handler checks ownership.
const ANYONE: &[Role] = &[Role::Operator, Role::Service, Role::Customer];

/// Who may call what, exactly as each RPC's `Roles:` comment says (checked by test).
/// A customer token reaches only its own customer's data
/// (checked in each handler with `Caller::ensure_may_access_customer`).
pub fn permissions() -> PermissionTable {
    PermissionTable::new(
        SERVICE_NAME,
        &[
            ("CreateCustomer", STAFF),
            ("GetCustomer", ANYONE),
            ("UpdateCustomerStatus", OPERATOR),
            ("ApplyForCreditLine", ANYONE),
            ("GetCreditLine", ANYONE),
            ("RequestLimitIncrease", ANYONE),
            ("AdjustCreditLine", STAFF),
            ("QuoteLoan", ANYONE),
            ("Borrow", ANYONE),
            ("Repay", ANYONE),
            ("ListLoans", ANYONE),
        ],
    )
}

#[derive(Debug, Clone)]
pub struct AccountApi {
    #[allow(dead_code, reason = "used by the account RPCs as they land")]
    pool: PgPool,
    #[allow(dead_code, reason = "used by the account RPCs as they land")]
    cache: Cache,
    #[allow(dead_code, reason = "used by the account RPCs as they land")]
    peers: Peers,
}

/// Clients for the services this one calls.
#[derive(Debug, Clone)]
pub struct Peers {
    pub scoring: ScoringServiceClient<PeerChannel>,
    pub ledger: LedgerServiceClient<PeerChannel>,
    pub notification: NotificationServiceClient<PeerChannel>,
}

impl AccountApi {
    pub fn new(pool: PgPool, cache: Cache, peers: Peers) -> Self {
        Self { pool, cache, peers }
    }
}

#[tonic::async_trait]
impl AccountService for AccountApi {}

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
