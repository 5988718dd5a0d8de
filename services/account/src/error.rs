//! The account service's one error type and its one mapping to a gRPC `Status` with
//! rich details (errors.proto), all in the domain `microloan.account`: handlers use `?`,
//! none builds a `Status` by hand.

use microloan_platform::{idempotency::IdempotencyError, status};
use tonic::{Code, Status};

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
    /// A refusal passed on from scoring or the ledger, re-issued in account's domain with
    /// the peer's code, reason and metadata (e.g. CREDIT_LIMIT_EXCEEDED from Disburse).
    #[error("{message}")]
    Passed {
        code: Code,
        reason: String,
        message: String,
        metadata: Vec<(String, String)>,
    },
    /// RESOURCE_EXHAUSTED RATE_LIMITED (metadata retry_after_seconds).
    #[error("rate limited for {retry_after_seconds} s")]
    RateLimited { retry_after_seconds: u64 },
    /// PERMISSION_DENIED ROLE_NOT_ALLOWED for a value the role may not send.
    #[error("role {role} may not send this value")]
    RoleNotAllowed { role: &'static str },
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

impl From<AccountError> for Status {
    fn from(error: AccountError) -> Self {
        match error {
            AccountError::InvalidArgument(violations) => status::invalid_fields(violations),
            AccountError::NotFound {
                resource_type,
                name,
            } => status::not_found(resource_type, name),
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
            } => status::with_reason_and_owned_metadata(
                &domain(),
                Code::FailedPrecondition,
                message,
                reason,
                &metadata,
            ),
            AccountError::AlreadyExists {
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
            AccountError::DependencyUnavailable {
                dependency,
                message,
            } => {
                tracing::warn!(dependency, %message, "peer call failed");
                status::dependency_unavailable(
                    &domain(),
                    dependency,
                    format!("{dependency} is unavailable; retry with the same request_id"),
                )
            }
            AccountError::Passed {
                code,
                reason,
                message,
                metadata,
            } => {
                let metadata: Vec<(&str, &str)> = metadata
                    .iter()
                    .map(|(key, value)| (key.as_str(), value.as_str()))
                    .collect();
                status::with_reason_and_metadata(&domain(), code, message, &reason, &metadata)
            }
            AccountError::RateLimited {
                retry_after_seconds,
            } => status::with_reason_and_metadata(
                &domain(),
                Code::ResourceExhausted,
                format!("too many requests; retry in {retry_after_seconds} s"),
                "RATE_LIMITED",
                &[("retry_after_seconds", &retry_after_seconds.to_string())],
            ),
            AccountError::RoleNotAllowed { role } => status::with_reason_and_metadata(
                &domain(),
                Code::PermissionDenied,
                "the caller's role may not send this value",
                "ROLE_NOT_ALLOWED",
                &[("role", role)],
            ),
            AccountError::Database(err) => status::database(&domain(), &err),
            AccountError::Internal(message) => status::internal(&message),
        }
    }
}
