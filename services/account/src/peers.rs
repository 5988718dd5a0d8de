//! Calls to scoring and the ledger: what their refusals become in account's domain.
//! Every call runs on a `PeerChannel`, which bounds it with the configured deadline
//! (`grpc-timeout` too), so a hung peer costs at most that.

use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::error::AccountError;

/// `status` from `dependency` as account answers it: a peer that is down or too slow
/// is UNAVAILABLE DEPENDENCY_UNAVAILABLE (retry with the same request_id); a refusal
/// with a reason is passed on with its code, reason and metadata; NOT_FOUND keeps its
/// resource; anything else is INTERNAL (account sent something it should not have).
pub fn from_peer(dependency: &'static str, status: &Status) -> AccountError {
    match status.code() {
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown => {
            return AccountError::DependencyUnavailable {
                dependency,
                message: format!("{:?}: {}", status.code(), status.message()),
            };
        }
        Code::NotFound => {
            let details = status.get_error_details();
            if let Some(resource) = details.resource_info() {
                return AccountError::not_found(
                    leak_resource_type(&resource.resource_type),
                    resource.resource_name.clone(),
                );
            }
        }
        _ => {}
    }
    let details = status.get_error_details();
    match details.error_info() {
        Some(info) if status.code() != Code::InvalidArgument => AccountError::Passed {
            code: status.code(),
            reason: info.reason.clone(),
            message: status.message().to_owned(),
            metadata: info
                .metadata
                .iter()
                .map(|(key, value)| (key.clone(), value.clone()))
                .collect(),
        },
        _ => AccountError::Internal(format!(
            "{dependency} answered {:?}: {}",
            status.code(),
            status.message()
        )),
    }
}

/// The resource types peers name, as static strings.
fn leak_resource_type(resource_type: &str) -> &'static str {
    match resource_type {
        "loan" => "loan",
        "credit_line" => "credit_line",
        "customer" => "customer",
        "account" => "account",
        _ => "resource",
    }
}

/// The ErrorInfo reason of a peer's refusal, if any.
pub fn reason_of(status: &Status) -> Option<String> {
    status
        .get_error_details()
        .error_info()
        .map(|info| info.reason.clone())
}
