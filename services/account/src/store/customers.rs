//! Customers in Postgres: PII sealed, found by keyed hash, masks stored beside it.

use chrono::{DateTime, Utc};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    customers::{CustomerStatus, NewCustomer},
    error::AccountError,
    pii::{PiiField, PiiKeys},
};

/// A customer as stored, without its sealed PII.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CustomerRow {
    pub customer_id: Uuid,
    pub status: i16,
    pub status_reason: String,
    pub name_masked: String,
    pub national_id_masked: String,
    pub phone_masked: String,
    pub annual_income_minor: i64,
    pub locale: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

impl CustomerRow {
    pub fn status(&self) -> Result<CustomerStatus, AccountError> {
        CustomerStatus::from_i16(self.status)
            .ok_or_else(|| AccountError::Internal(format!("customer status {}", self.status)))
    }
}

const CUSTOMER_COLUMNS: &str = "customer_id, status, status_reason, name_masked, \
    national_id_masked, phone_masked, annual_income_minor, locale, create_time, update_time";

/// Inserts `customer` as `customer_id` (ACTIVE), sealing its PII; `Err(existing id)`
/// when a customer with the same national id exists.
pub async fn insert_customer(
    conn: &mut PgConnection,
    keys: &PiiKeys,
    customer_id: Uuid,
    customer: &NewCustomer,
) -> Result<Result<CustomerRow, Uuid>, AccountError> {
    let id_text = customer_id.to_string();
    let national_id_hash = keys.lookup_hash(PiiField::NationalId, customer.national_id.expose());
    let inserted: Option<CustomerRow> = sqlx::query_as(&format!(
        "INSERT INTO customers (customer_id, status, name_sealed, national_id_sealed, \
             phone_sealed, national_id_hash, phone_hash, name_masked, national_id_masked, \
             phone_masked, annual_income_minor, locale, device_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
         ON CONFLICT (national_id_hash) DO NOTHING \
         RETURNING {CUSTOMER_COLUMNS}"
    ))
    .bind(customer_id)
    .bind(CustomerStatus::Active.as_i16())
    .bind(keys.seal(PiiField::Name, &id_text, customer.name.expose()))
    .bind(keys.seal(
        PiiField::NationalId,
        &id_text,
        customer.national_id.expose(),
    ))
    .bind(keys.seal(PiiField::Phone, &id_text, customer.phone.expose()))
    .bind(national_id_hash.as_slice())
    .bind(
        keys.lookup_hash(PiiField::Phone, customer.phone.expose())
            .as_slice(),
    )
    .bind(customer.name.masked())
    .bind(customer.national_id.masked())
    .bind(customer.phone.masked())
    .bind(customer.annual_income.amount_minor())
    .bind(customer.locale.as_str())
    .bind(&customer.device_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(row) = inserted {
        return Ok(Ok(row));
    }
    let existing: Uuid =
        sqlx::query_scalar("SELECT customer_id FROM customers WHERE national_id_hash = $1")
            .bind(national_id_hash.as_slice())
            .fetch_one(conn)
            .await?;
    Ok(Err(existing))
}

pub async fn find_customer(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<CustomerRow>, AccountError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE customer_id = $1"
    ))
    .bind(customer_id)
    .fetch_optional(conn)
    .await?)
}

/// The customer's row, locked for the rest of the transaction.
pub async fn lock_customer(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<CustomerRow>, AccountError> {
    Ok(sqlx::query_as(&format!(
        "SELECT {CUSTOMER_COLUMNS} FROM customers WHERE customer_id = $1 FOR UPDATE"
    ))
    .bind(customer_id)
    .fetch_optional(conn)
    .await?)
}

pub async fn update_customer_status(
    conn: &mut PgConnection,
    customer_id: Uuid,
    status: CustomerStatus,
    reason: &str,
) -> Result<CustomerRow, AccountError> {
    Ok(sqlx::query_as(&format!(
        "UPDATE customers SET status = $2, status_reason = $3, update_time = now() \
         WHERE customer_id = $1 RETURNING {CUSTOMER_COLUMNS}"
    ))
    .bind(customer_id)
    .bind(status.as_i16())
    .bind(reason)
    .fetch_one(conn)
    .await?)
}

/// Reads the sealed PII of one customer (for `account reencrypt` and the contact point).
pub async fn find_sealed_pii(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<(Vec<u8>, Vec<u8>, Vec<u8>)>, AccountError> {
    Ok(sqlx::query_as(
        "SELECT name_sealed, national_id_sealed, phone_sealed FROM customers \
         WHERE customer_id = $1",
    )
    .bind(customer_id)
    .fetch_optional(conn)
    .await?)
}
