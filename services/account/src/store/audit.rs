//! The audit log of operator changes: who, role, what, when, request_id, before/after.
//! Values are ids and masked fields only, never PII.

use sqlx::PgConnection;
use uuid::Uuid;

/// One audited change, written in the transaction of the change itself.
#[derive(Debug)]
pub struct AuditEntry<'a> {
    pub actor: &'a str,
    pub role: &'a str,
    pub rpc: &'static str,
    pub request_id: &'a str,
    pub customer_id: Option<Uuid>,
    pub before: Option<serde_json::Value>,
    pub after: Option<serde_json::Value>,
}

pub async fn insert_audit_entry(
    conn: &mut PgConnection,
    entry: AuditEntry<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (actor, role, rpc, request_id, customer_id, before, after) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(entry.actor)
    .bind(entry.role)
    .bind(entry.rpc)
    .bind(entry.request_id)
    .bind(entry.customer_id)
    .bind(entry.before)
    .bind(entry.after)
    .execute(conn)
    .await?;
    Ok(())
}
