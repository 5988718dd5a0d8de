//! Canonical gRPC errors with `google.rpc` rich details (tonic-types), built the same
//! way by every service so clients can branch on `ErrorInfo.reason` and field names.

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, FieldViolation, StatusExt};

/// `ErrorInfo.domain` of the serving service, `microloan.<service>` (errors.proto): a
/// client can tell which service refused, even when account relays a ledger error.
pub fn error_domain(service: &str) -> String {
    format!("microloan.{service}")
}

/// The error domain of a service from its full proto name:
/// `microloan.ledger.v1.LedgerService` → `microloan.ledger`.
pub fn error_domain_of_proto_service(proto_service: &str) -> String {
    let mut segments = proto_service.splitn(3, '.');
    match (segments.next(), segments.next()) {
        (Some(root), Some(area)) => format!("{root}.{area}"),
        _ => proto_service.to_owned(),
    }
}

/// A status with an `ErrorInfo` whose `reason` is a stable UPPER_SNAKE code such as
/// `CREDIT_LIMIT_EXCEEDED`, in the serving service's `domain` ([`error_domain`]).
pub fn with_reason(domain: &str, code: Code, message: impl Into<String>, reason: &str) -> Status {
    with_reason_and_metadata(domain, code, message, reason, &[])
}

/// Like [`with_reason`], with `ErrorInfo.metadata` entries (e.g. `role`).
pub fn with_reason_and_metadata(
    domain: &str,
    code: Code,
    message: impl Into<String>,
    reason: &str,
    metadata: &[(&str, &str)],
) -> Status {
    let metadata: std::collections::HashMap<String, String> = metadata
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    Status::with_error_details(
        code,
        message,
        ErrorDetails::with_error_info(reason, domain, metadata),
    )
}

