//! The scoring service's one error type and its one mapping to a gRPC `Status` with
//! rich details (errors.proto), all in the domain `microloan.scoring`: handlers use `?`,
//! none builds a `Status` by hand.

use microloan_platform::{idempotency::IdempotencyError, status};
use tonic::{Code, Status};

/// Everything an RPC of scoring can fail with, past authentication.
#[derive(Debug, thiserror::Error)]
pub enum ScoringError {
    /// INVALID_ARGUMENT: one (field path, description) per bad request field.
    #[error("invalid argument: {0:?}")]
    InvalidArgument(Vec<(String, String)>),
    /// ALREADY_EXISTS with an ErrorReason (IDEMPOTENCY_KEY_REUSED).
    #[error("{message}")]
    AlreadyExists {
        reason: &'static str,
        message: String,
        metadata: Vec<(&'static str, String)>,
    },
    /// UNAVAILABLE MODEL_UNAVAILABLE: no verified scorecard is loaded (why, for the log
    /// and the message; never a path a client could not see anyway).
    #[error("model unavailable: {0}")]
    ModelUnavailable(String),
    /// ABORTED with an ErrorReason (CONCURRENT_MODIFICATION: another review runs).
    #[error("{message}")]
    Aborted {
        reason: &'static str,
        message: String,
    },
    /// UNAVAILABLE DEPENDENCY_UNAVAILABLE: a peer service (account, ledger) did not
    /// answer; safe to retry with the same request_id.
    #[error("{message}")]
    DependencyUnavailable { dependency: String, message: String },
    /// NOT_FOUND with a ResourceInfo.
    #[error("{resource_type} {name} not found")]
    NotFound {
        resource_type: &'static str,
        name: String,
    },
    /// UNAVAILABLE DEPENDENCY_UNAVAILABLE (Postgres unreachable) or INTERNAL.
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// The client's stream broke (cancelled, reset, undecodable): its status as is.
    #[error("stream: {0}")]
    Stream(Status),
    /// INTERNAL: a broken invariant (never a client's fault).
    #[error("internal: {0}")]
    Internal(String),
}

impl ScoringError {
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![(field.into(), description.into())])
    }
}

impl From<IdempotencyError> for ScoringError {
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
    status::error_domain("scoring")
}

impl From<ScoringError> for Status {
    fn from(error: ScoringError) -> Self {
        match error {
            ScoringError::InvalidArgument(violations) => status::invalid_argument(
                violations
                    .into_iter()
                    .map(|(field, description)| status::violation(&field, description))
                    .collect(),
            ),
            ScoringError::AlreadyExists {
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
            ScoringError::ModelUnavailable(why) => status::with_reason(
                &domain(),
                Code::Unavailable,
                format!("no active scoring model: {why}"),
                "MODEL_UNAVAILABLE",
            ),
            ScoringError::Aborted { reason, message } => {
                status::with_reason(&domain(), Code::Aborted, message, reason)
            }
            ScoringError::DependencyUnavailable {
                dependency,
                message,
            } => status::dependency_unavailable(&domain(), &dependency, message),
            ScoringError::NotFound {
                resource_type,
                name,
            } => status::not_found(resource_type, name),
            ScoringError::Database(err) => status::database(&domain(), &err),
            ScoringError::Stream(status) => status,
            ScoringError::Internal(message) => status::internal(&message),
        }
    }
}
