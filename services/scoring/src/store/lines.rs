//! What the dynamic line policy reads and remembers (review.rs): a customer's payment
//! standing from the instalment states, the score a raise must beat, and the
//! policy's own freezes.

use std::collections::HashMap;

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

/// Instalments that count as paid on time.
const ON_TIME: [i16; 2] = [
    RepaymentOutcomeKind::OnTime as i16,
    RepaymentOutcomeKind::Early as i16,
];
// The baseline's decisions (application, limit increase) are written into the
// statement below as `purpose IN (1, 2)`, the predicate of the partial index
// decisions_baseline (migration 0040), which a bound parameter would not match.
const _: () = assert!(
    DecisionPurpose::CreditLineApplication as i32 == 1
        && DecisionPurpose::LimitIncrease as i32 == 2
);

/// What a review reads from scoring's own tables for one customer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReviewInputs {
    pub standing: Standing,
    /// The score a raise must beat: the one at the policy's last raise, else the latest
    /// application or limit-increase decision's; `None` if neither exists.
    pub baseline_score: Option<i32>,
}

/// The customer's standing (the event policy's input).
pub async fn standing(conn: &mut PgConnection, customer_id: Uuid) -> Result<Standing, sqlx::Error> {
    let inputs = review_inputs(conn, &[customer_id]).await?;
    Ok(inputs.first().copied().unwrap_or_default().standing)
}

/// The standing and baseline score of each of `customer_ids`, in their order, in one
/// statement: a review reads them a page of customers at a time.
pub async fn review_inputs(
    conn: &mut PgConnection,
    customer_ids: &[Uuid],
) -> Result<Vec<ReviewInputs>, sqlx::Error> {
    let rows: Vec<(Uuid, i64, i32, i64, bool, Option<i32>)> = sqlx::query_as(
        "SELECT c.customer_id, s.overdue, COALESCE(s.overdue_days_max, 0), s.on_time, \
                COALESCE(p.frozen_by_policy, false), \
                COALESCE(p.raise_score, \
                    (SELECT d.score FROM decisions d \
                     WHERE d.customer_id = c.customer_id AND d.purpose IN (1, 2) \
                     ORDER BY d.decide_time DESC LIMIT 1)) \
         FROM unnest($1::uuid[]) AS c(customer_id) \
         LEFT JOIN line_policy p ON p.customer_id = c.customer_id \
         CROSS JOIN LATERAL ( \
             SELECT count(*) FILTER (WHERE i.outcome = $2) AS overdue, \
                    max(i.days_past_due) FILTER (WHERE i.outcome = $2) AS overdue_days_max, \
                    count(*) FILTER (WHERE i.outcome = ANY($3)) AS on_time \
             FROM installment_states i \
             WHERE i.customer_id = c.customer_id AND i.installment_sequence > 0) s",
    )
    .bind(customer_ids)
    .bind(RepaymentOutcomeKind::Missed as i16)
    .bind(ON_TIME)
    .fetch_all(conn)
    .await?;
    let by_customer: HashMap<Uuid, ReviewInputs> = rows
        .into_iter()
        .map(
            |(customer_id, overdue, overdue_days_max, on_time, frozen, baseline_score)| {
                let standing = Standing {
                    overdue_installments: overdue,
                    overdue_days_max,
                    on_time_installments: on_time,
                    frozen_by_policy: frozen,
                };
                (
                    customer_id,
                    ReviewInputs {
                        standing,
                        baseline_score,
                    },
                )
            },
        )
        .collect();
    Ok(customer_ids
        .iter()
        .map(|id| by_customer.get(id).copied().unwrap_or_default())
        .collect())
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
