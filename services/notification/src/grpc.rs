//! The gRPC face of the notification service: proto ⇄ domain and errors → `Status`. RPCs not yet
//! implemented answer UNIMPLEMENTED (generated default methods).

use microloan_platform::{
    auth::{PermissionTable, Role},
    cache::Cache,
};
use microloan_proto::notification::v1::notification_service_server::{
    NotificationService, SERVICE_NAME,
};
use sqlx::PgPool;

const STAFF: &[Role] = &[Role::Operator, Role::Service];
/// Customers call these for their own data only; the handler checks ownership.
const ANYONE: &[Role] = &[Role::Operator, Role::Service, Role::Customer];
/// A customer's own choices, or an operator acting on a complaint; never another
/// service, so no automated flow can opt a customer back in.
const OWNER_OR_OPERATOR: &[Role] = &[Role::Operator, Role::Customer];

/// Who may call what, exactly as each RPC's `Roles:` comment says (checked by test).
/// A customer token reaches only its own notifications and
/// preferences (checked in each handler).
pub fn permissions() -> PermissionTable {
    PermissionTable::new(
        SERVICE_NAME,
        &[
            ("Send", STAFF),
            ("GetNotification", ANYONE),
            ("ListNotifications", ANYONE),
            ("Subscribe", ANYONE),
            ("SetPreferences", OWNER_OR_OPERATOR),
            ("GetPreferences", ANYONE),
        ],
    )
}

#[derive(Debug, Clone)]
pub struct NotificationApi {
    #[allow(dead_code, reason = "used by the notification RPCs as they land")]
    pool: PgPool,
    #[allow(dead_code, reason = "used by the notification RPCs as they land")]
    cache: Cache,
}

impl NotificationApi {
    pub fn new(pool: PgPool, cache: Cache) -> Self {
        Self { pool, cache }
    }
}

#[tonic::async_trait]
impl NotificationService for NotificationApi {}

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
