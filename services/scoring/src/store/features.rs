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
            "SELECT a.party_id, a.neighbour_id FROM unnest($1::text[]) AS n(id) \
             JOIN social_adjacency a ON a.party_id = n.id LIMIT $2",
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
            "SELECT p.party_id, p.defaulter_since IS NOT NULL FROM unnest($1::text[]) AS n(id) \
             JOIN credit_parties p ON p.party_id = n.id",
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

/// The customer's own scalar inputs, read in one round trip.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CustomerScalars {
    /// The last PageRank refresh's score; 0 for a party it did not reach.
    pub pagerank: f64,
    /// (worst days past due, known defaulter) if the customer has a credit history.
    pub credit: Option<(i32, bool)>,
    /// (size, known defaulters) of its identity component; `None`: a component of one.
    pub component: Option<(u64, u64)>,
    pub distinct_lenders: u64,
    /// (limit, available) of its line, fen.
    pub line: Option<(i64, i64)>,
    /// Most customers on any of its devices / phone hashes (itself included); 0 if none.
    pub customers_per_device: u64,
    pub customers_per_phone: u64,
}

type ScalarsRow = (
    Option<f64>,
    Option<i32>,
    Option<bool>,
    Option<i64>,
    Option<i64>,
    i64,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
);

pub async fn customer_scalars(
    conn: &mut PgConnection,
    customer_id: Uuid,
) -> Result<CustomerScalars, sqlx::Error> {
    let row: ScalarsRow = sqlx::query_as(
        "SELECT \
             (SELECT score FROM pagerank_scores WHERE party_id = $1::text), \
             p.max_days_past_due, p.defaulter_since IS NOT NULL, \
             s.size, s.defaulters, \
             (SELECT count(*) FROM behaviour_counterparties \
                  WHERE customer_id = $1 AND category = $2), \
             l.limit_fen, l.available_fen, \
             (SELECT max(i.customers) FROM identity_links k \
                  JOIN identifier_customers i USING (kind, identifier) \
                  WHERE k.customer_id = $1 AND k.kind = $3), \
             (SELECT max(i.customers) FROM identity_links k \
                  JOIN identifier_customers i USING (kind, identifier) \
                  WHERE k.customer_id = $1 AND k.kind = $4) \
         FROM (SELECT $1::uuid AS customer_id) AS me \
         LEFT JOIN credit_parties p ON p.party_id = me.customer_id::text \
         LEFT JOIN identity_components c ON c.customer_id = me.customer_id \
         LEFT JOIN identity_component_stats s ON s.component_id = c.component_id \
         LEFT JOIN credit_lines l ON l.customer_id = me.customer_id",
    )
    .bind(customer_id)
    .bind(OTHER_LENDER)
    .bind(IdentifierKind::Device as i16)
    .bind(IdentifierKind::Phone as i16)
    .fetch_one(conn)
    .await?;
    let count = |value: i64| u64::try_from(value).unwrap_or(0);
    let (pagerank, max_days, defaulter, size, defaulters, lenders, limit, available, device, phone) =
        row;
    Ok(CustomerScalars {
        pagerank: pagerank.unwrap_or(0.0),
        credit: max_days.map(|days| (days, defaulter.unwrap_or(false))),
        component: size.map(|size| (count(size).max(1), count(defaulters.unwrap_or(0)))),
        distinct_lenders: count(lenders),
        line: limit.map(|limit| (limit, available.unwrap_or(0))),
        customers_per_device: device.map_or(0, count),
        customers_per_phone: phone.map_or(0, count),
    })
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
