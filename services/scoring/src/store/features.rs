//! Reads of one customer's feature inputs: index range scans on its own rows and its
//! two-hop neighbourhood, never a scan of the signal logs.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
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

/// What the anti-fraud rules read from Postgres (fraud.rs), besides the velocity
/// counters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FraudFacts {
    /// (identifier kind, customers) of the customer's most shared identifier.
    pub most_shared: Option<(i16, i64)>,
    /// Customers in its identity component (1 without one).
    pub component_size: i64,
    /// Confirmed frauds among the other members of its identity component.
    pub ring_confirmed: i64,
    /// Blacklisted kinds hit (0 = the customer id itself), ascending, at most 4.
    pub blacklisted: Vec<i16>,
    /// Drawdowns only: the latest approved LIMIT_INCREASE in the window (decide time,
    /// offered limit).
    pub increase: Option<(DateTime<Utc>, Option<i64>)>,
    /// Drawdowns only: distinct loans with an EARLY outcome in the cycling window.
    pub early_loans: i64,
}

/// The drawdown rules' windows; `None` for other purposes (their reads are skipped).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DrawdownWindows {
    pub now: DateTime<Utc>,
    pub increase_hours: i32,
    pub cycling_days: i32,
}

/// The stored idempotency record of a request key, if any.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredKey {
    pub same_body: bool,
    pub response: Option<Vec<u8>>,
}

/// Everything Evaluate reads about one customer besides its neighbourhood, from one
/// statement (one snapshot, one round trip).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CustomerInputs {
    pub scalars: CustomerScalars,
    /// Latest first: the window's months and one before it, which tells the window
    /// whether history starts earlier.
    pub months: Vec<MonthTotals>,
    /// Every instalment's state.
    pub outcomes: Vec<RepaymentOutcomeKind>,
    pub fraud: FraudFacts,
    /// The request key's record, when a key was given.
    pub stored: Option<StoredKey>,
}

impl CustomerInputs {
    /// Whether an instalment is currently MISSED (past due and unpaid).
    pub fn overdue(&self) -> bool {
        self.outcomes.contains(&RepaymentOutcomeKind::Missed)
    }

    /// Whether the customer is a known defaulter (scoring.proto header).
    pub fn known_defaulter(&self) -> bool {
        self.scalars.credit.is_some_and(|(_, defaulter)| defaulter)
    }
}

/// An idempotency key to look up beside the inputs (platform::idempotency's table).
#[derive(Debug, Clone, Copy)]
pub struct KeyLookup<'a> {
    pub caller: &'a str,
    pub rpc: &'a str,
    pub request_id: &'a str,
    pub body: &'a [u8],
}

#[derive(sqlx::FromRow)]
struct InputsRow {
    pagerank: Option<f64>,
    max_days: Option<i32>,
    defaulter: Option<bool>,
    size: Option<i64>,
    defaulters: Option<i64>,
    lenders: i64,
    limit_fen: Option<i64>,
    available_fen: Option<i64>,
    device: Option<i64>,
    phone: Option<i64>,
    months: Option<Vec<NaiveDate>>,
    incomes: Option<Vec<i64>>,
    spends: Option<Vec<i64>>,
    risky: Option<Vec<i64>>,
    outcomes: Vec<i16>,
    shared_kind: Option<i16>,
    shared_customers: Option<i64>,
    ring_confirmed: i64,
    blacklisted: Vec<i16>,
    key_found: Option<bool>,
    same_body: Option<bool>,
    response: Option<Vec<u8>>,
}

