//! Reads of one customer's feature inputs: index range scans on its own rows and its
//! two-hop neighbourhood, never a scan of the signal logs.

use std::collections::HashMap;

use chrono::NaiveDate;
use microloan_proto::scoring::v1::{IdentifierKind, RepaymentOutcomeKind};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::features::{
    behaviour::{MonthTotals, WINDOW_MONTHS},
    social::{KindWeights, Neighbourhood},
};

use super::signals::OTHER_LENDER;

/// Most neighbours read for one customer: a hub's read stays bounded (its degree is
/// then counted up to this bound).
pub const NEIGHBOURS_READ_MAX: i64 = 5_000;
/// Most second-hop adjacency rows read for one customer.
pub const SECOND_HOP_ROWS_MAX: i64 = 100_000;

type NeighbourRow = (String, f64, f64, f64, f64, f64, f64);

pub async fn neighbourhood(
    conn: &mut PgConnection,
    party: &str,
) -> Result<Neighbourhood, sqlx::Error> {
    let rows: Vec<NeighbourRow> = sqlx::query_as(
        "SELECT neighbour_id, transfer_fen::float8, red_packet_fen::float8, messages::float8, \
             calls::float8, contact::float8, group_member::float8 \
         FROM social_adjacency WHERE party_id = $1 ORDER BY neighbour_id LIMIT $2",
    )
    .bind(party)
    .bind(NEIGHBOURS_READ_MAX)
    .fetch_all(&mut *conn)
    .await?;
    let neighbours: Vec<(String, KindWeights)> = rows
        .into_iter()
        .map(
            |(id, transfer_fen, red_packet_fen, messages, calls, contacts, group_members)| {
                (
                    id,
                    KindWeights {
                        transfer_fen,
                        red_packet_fen,
                        messages,
                        calls,
                        contacts,
                        group_members,
                    },
                )
            },
        )
        .collect();
    let ids: Vec<&str> = neighbours.iter().map(|(id, _)| id.as_str()).collect();
    let second: Vec<(String, String)> = if ids.is_empty() {
        Vec::new()
    } else {
        sqlx::query_as(
            "SELECT party_id, neighbour_id FROM social_adjacency \
             WHERE party_id = ANY($1) LIMIT $2",
        )
        .bind(&ids)
        .bind(SECOND_HOP_ROWS_MAX)
        .fetch_all(&mut *conn)
        .await?
    };
    let mut parties: Vec<&str> = ids.clone();
    parties.extend(second.iter().map(|(_, far)| far.as_str()));
    parties.sort_unstable();
    parties.dedup();
    let history: HashMap<String, bool> = if parties.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as(
            "SELECT party_id, defaulter_since IS NOT NULL FROM credit_parties \
             WHERE party_id = ANY($1)",
        )
        .bind(&parties)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect()
    };
    Ok(Neighbourhood {
        center: party.to_owned(),
        neighbours,
        second,
        history,
    })
}

/// The last refresh's personalised PageRank; 0 for a party it did not reach.
pub async fn pagerank_score(conn: &mut PgConnection, party: &str) -> Result<f64, sqlx::Error> {
    let score: Option<f64> =
        sqlx::query_scalar("SELECT score FROM pagerank_scores WHERE party_id = $1")
            .bind(party)
            .fetch_optional(conn)
            .await?;
    Ok(score.unwrap_or(0.0))
}

/// (worst days past due, known defaulter) of a party with a credit history.
pub async fn credit_party(
    conn: &mut PgConnection,
    party: &str,
) -> Result<Option<(i32, bool)>, sqlx::Error> {
    sqlx::query_as(
        "SELECT max_days_past_due, defaulter_since IS NOT NULL FROM credit_parties \
         WHERE party_id = $1",
    )
    .bind(party)
    .fetch_optional(conn)
    .await
}

/// Whether `customer_id` is a known defaulter (scoring.proto header).
pub async fn is_known_defaulter(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<bool, sqlx::Error> {
    Ok(credit_party(conn, &customer_id.to_string())
        .await?
        .is_some_and(|(_, defaulter)| defaulter))
}

/// (size, known defaulters) of the customer's identity component; `None`: a component of one.
pub async fn component(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<(u64, u64)>, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT s.size, s.defaulters FROM identity_components c \
         JOIN identity_component_stats s USING (component_id) WHERE c.customer_id = $1",
    )
    .bind(customer_id)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(size, defaulters)| {
        (
            u64::try_from(size).unwrap_or(1),
            u64::try_from(defaulters).unwrap_or(0),
        )
    }))
}

/// The latest months with behaviour: the window's and one before it, which tells the
/// window whether history starts earlier.
pub async fn behaviour_months(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Vec<MonthTotals>, sqlx::Error> {
    let rows: Vec<(NaiveDate, i64, i64, i64)> = sqlx::query_as(
        "SELECT month, income_fen, spend_fen, risky_spend_fen FROM behaviour_months \
         WHERE customer_id = $1 ORDER BY month DESC LIMIT $2",
    )
    .bind(customer_id)
    .bind(i64::from(WINDOW_MONTHS) + 1)
    .fetch_all(conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(month, income_fen, spend_fen, risky_spend_fen)| MonthTotals {
                month,
                income_fen,
                spend_fen,
                risky_spend_fen,
            },
        )
        .collect())
}

pub async fn distinct_lenders(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<u64, sqlx::Error> {
    let count: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM behaviour_counterparties WHERE customer_id = $1 AND category = $2",
    )
    .bind(customer_id)
    .bind(OTHER_LENDER)
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(count).unwrap_or(0))
}

pub async fn installment_outcomes(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Vec<RepaymentOutcomeKind>, sqlx::Error> {
    let codes: Vec<i16> =
        sqlx::query_scalar("SELECT outcome FROM installment_states WHERE customer_id = $1")
            .bind(customer_id)
            .fetch_all(conn)
            .await?;
    Ok(codes
        .into_iter()
        .filter_map(|code| RepaymentOutcomeKind::try_from(i32::from(code)).ok())
        .collect())
}

/// (limit, available) of the customer's line, in fen.
pub async fn credit_line(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<Option<(i64, i64)>, sqlx::Error> {
    sqlx::query_as("SELECT limit_fen, available_fen FROM credit_lines WHERE customer_id = $1")
        .bind(customer_id)
        .fetch_optional(conn)
        .await
}

/// The most customers any of the customer's devices, and any of its phones, was seen
/// with (itself included); 0 when none was seen.
pub async fn customers_per_identifier(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<(u64, u64), sqlx::Error> {
    let rows: Vec<(i16, i64)> = sqlx::query_as(
        "SELECT l.kind, max(i.customers) FROM identity_links l \
         JOIN identifier_customers i USING (kind, identifier) \
         WHERE l.customer_id = $1 GROUP BY l.kind",
    )
    .bind(customer_id)
    .fetch_all(conn)
    .await?;
    let of = |kind: IdentifierKind| {
        rows.iter()
            .find(|(code, _)| *code == kind as i16)
            .map_or(0, |(_, count)| u64::try_from(*count).unwrap_or(0))
    };
    Ok((of(IdentifierKind::Device), of(IdentifierKind::Phone)))
}