/// [`with_reason_and_metadata`] with owned metadata values, as services' error enums
/// carry them.
pub fn with_reason_and_owned_metadata(
    domain: &str,
    code: Code,
    message: impl Into<String>,
    reason: &str,
    metadata: &[(&'static str, String)],
) -> Status {
    let metadata: Vec<(&str, &str)> = metadata
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect();
    with_reason_and_metadata(domain, code, message, reason, &metadata)
}

/// `NOT_FOUND` with a `ResourceInfo` naming the resource type and id.
pub fn not_found(resource_type: &str, name: impl Into<String>) -> Status {
    let name = name.into();
    Status::with_error_details(
        Code::NotFound,
        format!("{resource_type} {name} not found"),
        ErrorDetails::with_resource_info(resource_type, name, "", "not found"),
    )
}

/// `UNAVAILABLE DEPENDENCY_UNAVAILABLE` naming the dependency: safe to retry with the
/// same request_id.
pub fn dependency_unavailable(
    domain: &str,
    dependency: &str,
    message: impl Into<String>,
) -> Status {
    with_reason_and_metadata(
        domain,
        Code::Unavailable,
        message,
        "DEPENDENCY_UNAVAILABLE",
        &[("dependency", dependency)],
    )
}

/// `INTERNAL`, logged here with its cause and never echoed to the client.
pub fn internal(cause: &dyn std::fmt::Display) -> Status {
    tracing::error!(%cause, "internal error");
    Status::internal("internal error")
}

/// A database error as the client sees it: UNAVAILABLE when Postgres cannot be reached
/// or dropped the connection (retry with the same request_id), ABORTED
/// CONCURRENT_MODIFICATION when Postgres rolled the transaction back because of a
/// concurrent one (deadlock, serialization failure: retry the call), INTERNAL otherwise.
pub fn database(domain: &str, err: &sqlx::Error) -> Status {
    if is_concurrency_abort(err) {
        tracing::warn!(%err, "transaction aborted by a concurrent one");
        with_reason(
            domain,
            Code::Aborted,
            "a concurrent change to the same data won; retry the call with the same request_id",
            "CONCURRENT_MODIFICATION",
        )
    } else if is_connection_lost(err) {
        tracing::warn!(%err, "database unavailable");
        dependency_unavailable(
            domain,
            "postgres",
            "the database is unavailable; retry with the same request_id",
        )
    } else {
        internal(err)
    }
}

/// Whether `err` says the connection to Postgres failed or was cut, so the statement's
/// transaction did not commit and a retry is safe: I/O and pool errors, SQLSTATE class
/// 08 (connection exception) and 57P01-57P03 (the server terminated the backend:
/// `pg_terminate_backend`, a shutdown, a crash restart).
pub fn is_connection_lost(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Tls(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08") || matches!(&*code, "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

/// Whether Postgres rolled the transaction back because of a concurrent one, so nothing
/// of it was applied and the same call may simply be retried: SQLSTATE 40P01
/// (deadlock_detected) and 40001 (serialization_failure).
pub fn is_concurrency_abort(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|code| matches!(&*code, "40P01" | "40001")),
        _ => false,
    }
}

/// `INVALID_ARGUMENT` from (field path, description) pairs.
pub fn invalid_fields(violations: Vec<(&'static str, String)>) -> Status {
    invalid_argument(
        violations
            .into_iter()
            .map(|(field, description)| violation(field, description))
            .collect(),
    )
}

/// `INVALID_ARGUMENT` with one `BadRequest` field violation per bad field.
pub fn invalid_argument(violations: Vec<FieldViolation>) -> Status {
    let message = violations
        .iter()
        .map(|violation| format!("{}: {}", violation.field, violation.description))
        .collect::<Vec<_>>()
        .join("; ");
    Status::with_error_details(
        Code::InvalidArgument,
        message,
        ErrorDetails::with_bad_request(violations),
    )
}

/// One field violation; `field` is the request field path (`amount.minor_units`).
pub fn violation(field: &str, description: impl Into<String>) -> FieldViolation {
    FieldViolation::new(field, description)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_argument_names_every_field() {
        let status = invalid_argument(vec![
            violation("amount.minor_units", "must be positive"),
            violation("term_months", "must be 5, 10 or 20"),
        ]);
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad_request = status
            .get_error_details()
            .bad_request()
            .cloned()
            .expect("bad request details");
        let fields: Vec<_> = bad_request
            .field_violations
            .iter()
            .map(|violation| violation.field.as_str())
            .collect();
        assert_eq!(fields, ["amount.minor_units", "term_months"]);
        assert!(status.message().contains("term_months"));
    }

    /// A backend terminated by an operator (or a failover) is UNAVAILABLE, retryable;
    /// a query error on a live connection stays INTERNAL.
    #[tokio::test]
    async fn a_terminated_connection_is_unavailable_and_a_bad_query_internal() {
        use sqlx::Connection;
        let url = crate::testing::server_url();
        let mut victim = sqlx::PgConnection::connect(&url).await.expect("connect");
        let mut admin = sqlx::PgConnection::connect(&url).await.expect("connect");
        let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut victim)
            .await
            .expect("pid");
        let terminated: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .fetch_one(&mut admin)
            .await
            .expect("terminate");
        assert!(terminated);
        let err = sqlx::query("SELECT 1")
            .execute(&mut victim)
            .await
            .expect_err("the connection is gone");
        assert!(is_connection_lost(&err), "{err:?}");
        assert_eq!(database("microloan.test", &err).code(), Code::Unavailable);

        let err = sqlx::query("SELECT no_such_column FROM pg_class")
            .execute(&mut admin)
            .await
            .expect_err("a bad query");
        assert!(!is_connection_lost(&err), "{err:?}");
        assert_eq!(database("microloan.test", &err).code(), Code::Internal);
    }

    /// A deadlock or a serialization failure (the transaction was rolled back) is
    /// ABORTED CONCURRENT_MODIFICATION, retryable; other SQLSTATEs are not.
    #[tokio::test]
    async fn deadlocks_and_serialization_failures_are_aborted() {
        use sqlx::Connection;
        let url = crate::testing::server_url();
        let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
        for (sqlstate, aborted) in [("40P01", true), ("40001", true), ("23505", false)] {
            let err = sqlx::query(&format!(
                "DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{sqlstate}'; END $$"
            ))
            .execute(&mut conn)
            .await
            .expect_err("raised");
            assert_eq!(is_concurrency_abort(&err), aborted, "{sqlstate}: {err:?}");
            assert!(!is_connection_lost(&err), "{sqlstate}");
            let status = database("microloan.test", &err);
            if aborted {
                assert_eq!(status.code(), Code::Aborted, "{sqlstate}");
                let info = status
                    .get_error_details()
                    .error_info()
                    .cloned()
                    .expect("error info");
                assert_eq!(info.reason, "CONCURRENT_MODIFICATION");
                assert_eq!(info.domain, "microloan.test");
            } else {
                assert_eq!(status.code(), Code::Internal, "{sqlstate}");
            }
        }
    }

    #[test]
    fn with_reason_carries_domain_and_reason() {
        let status = with_reason(
            &error_domain("account"),
            Code::FailedPrecondition,
            "frozen",
            "LINE_FROZEN",
        );
        let info = status
            .get_error_details()
            .error_info()
            .cloned()
            .expect("error info");
        assert_eq!(info.reason, "LINE_FROZEN");
        assert_eq!(info.domain, "microloan.account");
    }

    #[test]
    fn the_domain_of_a_proto_service_is_its_area() {
        assert_eq!(
            error_domain_of_proto_service("microloan.ledger.v1.LedgerService"),
            "microloan.ledger"
        );
        assert_eq!(
            error_domain_of_proto_service("microloan.ledger.v1.LedgerService"),
            error_domain("ledger")
        );
    }
}