/// Reads [`CustomerInputs`] in one statement: the customer's scalars (PageRank, credit
/// party, component, lenders, line, identifier counts), its latest months, its
/// instalment states, the anti-fraud rules' reads
/// (the drawdown ones, with `drawdown`, in a second statement) and, with `key`, its
/// idempotency record.
/// Every part is an index lookup on the customer's own rows.
pub async fn customer_inputs(
    conn: &mut PgConnection,
    customer_id: Uuid,
    drawdown: Option<DrawdownWindows>,
    key: Option<KeyLookup<'_>>,
) -> Result<CustomerInputs, sqlx::Error> {
    let row: InputsRow = sqlx::query_as(
        "SELECT \
             (SELECT score FROM pagerank_scores WHERE party_id = $1::text) AS pagerank, \
             p.max_days_past_due AS max_days, p.defaulter_since IS NOT NULL AS defaulter, \
             s.size, s.defaulters, \
             (SELECT count(*) FROM behaviour_counterparties \
                  WHERE customer_id = $1 AND category = $2) AS lenders, \
             l.limit_fen, l.available_fen, \
             (SELECT max(i.customers) FROM identity_links k \
                  JOIN identifier_customers i USING (kind, identifier) \
                  WHERE k.customer_id = $1 AND k.kind = $3) AS device, \
             (SELECT max(i.customers) FROM identity_links k \
                  JOIN identifier_customers i USING (kind, identifier) \
                  WHERE k.customer_id = $1 AND k.kind = $4) AS phone, \
             mo.months, mo.incomes, mo.spends, mo.risky, \
             ARRAY(SELECT outcome FROM installment_states WHERE customer_id = $1) AS outcomes, \
             sh.kind AS shared_kind, sh.customers AS shared_customers, \
             (SELECT count(*) FROM fraud_confirmations f \
                  JOIN identity_components o ON o.customer_id = f.customer_id \
                  WHERE o.component_id = c.component_id AND f.customer_id <> $1) \
                  AS ring_confirmed, \
             ARRAY(SELECT b.kind FROM fraud_blacklist b \
                  WHERE (b.kind = 0 AND b.identifier = $1::text) \
                     OR (b.kind, b.identifier) IN \
                        (SELECT kind, identifier FROM identity_links WHERE customer_id = $1) \
                  ORDER BY b.kind LIMIT 4) AS blacklisted, \
             ik.request_id IS NOT NULL AS key_found, ik.request_hash = sha256($8) AS same_body, \
             ik.response \
         FROM (SELECT $1::uuid AS customer_id) AS me \
         LEFT JOIN credit_parties p ON p.party_id = me.customer_id::text \
         LEFT JOIN identity_components c ON c.customer_id = me.customer_id \
         LEFT JOIN identity_component_stats s ON s.component_id = c.component_id \
         LEFT JOIN credit_lines l ON l.customer_id = me.customer_id \
         LEFT JOIN LATERAL (SELECT array_agg(month ORDER BY month DESC) AS months, \
                  array_agg(income_fen ORDER BY month DESC) AS incomes, \
                  array_agg(spend_fen ORDER BY month DESC) AS spends, \
                  array_agg(risky_spend_fen ORDER BY month DESC) AS risky \
              FROM (SELECT month, income_fen, spend_fen, risky_spend_fen FROM behaviour_months \
                  WHERE customer_id = $1 ORDER BY month DESC LIMIT $9) AS latest) AS mo ON true \
         LEFT JOIN LATERAL (SELECT k.kind, i.customers FROM identity_links k \
                  JOIN identifier_customers i USING (kind, identifier) \
                  WHERE k.customer_id = $1 ORDER BY i.customers DESC, k.kind LIMIT 1) AS sh ON true \
         LEFT JOIN idempotency_keys ik \
              ON ik.caller = $5 AND ik.rpc = $6 AND ik.request_id = $7",
    )
    .bind(customer_id)
    .bind(OTHER_LENDER)
    .bind(IdentifierKind::Device as i16)
    .bind(IdentifierKind::Phone as i16)
    .bind(key.map(|k| k.caller))
    .bind(key.map(|k| k.rpc))
    .bind(key.map(|k| k.request_id))
    .bind(key.map(|k| k.body))
    .bind(i64::from(WINDOW_MONTHS) + 1)
    .fetch_one(&mut *conn)
    .await?;
    // Drawdowns only, in their own statement: a parameter switching these reads off
    // inside the statement above kept Postgres from settling on its generic plan, and
    // planning that statement on every call cost more than running it.
    let (increase, early_loans) = match drawdown {
        Some(windows) => drawdown_facts(conn, customer_id, windows).await?,
        None => (None, 0),
    };
    let count = |value: i64| u64::try_from(value).unwrap_or(0);
    let months = match (row.months, row.incomes, row.spends, row.risky) {
        (Some(months), Some(incomes), Some(spends), Some(risky)) => months
            .into_iter()
            .zip(incomes)
            .zip(spends)
            .zip(risky)
            .map(
                |(((month, income_fen), spend_fen), risky_spend_fen)| MonthTotals {
                    month,
                    income_fen,
                    spend_fen,
                    risky_spend_fen,
                },
            )
            .collect(),
        _ => Vec::new(),
    };
    Ok(CustomerInputs {
        scalars: CustomerScalars {
            pagerank: row.pagerank.unwrap_or(0.0),
            credit: row
                .max_days
                .map(|days| (days, row.defaulter.unwrap_or(false))),
            component: row
                .size
                .map(|size| (count(size).max(1), count(row.defaulters.unwrap_or(0)))),
            distinct_lenders: count(row.lenders),
            line: row
                .limit_fen
                .map(|limit| (limit, row.available_fen.unwrap_or(0))),
            customers_per_device: row.device.map_or(0, count),
            customers_per_phone: row.phone.map_or(0, count),
        },
        months,
        outcomes: row
            .outcomes
            .into_iter()
            .filter_map(|code| RepaymentOutcomeKind::try_from(i32::from(code)).ok())
            .collect(),
        fraud: FraudFacts {
            most_shared: row.shared_kind.zip(row.shared_customers),
            component_size: row.size.unwrap_or(1),
            ring_confirmed: row.ring_confirmed,
            blacklisted: row.blacklisted,
            increase,
            early_loans,
        },
        stored: (row.key_found == Some(true)).then(|| StoredKey {
            same_body: row.same_body.unwrap_or(false),
            response: row.response,
        }),
    })
}

