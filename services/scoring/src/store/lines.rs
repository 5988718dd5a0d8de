//! What the dynamic line policy reads and remembers (review.rs): a customer's payment
//! standing from the instalment states, the score a raise must beat, and the
//! policy's own freezes.

use sqlx::PgConnection;
use uuid::Uuid;

use microloan_proto::{common::v1::DecisionPurpose, scoring::v1::RepaymentOutcomeKind};

/// A customer's repayment standing as the stored instalment states say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    /// Instalments past due and unpaid (MISSED).
    pub overdue_installments: i64,
    /// Worst days past due among those (0 if none).
    pub overdue_days_max: i32,
    /// Instalments paid on time or early.
    pub on_time_installments: i64,
    /// The policy froze the line and has not unfrozen it since.
    pub frozen_by_policy: bool,
}

pub async fn standing(conn: &mut PgConnection, customer_id: Uuid) -> Result<Standing, sqlx::Error> {
    let (overdue, overdue_days_max, on_time, frozen): (i64, i32, i64, bool) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE outcome = $2), \
                COALESCE(max(days_past_due) FILTER (WHERE outcome = $2), 0), \
                count(*) FILTER (WHERE outcome = ANY($3)), \
                COALESCE((SELECT frozen_by_policy FROM line_policy WHERE customer_id = $1), false) \
         FROM installment_states WHERE customer_id = $1 AND installment_sequence > 0",
    )
    .bind(customer_id)
    .bind(RepaymentOutcomeKind::Missed as i16)
    .bind([
        RepaymentOutcomeKind::OnTime as i16,
        RepaymentOutcomeKind::Early as i16,
    ])
    .fetch_one(conn)
    .await?;
    Ok(Standing {
        overdue_installments: overdue,
        overdue_days_max,
        on_time_installments: on_time,
        frozen_by_policy: frozen,
    })
}

/// The score a raise must beat: the one at the policy's last raise, else the latest
/// application or limit-increase decision's; `None` if neither exists.
pub async fn raise_baseline_score(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<i32>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT COALESCE( \
             (SELECT raise_score FROM line_policy WHERE customer_id = $1), \
             (SELECT score FROM decisions WHERE customer_id = $1 AND purpose = ANY($2) \
              ORDER BY decide_time DESC LIMIT 1))",
    )
    .bind(customer_id)
    .bind([
        DecisionPurpose::CreditLineApplication as i16,
        DecisionPurpose::LimitIncrease as i16,
    ])
    .fetch_one(conn)
    .await
}

/// Records what an applied change means for the policy's memory: a freeze by the
/// policy, an unfreeze, a raise at `raise_score`.
pub async fn remember(
    conn: &mut PgConnection,
    customer_id: Uuid,
    frozen_by_policy: Option<bool>,
    raise_score: Option<i32>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO line_policy (customer_id, frozen_by_policy, raise_score) \
         VALUES ($1, COALESCE($2, false), $3) \
         ON CONFLICT (customer_id) DO UPDATE SET \
             frozen_by_policy = COALESCE($2, line_policy.frozen_by_policy), \
             raise_score = COALESCE($3, line_policy.raise_score), update_time = now()",
    )
    .bind(customer_id)
    .bind(frozen_by_policy)
    .bind(raise_score)
    .execute(conn)
    .await?;
    Ok(())
}

/// Customers with a line scoring has heard of, after `after`, in id order: the
/// review's population when it is not given customer ids.
pub async fn customers_with_lines(
    conn: &mut PgConnection,
    after: Option<Uuid>,
    limit: i64,
) -> Result<Vec<Uuid>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT customer_id FROM credit_lines \
         WHERE ($1::uuid IS NULL OR customer_id > $1) AND limit_fen > 0 \
         ORDER BY customer_id LIMIT $2",
    )
    .bind(after)
    .bind(limit)
    .fetch_all(conn)
    .await
}
