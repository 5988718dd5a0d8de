//! The account consumer group: the ledger's events that move a line's balances
//! (LoanDisbursed, RepaymentReceived, LoanPaidOff, LoanWrittenOff) bump the line's
//! cache version and leave a tombstone at it, so the next GetCreditLine rebuilds the
//! line from the ledger; LoanWrittenOff also closes the line (CreditLineStatus CLOSED:
//! a write-off closes the line in the ledger too). Each event applies once (the
//! runner records its id in the same transaction).

use microloan_events::{Handler, HandlerError};
use microloan_proto::events::v1::{Event, event::Payload};
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use crate::{
    line_cache::LineCache,
    store::lines::{LineStatus, LineUpdate, bump_version, latest_line, update_line},
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
        let Some(payload) = &event.payload else {
            return Ok(());
        };
        let moves_balance = matches!(
            payload,
            Payload::LoanDisbursed(_)
                | Payload::RepaymentReceived(_)
                | Payload::LoanPaidOff(_)
                | Payload::LoanWrittenOff(_)
        );
        if !moves_balance {
            return Ok(());
        }
        let customer_id = Uuid::try_parse(&event.customer_id)
            .map_err(|_| HandlerError::Reject(anyhow::anyhow!("customer_id is not a UUID")))?;
        let after = if matches!(payload, Payload::LoanWrittenOff(_)) {
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
}
