//! The account consumer group: the ledger's events that move a line's balances
//! (LoanDisbursed, RepaymentReceived, LoanPaidOff, LoanWrittenOff) bump the line's
//! cache version and leave a tombstone at it, so the next GetCreditLine rebuilds the
//! line from the ledger; LoanWrittenOff also closes the line (CreditLineStatus CLOSED:
//! a write-off closes the line in the ledger too). Each event applies once (the
//! runner records its id in the same transaction). A batch without a write-off is one
//! statement (every customer's line bumped by its count of events) and one pipelined
//! Redis round trip of tombstones (issue 10: every Borrow and Repay through account
//! comes back as an event, so this runs as often as they do).

use microloan_events::{BatchFailure, Fresh, Handler, HandlerError};
use microloan_proto::events::v1::{Event, event::Payload};
use sqlx::{Postgres, Transaction};
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    line_cache::LineCache,
    store::lines::{LineStatus, LineUpdate, bump_version, bump_versions, latest_line, update_line},
};

/// The consumer group (DESIGN §7: the consuming service's name).
pub const GROUP: &str = "account";

/// Keeps the credit-line cache in step with the ledger; see the module docs.
#[derive(Debug, Clone)]
pub struct LinesFromEvents {
    pub cache: LineCache,
}

impl Handler for LinesFromEvents {
    async fn handle(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
    ) -> Result<(), HandlerError> {
        let Some(customer_id) = balance_moved(event)? else {
            return Ok(());
        };
        let after = if matches!(event.payload, Some(Payload::LoanWrittenOff(_))) {
            match latest_line(tx, customer_id).await? {
                Some(line) if line.status() != LineStatus::Closed => Some(
                    update_line(
                        tx,
                        line.credit_line_id,
                        &LineUpdate {
                            status: Some((LineStatus::Closed, "LOAN_WRITTEN_OFF".into())),
                            ..LineUpdate::default()
                        },
                    )
                    .await?,
                ),
                _ => bump_version(tx, customer_id).await?,
            }
        } else {
            bump_version(tx, customer_id).await?
        };
        if let Some(line) = after {
            // Before the commit: a reader that saw the old version can no longer store
            // its value. If the commit fails the event is retried and bumps again.
            self.cache.invalidate(customer_id, line.cache_version).await;
        }
        Ok(())
    }

    async fn handle_batch(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        batch: &[Fresh<'_>],
    ) -> Result<(), BatchFailure> {
        self.handle_all(tx, batch).await
    }
}

/// The customer whose line balances `event` moves, if it moves any.
fn balance_moved(event: &Event) -> Result<Option<Uuid>, HandlerError> {
    let moves_balance = matches!(
        event.payload,
        Some(
            Payload::LoanDisbursed(_)
                | Payload::RepaymentReceived(_)
                | Payload::LoanPaidOff(_)
                | Payload::LoanWrittenOff(_)
        )
    );
    if !moves_balance {
        return Ok(None);
    }
    Uuid::try_parse(&event.customer_id)
        .map(Some)
        .map_err(|_| HandlerError::Reject(anyhow::anyhow!("customer_id is not a UUID")))
}

impl LinesFromEvents {
    /// The batch as [`Handler::handle`] one after the other would leave it: a write-off
    /// (which may close the line) through `handle`, then every other event in one
    /// statement, each customer's latest line bumped by its count of events, and a
    /// tombstone at each new version (one pipelined round trip, before the commit as
    /// in `handle`).
    async fn handle_all(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        batch: &[Fresh<'_>],
    ) -> Result<(), BatchFailure> {
        let mut counts: Vec<(Uuid, i64)> = Vec::new();
        for (index, fresh) in batch.iter().enumerate() {
            if matches!(fresh.event.payload, Some(Payload::LoanWrittenOff(_))) {
                self.handle(tx, fresh.event)
                    .instrument(fresh.span.clone())
                    .await
                    .map_err(|err| BatchFailure::at(index, err))?;
                continue;
            }
            let Some(customer_id) =
                balance_moved(fresh.event).map_err(|err| BatchFailure::at(index, err))?
            else {
                continue;
            };
            match counts.iter_mut().find(|(id, _)| *id == customer_id) {
                Some((_, count)) => *count += 1,
                None => counts.push((customer_id, 1)),
            }
        }
        if counts.is_empty() {
            return Ok(());
        }
        let bumped = bump_versions(tx, &counts)
            .await
            .map_err(|err| BatchFailure::whole(err.into()))?;
        self.cache.invalidate_all(&bumped).await;
        Ok(())
    }
}
