//! The account service's one error type and its one mapping to a gRPC `Status` with
//! rich details (errors.proto), all in the domain `microloan.account`: handlers use `?`,
//! none builds a `Status` by hand.

use microloan_platform::{idempotency::IdempotencyError, status};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Everything an RPC of account can fail with, past authentication.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// INVALID_ARGUMENT: one (field path, description) per bad request field.
    #[error("invalid argument: {0:?}")]
    InvalidArgument(Vec<(&'static str, String)>),
    /// NOT_FOUND with a ResourceInfo.
    #[error("{resource_type} {name} not found")]
    NotFound {
        resource_type: &'static str,
        name: String,
    },
    /// PERMISSION_DENIED NOT_RESOURCE_OWNER (a customer token naming another customer).
    #[error("a customer token reaches only its own customer's data")]
    NotResourceOwner,
    /// FAILED_PRECONDITION with an ErrorReason and its metadata.
    #[error("{message}")]
    FailedPrecondition {
        reason: &'static str,
        message: String,
        metadata: Vec<(&'static str, String)>,
    },
    /// ALREADY_EXISTS with an ErrorReason (CUSTOMER_EXISTS, IDEMPOTENCY_KEY_REUSED, ...).
    #[error("{message}")]
    AlreadyExists {
        reason: &'static str,
        message: String,
        metadata: Vec<(&'static str, String)>,
    },
    /// UNAVAILABLE DEPENDENCY_UNAVAILABLE: a peer service did not answer (safe to retry
    /// with the same request_id).
    #[error("{dependency} unavailable: {message}")]
    DependencyUnavailable {
        dependency: &'static str,
        message: String,
    },
    /// UNAVAILABLE DEPENDENCY_UNAVAILABLE (Postgres, or a peer, unreachable) or INTERNAL.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// INTERNAL: a broken invariant (never a client's fault).
    #[error("internal: {0}")]
    Internal(String),
}

impl AccountError {
    pub fn not_found(resource_type: &'static str, name: impl Into<String>) -> Self {
        Self::NotFound {
            resource_type,
            name: name.into(),
        }
    }

    pub fn precondition(reason: &'static str, message: impl Into<String>) -> Self {
        Self::FailedPrecondition {
            reason,
            message: message.into(),
            metadata: Vec::new(),
        }
    }
}

impl From<IdempotencyError> for AccountError {
    fn from(error: IdempotencyError) -> Self {
        match error {
            IdempotencyError::KeyReused { request_id } => Self::AlreadyExists {
                reason: "IDEMPOTENCY_KEY_REUSED",
                message: "request_id was already used with a different request".into(),
                metadata: vec![("request_id", request_id)],
            },
            IdempotencyError::NoStoredResponse => Self::Internal(error.to_string()),
            IdempotencyError::Database(err) => Self::Database(err),
        }
    }
}

fn domain() -> String {
    status::error_domain("account")
}

fn metadata_refs<'a>(metadata: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    metadata
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect()
}

impl From<AccountError> for Status {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::InvalidArgument(violations) => status::invalid_argument(
                violations
                    .into_iter()
                    .map(|(field, description)| status::violation(field, description))
                    .collect(),
            ),
            AccountError::NotFound {
                resource_type,
                name,
            } => Status::with_error_details(
                Code::NotFound,
                format!("{resource_type} {name} not found"),
                ErrorDetails::with_resource_info(resource_type, name, "", "not found"),
            ),
            AccountError::NotResourceOwner => status::with_reason(
                &domain(),
                Code::PermissionDenied,
                "a customer token reaches only its own customer's data",
                "NOT_RESOURCE_OWNER",
            ),
            AccountError::FailedPrecondition {
                reason,
                message,
                metadata,
            } => status::with_reason_and_metadata(
                &domain(),
                Code::FailedPrecondition,
                message,
                reason,
                &metadata_refs(&metadata),
            ),
            AccountError::AlreadyExists {
                reason,
                message,
                metadata,
            } => status::with_reason_and_metadata(
                &domain(),
                Code::AlreadyExists,
                message,
                reason,
                &metadata_refs(&metadata),
            ),
            AccountError::DependencyUnavailable {
                dependency,
                message,
            } => {
                tracing::warn!(dependency, %message, "peer call failed");
                status::with_reason_and_metadata(
                    &domain(),
                    Code::Unavailable,
                    format!("{dependency} is unavailable; retry with the same request_id"),
                    "DEPENDENCY_UNAVAILABLE",
                    &[("dependency", dependency)],
                )
            }
            AccountError::Database(err) => database_status(&err),
            AccountError::Internal(message) => {
                tracing::error!(%message, "account invariant broken");
                Status::internal("internal error")
            }
        }
    }
}

/// A database that cannot be reached is UNAVAILABLE (retry with the same request_id);
/// anything else is INTERNAL, logged here and never echoed to the client.
fn database_status(err: &sqlx::Error) -> Status {
    let unreachable = matches!(
        err,
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed
    );
    if unreachable {
        status::with_reason_and_metadata(
            &domain(),
            Code::Unavailable,
            "the account database is unavailable; retry with the same request_id",
            "DEPENDENCY_UNAVAILABLE",
            &[("dependency", "postgres")],
        )
    } else {
        tracing::error!(error = %err, "account database error");
        Status::internal("internal error")
    }
}
