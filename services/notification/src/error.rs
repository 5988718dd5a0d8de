//! The notification service's one error type and its one mapping to a gRPC `Status` with
//! rich details (errors.proto), all in the domain `microloan.notification`: handlers use `?`,
//! none builds a `Status` by hand.

use microloan_platform::{idempotency::IdempotencyError, status};
use tonic::{Code, Status};

/// Everything an RPC of notification can fail with, past authentication.
#[derive(Debug, thiserror::Error)]
pub enum NotificationError {
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
    /// ALREADY_EXISTS with an ErrorReason (CUSTOMER_EXISTS, IDEMPOTENCY_KEY_REUSED, ...).
    #[error("{message}")]
    AlreadyExists {
        reason: &'static str,
        message: String,
        metadata: Vec<(&'static str, String)>,
    },
    /// UNAVAILABLE DEPENDENCY_UNAVAILABLE (Postgres, or a peer, unreachable) or INTERNAL.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// UNAVAILABLE DEPENDENCY_UNAVAILABLE: a peer (account) did not answer.
    #[error("{dependency} unavailable: {message}")]
    Unavailable {
        dependency: &'static str,
        message: String,
    },
    /// RESOURCE_EXHAUSTED with an ErrorReason (RATE_LIMITED).
    #[error("{message}")]
    ResourceExhausted {
        reason: &'static str,
        message: String,
    },
    /// INTERNAL: a broken invariant (never a client's fault).
    #[error("internal: {0}")]
    Internal(String),
}

impl NotificationError {
    pub fn not_found(resource_type: &'static str, name: impl Into<String>) -> Self {
        Self::NotFound {
            resource_type,
            name: name.into(),
        }
    }

    /// INVALID_ARGUMENT on one field.
    pub fn invalid(field: &'static str, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![(field, description.into())])
    }
}

impl From<IdempotencyError> for NotificationError {
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
    status::error_domain("notification")
}

impl From<NotificationError> for Status {
    fn from(error: NotificationError) -> Self {
        match error {
            NotificationError::InvalidArgument(violations) => status::invalid_fields(violations),
            NotificationError::NotFound {
                resource_type,
                name,
            } => status::not_found(resource_type, name),
            NotificationError::NotResourceOwner => status::with_reason(
                &domain(),
                Code::PermissionDenied,
                "a customer token reaches only its own customer's data",
                "NOT_RESOURCE_OWNER",
            ),
            NotificationError::AlreadyExists {
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
            NotificationError::Database(err) => status::database(&domain(), &err),
            NotificationError::Unavailable {
                dependency,
                message,
            } => status::dependency_unavailable(
                &domain(),
                dependency,
                format!("{dependency} is unavailable: {message}"),
            ),
            NotificationError::ResourceExhausted { reason, message } => {
                status::with_reason(&domain(), Code::ResourceExhausted, message, reason)
            }
            NotificationError::Internal(message) => status::internal(&message),
        }
    }
}
