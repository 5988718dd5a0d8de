//! What notification asks account: a customer's locale (GetCustomer, masked, not
//! audited) and, at SMS delivery time only, the contact point (GetContactPoint: the
//! unmasked phone, read with an audited purpose and never stored here).

use microloan_platform::client::PeerChannel;
use microloan_proto::account::v1::{
    CustomerStatus, GetContactPointRequest, GetCustomerRequest,
    account_service_client::AccountServiceClient,
};
use tonic::Code;
use uuid::Uuid;

use crate::model::Locale;

/// Why account could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    #[error("customer {0} not found")]
    NotFound(Uuid),
    /// Unreachable, slow or failing: worth another try later.
    #[error("account: {0}")]
    Unavailable(String),
}

/// A customer's contact point for one SMS delivery.
#[derive(Clone, PartialEq, Eq)]
pub struct ContactPoint {
    /// E.164, unmasked; empty after an erasure. Never logged, never stored.
    pub phone: String,
    pub closed: bool,
}

impl std::fmt::Debug for ContactPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContactPoint")
            .field("phone", &"***")
            .field("closed", &self.closed)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Directory {
    account: AccountServiceClient<PeerChannel>,
}

fn directory_error(customer_id: Uuid, status: &tonic::Status) -> DirectoryError {
    match status.code() {
        Code::NotFound => DirectoryError::NotFound(customer_id),
        code => DirectoryError::Unavailable(format!("{code:?}: {}", status.message())),
    }
}

impl Directory {
    pub fn new(account: AccountServiceClient<PeerChannel>) -> Self {
        Self { account }
    }

    /// The customer's locale as account knows it (`None`: account has none on record
    /// in a form notification knows).
    pub async fn customer_locale(
        &self,
        customer_id: Uuid,
    ) -> Result<Option<Locale>, DirectoryError> {
        let customer = self
            .account
            .clone()
            .get_customer(GetCustomerRequest {
                customer_id: customer_id.to_string(),
            })
            .await
            .map_err(|status| directory_error(customer_id, &status))?
            .into_inner()
            .customer
            .ok_or_else(|| {
                DirectoryError::Unavailable("GetCustomer returned no customer".into())
            })?;
        Ok(Locale::parse(&customer.locale))
    }

    /// The phone to text for notification `notification_id`; account audits the read
    /// with the purpose "notification <id> SMS".
    pub async fn contact_point(
        &self,
        customer_id: Uuid,
        notification_id: Uuid,
    ) -> Result<ContactPoint, DirectoryError> {
        let contact = self
            .account
            .clone()
            .get_contact_point(GetContactPointRequest {
                customer_id: customer_id.to_string(),
                purpose: format!("notification {notification_id} SMS"),
            })
            .await
            .map_err(|status| directory_error(customer_id, &status))?
            .into_inner();
        Ok(ContactPoint {
            phone: contact.phone,
            closed: contact.status == CustomerStatus::Closed as i32,
        })
    }
}