/// The drawdown rules' reads: the latest approved LIMIT_INCREASE in the window (decide
/// time, offered limit) and the distinct loans with an EARLY outcome in the cycling
/// window.
async fn drawdown_facts(
    conn: &mut PgConnection,
    customer_id: Uuid,
    windows: DrawdownWindows,
) -> Result<(Option<(DateTime<Utc>, Option<i64>)>, i64), sqlx::Error> {
    use microloan_proto::common::v1::{DecisionOutcome, DecisionPurpose};
    let (time, offered, loans): (Option<DateTime<Utc>>, Option<i64>, i64) = sqlx::query_as(
        "SELECT inc.decide_time, inc.offered_limit_fen, \
             (SELECT count(DISTINCT loan_id) FROM repayment_outcomes \
                  WHERE customer_id = $1 AND outcome = $2 \
                    AND observe_time > $3 - make_interval(days => $5)) \
         FROM (SELECT 1) AS one \
         LEFT JOIN LATERAL (SELECT decide_time, offered_limit_fen FROM decisions \
                  WHERE customer_id = $1 AND purpose = $6 AND outcome = $7 \
                    AND decide_time > $3 - make_interval(hours => $4) \
                  ORDER BY decide_time DESC LIMIT 1) AS inc ON true",
    )
    .bind(customer_id)
    .bind(RepaymentOutcomeKind::Early as i16)
    .bind(windows.now)
    .bind(windows.increase_hours)
    .bind(windows.cycling_days)
    .bind(DecisionPurpose::LimitIncrease as i16)
    .bind(DecisionOutcome::Approved as i16)
    .fetch_one(conn)
    .await?;
    Ok((time.map(|time| (time, offered)), loans))
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
