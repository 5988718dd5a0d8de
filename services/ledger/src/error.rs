//! The ledger's one error type, and its one mapping to a gRPC `Status` with rich
//! details (errors.proto): handlers use `?`, none builds a `Status` by hand.

use microloan_platform::{idempotency::IdempotencyError, status};
use tonic::{Code, Status};

/// Everything an RPC of the ledger can fail with, past authentication.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// INVALID_ARGUMENT: one (field path, description) per bad request field.
    #[error("invalid argument: {0:?}")]
    InvalidArgument(Vec<(&'static str, String)>),
    /// ALREADY_EXISTS IDEMPOTENCY_KEY_REUSED.
    #[error("request_id {request_id} was used with another request")]
    IdempotencyKeyReused { request_id: String },
    /// ABORTED END_OF_DAY_RUNNING.
    #[error("end of day is running")]
    EndOfDayRunning,
    /// NOT_FOUND with a ResourceInfo.
    #[error("{resource_type} {name} not found")]
    NotFound {
        resource_type: &'static str,
        name: String,
    },
    /// UNAVAILABLE DEPENDENCY_UNAVAILABLE (Postgres unreachable) or INTERNAL.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// FAILED_PRECONDITION with an ErrorReason and its metadata (the loan book's rules).
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
        metadata: Vec<(&'static str, String)>,
    },
    /// ALREADY_EXISTS with an ErrorReason (CREDIT_LINE_EXISTS, LOAN_EXISTS).
    #[error("{message}")]
    AlreadyExists {
        reason: &'static str,
        message: String,
        metadata: Vec<(&'static str, String)>,
    },
    /// INTERNAL: a broken invariant or a sum past int64.
    #[error("internal: {0}")]
    Internal(String),
}

impl LedgerError {
    pub fn precondition(
        reason: &'static str,
        message: impl Into<String>,
        metadata: Vec<(&'static str, String)>,
    ) -> Self {
        Self::FailedPrecondition {
            reason,
            message: message.into(),
            metadata,
        }
    }

    pub fn invalid(field: &'static str, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![(field, description.into())])
    }

    /// A unique violation (another transaction committed the same id or key first), a
    /// serialization failure or a deadlock: worth retrying the whole transaction
    /// (`store::in_transaction_with_retry`); ABORTED CONCURRENT_MODIFICATION if it
    /// persists.
    pub fn lost_a_race(&self) -> bool {
        matches!(
            self.sql_state().as_deref(),
            Some("23505" | "40001" | "40P01")
        )
    }

    /// The SQLSTATE of a database error, if it is one.
    pub fn sql_state(&self) -> Option<String> {
        match self {
            Self::Database(sqlx::Error::Database(err)) => err.code().map(|code| code.into_owned()),
            _ => None,
        }
    }
}

impl From<IdempotencyError> for LedgerError {
    fn from(error: IdempotencyError) -> Self {
        match error {
            IdempotencyError::KeyReused { request_id } => Self::IdempotencyKeyReused { request_id },
            IdempotencyError::NoStoredResponse => Self::Internal(error.to_string()),
            IdempotencyError::Database(error) => Self::Database(error),
        }
    }
}

fn domain() -> String {
    status::error_domain("ledger")
}

impl From<LedgerError> for Status {
    fn from(error: LedgerError) -> Self {
        match error {
            LedgerError::InvalidArgument(violations) => status::invalid_fields(violations),
            LedgerError::IdempotencyKeyReused { request_id } => status::with_reason_and_metadata(
                &domain(),
                Code::AlreadyExists,
                "request_id was already used with a different request",
                "IDEMPOTENCY_KEY_REUSED",
                &[("request_id", &request_id)],
            ),
            LedgerError::EndOfDayRunning => status::with_reason(
                &domain(),
                Code::Aborted,
                "end of day is running; retry after it finishes",
                "END_OF_DAY_RUNNING",
            ),
            LedgerError::FailedPrecondition {
                reason,
                message,
                metadata,
            } => status::with_reason_and_owned_metadata(
                &domain(),
                Code::FailedPrecondition,
                message,
                reason,
                &metadata,
            ),
            LedgerError::AlreadyExists {
                reason,
                message,
                metadata,
            } => status::with_reason_and_owned_metadata(
                &domain(),
                Code::AlreadyExists,
                message,
                reason,
                &metadata,
            ),
            LedgerError::NotFound {
                resource_type,
                name,
            } => status::not_found(resource_type, name),
            error if error.lost_a_race() => {
                tracing::warn!(%error, "gave up after repeated races");
                status::with_reason(
                    &domain(),
                    Code::Aborted,
                    "a concurrent change to the same records won; retry the call",
                    "CONCURRENT_MODIFICATION",
                )
            }
            LedgerError::Database(err) => status::database(&domain(), &err),
            LedgerError::Internal(message) => status::internal(&message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic_types::StatusExt;

    #[test]
    fn each_error_carries_its_code_and_detail() {
        let status = Status::from(LedgerError::invalid("transfers", "empty"));
        assert_eq!(status.code(), Code::InvalidArgument);
        let fields = status
            .get_error_details()
            .bad_request()
            .cloned()
            .expect("bad request");
        assert_eq!(fields.field_violations[0].field, "transfers");

        let status = Status::from(LedgerError::IdempotencyKeyReused {
            request_id: "r1".into(),
        });
        assert_eq!(status.code(), Code::AlreadyExists);
        let info = status
            .get_error_details()
            .error_info()
            .cloned()
            .expect("info");
        assert_eq!(
            (info.reason.as_str(), info.domain.as_str()),
            ("IDEMPOTENCY_KEY_REUSED", "microloan.ledger")
        );
        assert_eq!(
            info.metadata.get("request_id").map(String::as_str),
            Some("r1")
        );

        let status = Status::from(LedgerError::EndOfDayRunning);
        assert_eq!(status.code(), Code::Aborted);

        let status = Status::from(LedgerError::NotFound {
            resource_type: "account",
            name: "x".into(),
        });
        assert_eq!(status.code(), Code::NotFound);
        let resource = status
            .get_error_details()
            .resource_info()
            .cloned()
            .expect("resource");
        assert_eq!(resource.resource_type, "account");
    }
}
