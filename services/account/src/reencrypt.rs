//! `account reencrypt`: reseals every customer's PII under the active key
//! (`PII_ENCRYPTION_KEY`), step 3 of a key rotation (docs/deploy.md §7). Rows are taken
//! in customer-id order in bounded batches, each batch one transaction with its rows
//! locked, so the command can run beside the live service and be stopped and rerun at
//! any point: a rerun finds only the rows still under the old key.

use sqlx::PgPool;
use uuid::Uuid;

use crate::pii::{PiiField, PiiKeys};

/// Rows resealed per transaction: short transactions, short row locks.
pub const REENCRYPT_BATCH_ROWS: i64 = 500;

/// What a run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ReencryptReport {
    pub resealed_customers: u64,
    /// Rows still under another key after the run (0 unless rows were added under an
    /// old key meanwhile, e.g. by a pod not yet restarted with the new key).
    pub remaining_customers: u64,
}

type SealedRow = (Uuid, Vec<u8>, Vec<u8>, Vec<u8>);

/// Reseals, batch by batch, every row with a value not sealed under the active key.
pub async fn reencrypt_all(pool: &PgPool, keys: &PiiKeys) -> anyhow::Result<ReencryptReport> {
    let active = keys.active_key_id_bytes().to_vec();
    let mut after = Uuid::nil();
    let mut resealed_customers = 0;
    loop {
        let mut tx = pool.begin().await?;
        let rows: Vec<SealedRow> = sqlx::query_as(
            "SELECT customer_id, name_sealed, national_id_sealed, phone_sealed FROM customers \
             WHERE customer_id > $1 AND (substring(name_sealed FROM 2 FOR 8) <> $2 \
                OR substring(national_id_sealed FROM 2 FOR 8) <> $2 \
                OR substring(phone_sealed FROM 2 FOR 8) <> $2) \
             ORDER BY customer_id LIMIT $3 FOR UPDATE",
        )
        .bind(after)
        .bind(&active)
        .bind(REENCRYPT_BATCH_ROWS)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = rows.last() else {
            break;
        };
        after = last.0;
        for (customer_id, name, national_id, phone) in &rows {
            let id = customer_id.to_string();
            let reseal = |field, sealed: &[u8]| -> anyhow::Result<Vec<u8>> {
                let plaintext = keys
                    .open(field, &id, sealed)
                    .map_err(|err| anyhow::anyhow!("customer {id}: {err}"))?;
                Ok(keys.seal(field, &id, &plaintext))
            };
            sqlx::query(
                "UPDATE customers SET name_sealed = $2, national_id_sealed = $3, \
                 phone_sealed = $4 WHERE customer_id = $1",
            )
            .bind(customer_id)
            .bind(reseal(PiiField::Name, name)?)
            .bind(reseal(PiiField::NationalId, national_id)?)
            .bind(reseal(PiiField::Phone, phone)?)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        resealed_customers += rows.len() as u64;
        tracing::info!(resealed_customers, "reencrypt: batch committed");
    }
    let remaining_customers: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM customers WHERE substring(name_sealed FROM 2 FOR 8) <> $1 \
            OR substring(national_id_sealed FROM 2 FOR 8) <> $1 \
            OR substring(phone_sealed FROM 2 FOR 8) <> $1",
    )
    .bind(&active)
    .fetch_one(pool)
    .await?;
    Ok(ReencryptReport {
        resealed_customers,
        remaining_customers: u64::try_from(remaining_customers).unwrap_or(0),
    })
}
