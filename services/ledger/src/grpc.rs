//! The gRPC face of the ledger service: proto ⇄ domain and errors → `Status`. RPCs not yet
//! implemented answer UNIMPLEMENTED (generated default methods).

use microloan_platform::{
    auth::{PermissionTable, Role},
    cache::Cache,
};
use microloan_proto::ledger::v1::ledger_service_server::{LedgerService, SERVICE_NAME};
use sqlx::PgPool;

/// Services only: money moves on a loan or credit line only through account's journeys
/// (operators post corrections as MANUAL_ADJUSTMENT transfers instead).
const SERVICE: &[Role] = &[Role::Service];
const INTERNAL: &[Role] = &[Role::Operator, Role::Service];

/// Who may call what, exactly as each RPC's `Roles:` comment says (checked by test).
/// Customers never reach the ledger directly: account checks their ownership and calls
/// on their behalf with a service token.
pub fn permissions() -> PermissionTable {
    PermissionTable::new(
        SERVICE_NAME,
        &[
            ("CreateAccounts", INTERNAL),
            ("CreateTransfers", INTERNAL),
            ("GetAccount", INTERNAL),
            ("ListTransfers", INTERNAL),
            ("GetTrialBalance", INTERNAL),
            ("OpenCreditLine", SERVICE),
            ("ChangeCreditLimit", SERVICE),
            ("Disburse", SERVICE),
            ("Repay", SERVICE),
            ("GetLoan", INTERNAL),
            ("ListLoans", INTERNAL),
            ("QuotePayoff", INTERNAL),
            ("WriteOff", INTERNAL),
            ("RunEndOfDay", INTERNAL),
            ("GetBusinessDate", INTERNAL),
            ("GetPortfolioReport", INTERNAL),
            ("VerifyIntegrity", INTERNAL),
        ],
    )
}

#[derive(Debug, Clone)]
pub struct LedgerApi {
    #[allow(dead_code, reason = "used by the ledger RPCs as they land")]
    pool: PgPool,
    #[allow(dead_code, reason = "used by the ledger RPCs as they land")]
    cache: Cache,
}

impl LedgerApi {
    pub fn new(pool: PgPool, cache: Cache) -> Self {
        Self { pool, cache }
    }
}

#[tonic::async_trait]
impl LedgerService for LedgerApi {}

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

    #[test]
    fn every_auth_error_reason_is_in_the_api() {
        use microloan_proto::common::v1::ErrorReason;
        for reason in microloan_platform::auth::ERROR_REASONS {
            assert!(
                ErrorReason::from_str_name(&format!("ERROR_REASON_{reason}")).is_some(),
                "{reason} missing from microloan.common.v1.ErrorReason"
            );
        }
    }
}
