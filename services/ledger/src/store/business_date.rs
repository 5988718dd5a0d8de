//! The ledger's one business date row (migration 0010: first value = today in
//! Asia/Shanghai when the ledger's database was created; only end of day advances it).

use chrono::{DateTime, NaiveDate, Utc};
use sqlx::{PgConnection, PgPool};

use crate::error::LedgerError;

/// The business date row, read at `now` (the transaction's time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BusinessDate {
    pub business_date: NaiveDate,
    pub time_zone: String,
    pub last_end_of_day_time: Option<DateTime<Utc>>,
    pub end_of_day_running: bool,
    pub now: DateTime<Utc>,
}

type Row = (
    NaiveDate,
    String,
    Option<DateTime<Utc>>,
    bool,
    DateTime<Utc>,
);

fn from_row(row: Row) -> BusinessDate {
    let (business_date, time_zone, last_end_of_day_time, end_of_day_running, now) = row;
    BusinessDate {
        business_date,
        time_zone,
        last_end_of_day_time,
        end_of_day_running,
        now,
    }
}

const SELECT: &str = "SELECT business_date, time_zone, last_end_of_day_time, end_of_day_running, now() \
     FROM business_date";

/// The business date.
pub async fn read_business_date(pool: &PgPool) -> Result<BusinessDate, LedgerError> {
    let row: Row = sqlx::query_as(SELECT).fetch_one(pool).await?;
    Ok(from_row(row))
}

/// The business date, read inside a transaction without locking it.
pub async fn read_business_date_in(conn: &mut PgConnection) -> Result<BusinessDate, LedgerError> {
    let row: Row = sqlx::query_as(SELECT).fetch_one(conn).await?;
    Ok(from_row(row))
}

/// The business date, share-locked until the transaction ends: postings hold it so
/// that end of day (which updates the row) waits for them, and they see its flag.
/// NOWAIT: while end of day holds the row (FOR UPDATE, nothing else locks it so) the
/// posting is refused at once with END_OF_DAY_RUNNING instead of queueing behind the run.
pub async fn share_lock_business_date(
    conn: &mut PgConnection,
) -> Result<BusinessDate, LedgerError> {
    let row: Row = sqlx::query_as(&format!("{SELECT} FOR SHARE NOWAIT"))
        .fetch_one(conn)
        .await
        .map_err(|err| match LedgerError::from(err) {
            // lock_not_available
            error if error.sql_state().as_deref() == Some("55P03") => LedgerError::EndOfDayRunning,
            error => error,
        })?;
    Ok(from_row(row))
}

/// The business date, locked for update until the transaction ends: end of day takes it
/// before touching any account, so it waits for the postings in flight (which hold it
/// FOR SHARE) and new postings wait for it.
pub async fn lock_business_date(conn: &mut PgConnection) -> Result<BusinessDate, LedgerError> {
    let row: Row = sqlx::query_as(&format!("{SELECT} FOR UPDATE"))
        .fetch_one(conn)
        .await?;
    Ok(from_row(row))
}
