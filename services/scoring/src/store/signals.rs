//! Applies a batch of valid signals in the caller's transaction: the raw logs, then the
//! incremental state each signal touches (adjacency, monthly totals, identifier links
//! and components, instalment states, known defaulters). Cost per signal: see
//! docs/scoring-features.md.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, NaiveDate, Utc};
use microloan_proto::scoring::v1::{BehaviourCategory, BehaviourFlow, SocialEdgeKind};
use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::features::history::{InstallmentState, merge_installment_state};
use crate::{
    features::behaviour::is_risky,
    signals::{Behaviour, Edge, Outcome, Sighting, Signals, shanghai_month},
};

use super::COMPONENTS_LOCK;

/// What applying a batch changed beyond its own rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied {
    /// Customers that became known defaulters.
    pub new_defaulters: u64,
    /// Identity components merged away.
    pub components_merged: u64,
}

/// Takes [`COMPONENTS_LOCK`] for the rest of the transaction (re-entrant: taking it
/// again in the same transaction only counts).
pub async fn lock_components(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(COMPONENTS_LOCK)
        .execute(conn)
        .await?;
    Ok(())
}

/// Whether any of `sightings` links an identifier to its customer for the first time.
pub async fn has_new_link(
    conn: &mut PgConnection,
    sightings: &[Sighting],
) -> Result<bool, sqlx::Error> {
    let kinds: Vec<i16> = sightings.iter().map(|s| s.kind as i16).collect();
    let identifiers: Vec<&str> = sightings.iter().map(|s| s.identifier.as_str()).collect();
    let customers: Vec<Uuid> = sightings.iter().map(|s| s.customer_id).collect();
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM unnest($1::int2[], $2::text[], $3::uuid[]) \
             AS u(kind, identifier, customer_id) \
         WHERE NOT EXISTS (SELECT 1 FROM identity_links l WHERE l.kind = u.kind \
             AND l.identifier = u.identifier AND l.customer_id = u.customer_id))",
    )
    .bind(&kinds)
    .bind(&identifiers)
    .bind(&customers)
    .fetch_one(conn)
    .await
}

/// When [`apply_signals`] takes [`COMPONENTS_LOCK`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locking {
    /// Before any other write whenever the batch has sightings or outcomes: for
    /// IngestSignals and the events consumer, whose transactions may write identity
    /// and credit rows in any order across several calls (the consumer applies many
    /// events per transaction) and so must all hold the lock before their first such
    /// row, or never wait for it.
    First,
    /// Only for a new link or a new defaulter, after the other writes: for Evaluate,
    /// whose sightings touch only its own customer's links (it takes the lock first
    /// itself when a context identifier is new, see `decision.rs`).
    WhenNeeded,
}

/// Applies `signals` with [`Locking::First`] (IngestSignals, the consumer).
pub async fn apply_signals(
    conn: &mut PgConnection,
    signals: &Signals,
) -> Result<Applied, sqlx::Error> {
    apply_signals_locking(conn, signals, Locking::First).await
}

/// Applies `signals`; every statement writes its rows in key order, and the identity
/// components and defaulter counts are maintained under [`COMPONENTS_LOCK`] (see
/// [`Locking`]): together these keep concurrent batches, Evaluates and consumer
/// transactions from deadlocking.
pub async fn apply_signals_locking(
    conn: &mut PgConnection,
    signals: &Signals,
    locking: Locking,
) -> Result<Applied, sqlx::Error> {
    if locking == Locking::First && !(signals.sightings.is_empty() && signals.outcomes.is_empty()) {
        lock_components(conn).await?;
    }
    insert_social_edges(conn, &signals.edges).await?;
    upsert_adjacency(conn, &signals.edges).await?;
    insert_behaviour_events(conn, &signals.behaviours).await?;
    upsert_behaviour_months(conn, &signals.behaviours).await?;
    insert_counterparties(conn, &signals.behaviours).await?;
    insert_identity_sightings(conn, &signals.sightings).await?;
    let new_links = upsert_identity_links(conn, &signals.sightings).await?;
    if !new_links.is_empty() {
        count_identifier_customers(conn, &new_links).await?;
    }
    insert_repayment_outcomes(conn, &signals.outcomes).await?;
    upsert_installment_states(conn, &signals.outcomes).await?;
    // Last, under COMPONENTS_LOCK (taken first already, or now for Evaluate's own
    // customer: nothing after it locks a row that a transaction waiting for the lock
    // may already hold).
    let mut applied = Applied::default();
    if !new_links.is_empty() {
        applied.components_merged = link_components(conn, &new_links).await?;
    }
    applied.new_defaulters = upsert_credit_parties(conn, &signals.outcomes).await?;
    Ok(applied)
}

async fn insert_social_edges(conn: &mut PgConnection, edges: &[Edge]) -> Result<(), sqlx::Error> {
    if edges.is_empty() {
        return Ok(());
    }
    let sources: Vec<&str> = edges.iter().map(|edge| edge.source.as_str()).collect();
    let targets: Vec<&str> = edges.iter().map(|edge| edge.target.as_str()).collect();
    let kinds: Vec<i16> = edges.iter().map(|edge| edge.kind as i16).collect();
    let weights: Vec<Decimal> = edges.iter().map(|edge| edge.weight).collect();
    let times: Vec<DateTime<Utc>> = edges.iter().map(|edge| edge.occur_time).collect();
    sqlx::query(
        "INSERT INTO social_edges (source_party_id, target_party_id, kind, weight, occur_time) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::int2[], $4::numeric[], $5::timestamptz[])",
    )
    .bind(&sources)
    .bind(&targets)
    .bind(&kinds)
    .bind(&weights)
    .bind(&times)
    .execute(conn)
    .await?;
    Ok(())
}

/// What a batch adds to one (party, neighbour) adjacency row.
#[derive(Debug, Clone, PartialEq)]
pub struct AdjacencyDelta {
    pub transfer_fen: Decimal,
    pub red_packet_fen: Decimal,
    pub messages: Decimal,
    pub calls: Decimal,
    pub contact: i16,
    pub group_member: i16,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// The batch's edges folded per (party, neighbour), both directions, in key order (so
/// concurrent batches lock shared rows in the same order).
pub fn adjacency_deltas(edges: &[Edge]) -> BTreeMap<(String, String), AdjacencyDelta> {
    let mut deltas: BTreeMap<(String, String), AdjacencyDelta> = BTreeMap::new();
    for edge in edges {
        for (party, neighbour) in [(&edge.source, &edge.target), (&edge.target, &edge.source)] {
            let delta = deltas
                .entry((party.clone(), neighbour.clone()))
                .or_insert_with(|| AdjacencyDelta {
                    transfer_fen: Decimal::ZERO,
                    red_packet_fen: Decimal::ZERO,
                    messages: Decimal::ZERO,
                    calls: Decimal::ZERO,
                    contact: 0,
                    group_member: 0,
                    first_seen: edge.occur_time,
                    last_seen: edge.occur_time,
                });
            match edge.kind {
                SocialEdgeKind::Transfer => delta.transfer_fen += edge.weight,
                SocialEdgeKind::RedPacket => delta.red_packet_fen += edge.weight,
                SocialEdgeKind::Message => delta.messages += edge.weight,
                SocialEdgeKind::Call => delta.calls += edge.weight,
                SocialEdgeKind::Contact => delta.contact = 1,
                SocialEdgeKind::GroupMember => delta.group_member = 1,
                SocialEdgeKind::Unspecified => {}
            }
            delta.first_seen = delta.first_seen.min(edge.occur_time);
            delta.last_seen = delta.last_seen.max(edge.occur_time);
        }
    }
    deltas
}

async fn upsert_adjacency(conn: &mut PgConnection, edges: &[Edge]) -> Result<(), sqlx::Error> {
    if edges.is_empty() {
        return Ok(());
    }
    let deltas = adjacency_deltas(edges);
    let mut parties = Vec::with_capacity(deltas.len());
    let mut neighbours = Vec::with_capacity(deltas.len());
    let mut columns: [Vec<Decimal>; 4] = Default::default();
    let mut flags: [Vec<i16>; 2] = Default::default();
    let mut firsts = Vec::with_capacity(deltas.len());
    let mut lasts = Vec::with_capacity(deltas.len());
    for ((party, neighbour), delta) in &deltas {
        parties.push(party.as_str());
        neighbours.push(neighbour.as_str());
        columns[0].push(delta.transfer_fen);
        columns[1].push(delta.red_packet_fen);
        columns[2].push(delta.messages);
        columns[3].push(delta.calls);
        flags[0].push(delta.contact);
        flags[1].push(delta.group_member);
        firsts.push(delta.first_seen);
        lasts.push(delta.last_seen);
    }
    sqlx::query(
        "INSERT INTO social_adjacency AS a (party_id, neighbour_id, transfer_fen, red_packet_fen, \
             messages, calls, contact, group_member, first_seen_time, last_seen_time) \
         SELECT * FROM unnest($1::text[], $2::text[], $3::numeric[], $4::numeric[], \
             $5::numeric[], $6::numeric[], $7::int2[], $8::int2[], $9::timestamptz[], \
             $10::timestamptz[]) \
         ON CONFLICT (party_id, neighbour_id) DO UPDATE SET \
             transfer_fen = a.transfer_fen + EXCLUDED.transfer_fen, \
             red_packet_fen = a.red_packet_fen + EXCLUDED.red_packet_fen, \
             messages = a.messages + EXCLUDED.messages, \
             calls = a.calls + EXCLUDED.calls, \
             contact = GREATEST(a.contact, EXCLUDED.contact), \
             group_member = GREATEST(a.group_member, EXCLUDED.group_member), \
             first_seen_time = LEAST(a.first_seen_time, EXCLUDED.first_seen_time), \
             last_seen_time = GREATEST(a.last_seen_time, EXCLUDED.last_seen_time)",
    )
    .bind(&parties)
    .bind(&neighbours)
    .bind(&columns[0])
    .bind(&columns[1])
    .bind(&columns[2])
    .bind(&columns[3])
    .bind(&flags[0])
    .bind(&flags[1])
    .bind(&firsts)
    .bind(&lasts)
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_behaviour_events(
    conn: &mut PgConnection,
    events: &[Behaviour],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let customers: Vec<Uuid> = events.iter().map(|event| event.customer_id).collect();
    let flows: Vec<i16> = events.iter().map(|event| event.flow as i16).collect();
    let categories: Vec<i16> = events.iter().map(|event| event.category as i16).collect();
    let amounts: Vec<i64> = events.iter().map(|event| event.amount_fen).collect();
    let times: Vec<DateTime<Utc>> = events.iter().map(|event| event.occur_time).collect();
    let counterparties: Vec<Option<&str>> = events
        .iter()
        .map(|event| event.counterparty_id.as_deref())
        .collect();
    sqlx::query(
        "INSERT INTO behaviour_events (customer_id, flow, category, amount_fen, occur_time, \
             counterparty_id) \
         SELECT * FROM unnest($1::uuid[], $2::int2[], $3::int2[], $4::int8[], \
             $5::timestamptz[], $6::text[])",
    )
    .bind(&customers)
    .bind(&flows)
    .bind(&categories)
    .bind(&amounts)
    .bind(&times)
    .bind(&counterparties)
    .execute(conn)
    .await?;
    Ok(())
}

/// Monthly totals a batch adds: (income, spend, risky spend, events) per (customer, month).
pub fn month_deltas(events: &[Behaviour]) -> BTreeMap<(Uuid, NaiveDate), [i64; 4]> {
    let mut deltas: BTreeMap<(Uuid, NaiveDate), [i64; 4]> = BTreeMap::new();
    for event in events {
        let totals = deltas
            .entry((event.customer_id, shanghai_month(event.occur_time)))
            .or_default();
        match event.flow {
            BehaviourFlow::Income => totals[0] += event.amount_fen,
            _ => {
                totals[1] += event.amount_fen;
                if is_risky(event.category) {
                    totals[2] += event.amount_fen;
                }
            }
        }
        totals[3] += 1;
    }
    deltas
}

async fn upsert_behaviour_months(
    conn: &mut PgConnection,
    events: &[Behaviour],
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    let deltas = month_deltas(events);
    let customers: Vec<Uuid> = deltas.keys().map(|(customer, _)| *customer).collect();
    let months: Vec<NaiveDate> = deltas.keys().map(|(_, month)| *month).collect();
    let column = |index: usize| -> Vec<i64> { deltas.values().map(|row| row[index]).collect() };
    sqlx::query(
        "INSERT INTO behaviour_months AS m (customer_id, month, income_fen, spend_fen, \
             risky_spend_fen, events) \
         SELECT * FROM unnest($1::uuid[], $2::date[], $3::int8[], $4::int8[], $5::int8[], \
             $6::int8[]) \
         ON CONFLICT (customer_id, month) DO UPDATE SET \
             income_fen = m.income_fen + EXCLUDED.income_fen, \
             spend_fen = m.spend_fen + EXCLUDED.spend_fen, \
             risky_spend_fen = m.risky_spend_fen + EXCLUDED.risky_spend_fen, \
             events = m.events + EXCLUDED.events",
    )
    .bind(&customers)
    .bind(&months)
    .bind(column(0))
    .bind(column(1))
    .bind(column(2))
    .bind(column(3))
    .execute(conn)
    .await?;
    Ok(())
}

async fn insert_counterparties(
    conn: &mut PgConnection,
    events: &[Behaviour],
) -> Result<(), sqlx::Error> {
    let mut first_seen: BTreeMap<(Uuid, i16, &str), DateTime<Utc>> = BTreeMap::new();
    for event in events {
        if let Some(counterparty) = &event.counterparty_id {
            let key = (
                event.customer_id,
                event.category as i16,
                counterparty.as_str(),
            );
            let seen = first_seen.entry(key).or_insert(event.occur_time);
            *seen = (*seen).min(event.occur_time);
        }
    }
    if first_seen.is_empty() {
        return Ok(());
    }
    let customers: Vec<Uuid> = first_seen.keys().map(|key| key.0).collect();
    let categories: Vec<i16> = first_seen.keys().map(|key| key.1).collect();
    let counterparties: Vec<&str> = first_seen.keys().map(|key| key.2).collect();
    let times: Vec<DateTime<Utc>> = first_seen.values().copied().collect();
    sqlx::query(
        "INSERT INTO behaviour_counterparties AS c (customer_id, category, counterparty_id, \
             first_seen_time) \
         SELECT * FROM unnest($1::uuid[], $2::int2[], $3::text[], $4::timestamptz[]) \
         ON CONFLICT (customer_id, category, counterparty_id) DO UPDATE SET \
             first_seen_time = LEAST(c.first_seen_time, EXCLUDED.first_seen_time)",
    )
    .bind(&customers)
    .bind(&categories)
    .bind(&counterparties)
    .bind(&times)
    .execute(conn)
    .await?;
    Ok(())
}

/// The category code of OTHER_LENDER, as stored.
pub const OTHER_LENDER: i16 = BehaviourCategory::OtherLender as i16;

async fn insert_identity_sightings(
    conn: &mut PgConnection,
    sightings: &[Sighting],
) -> Result<(), sqlx::Error> {
    if sightings.is_empty() {
        return Ok(());
    }
    let customers: Vec<Uuid> = sightings.iter().map(|s| s.customer_id).collect();
    let kinds: Vec<i16> = sightings.iter().map(|s| s.kind as i16).collect();
    let identifiers: Vec<&str> = sightings.iter().map(|s| s.identifier.as_str()).collect();
    let contexts: Vec<i16> = sightings.iter().map(|s| s.context as i16).collect();
    let times: Vec<DateTime<Utc>> = sightings.iter().map(|s| s.observe_time).collect();
    sqlx::query(
        "INSERT INTO identity_sightings (customer_id, kind, identifier, context, observe_time) \
         SELECT * FROM unnest($1::uuid[], $2::int2[], $3::text[], $4::int2[], $5::timestamptz[])",
    )
    .bind(&customers)
    .bind(&kinds)
    .bind(&identifiers)
    .bind(&contexts)
    .bind(&times)
    .execute(conn)
    .await?;
    Ok(())
}

/// An identifier seen with a customer for the first time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct NewLink {
    pub kind: i16,
    pub identifier: String,
    pub customer_id: Uuid,
}

async fn upsert_identity_links(
    conn: &mut PgConnection,
    sightings: &[Sighting],
) -> Result<Vec<NewLink>, sqlx::Error> {
    // (kind, identifier, customer) → (first seen, last seen, sightings).
    type Seen = (DateTime<Utc>, DateTime<Utc>, i64);
    let mut links: BTreeMap<(i16, &str, Uuid), Seen> = BTreeMap::new();
    for sighting in sightings {
        let key = (
            sighting.kind as i16,
            sighting.identifier.as_str(),
            sighting.customer_id,
        );
        let time = sighting.observe_time;
        let entry = links.entry(key).or_insert((time, time, 0));
        entry.0 = entry.0.min(time);
        entry.1 = entry.1.max(time);
        entry.2 += 1;
    }
    if links.is_empty() {
        return Ok(Vec::new());
    }
    let kinds: Vec<i16> = links.keys().map(|key| key.0).collect();
    let identifiers: Vec<&str> = links.keys().map(|key| key.1).collect();
    let customers: Vec<Uuid> = links.keys().map(|key| key.2).collect();
    let firsts: Vec<DateTime<Utc>> = links.values().map(|value| value.0).collect();
    let lasts: Vec<DateTime<Utc>> = links.values().map(|value| value.1).collect();
    let counts: Vec<i64> = links.values().map(|value| value.2).collect();
    let rows: Vec<(i16, String, Uuid, bool)> = sqlx::query_as(
        "INSERT INTO identity_links AS l (kind, identifier, customer_id, first_seen_time, \
             last_seen_time, sightings) \
         SELECT * FROM unnest($1::int2[], $2::text[], $3::uuid[], $4::timestamptz[], \
             $5::timestamptz[], $6::int8[]) \
         ON CONFLICT (kind, identifier, customer_id) DO UPDATE SET \
             first_seen_time = LEAST(l.first_seen_time, EXCLUDED.first_seen_time), \
             last_seen_time = GREATEST(l.last_seen_time, EXCLUDED.last_seen_time), \
             sightings = l.sightings + EXCLUDED.sightings \
         RETURNING kind, identifier, customer_id, (xmax = 0) AS inserted",
    )
    .bind(&kinds)
    .bind(&identifiers)
    .bind(&customers)
    .bind(&firsts)
    .bind(&lasts)
    .bind(&counts)
    .fetch_all(conn)
    .await?;
    let mut new_links: Vec<NewLink> = rows
        .into_iter()
        .filter(|row| row.3)
        .map(|(kind, identifier, customer_id, _)| NewLink {
            kind,
            identifier,
            customer_id,
        })
        .collect();
    new_links.sort();
    Ok(new_links)
}

async fn count_identifier_customers(
    conn: &mut PgConnection,
    new_links: &[NewLink],
) -> Result<(), sqlx::Error> {
    let mut added: BTreeMap<(i16, &str), i64> = BTreeMap::new();
    for link in new_links {
        *added
            .entry((link.kind, link.identifier.as_str()))
            .or_default() += 1;
    }
    let kinds: Vec<i16> = added.keys().map(|key| key.0).collect();
    let identifiers: Vec<&str> = added.keys().map(|key| key.1).collect();
    let counts: Vec<i64> = added.values().copied().collect();
    sqlx::query(
        "INSERT INTO identifier_customers AS i (kind, identifier, customers) \
         SELECT * FROM unnest($1::int2[], $2::text[], $3::int8[]) \
         ON CONFLICT (kind, identifier) DO UPDATE SET customers = i.customers + EXCLUDED.customers",
    )
    .bind(&kinds)
    .bind(&identifiers)
    .bind(&counts)
    .execute(conn)
    .await?;
    Ok(())
}

/// Joins the components of every customer sharing an identifier of a new link
/// (union-find by size: the smaller components are relabelled). Returns how many
/// components were merged away.
async fn link_components(
    conn: &mut PgConnection,
    new_links: &[NewLink],
) -> Result<u64, sqlx::Error> {
    lock_components(conn).await?;
    let identifiers: BTreeSet<(i16, &str)> = new_links
        .iter()
        .map(|link| (link.kind, link.identifier.as_str()))
        .collect();
    let kinds: Vec<i16> = identifiers.iter().map(|key| key.0).collect();
    let names: Vec<&str> = identifiers.iter().map(|key| key.1).collect();
    let members: Vec<(i16, String, Uuid)> = sqlx::query_as(
        "SELECT l.kind, l.identifier, l.customer_id FROM identity_links l \
         JOIN unnest($1::int2[], $2::text[]) AS u(kind, identifier) USING (kind, identifier) \
         ORDER BY 1, 2, 3",
    )
    .bind(&kinds)
    .bind(&names)
    .fetch_all(&mut *conn)
    .await?;
    let customers: Vec<Uuid> = members
        .iter()
        .map(|member| member.2)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    // A customer's first identifier: it becomes a component of one.
    sqlx::query(
        "WITH created AS ( \
             INSERT INTO identity_components (customer_id, component_id) \
             SELECT c, c FROM unnest($1::uuid[]) AS c \
             ON CONFLICT (customer_id) DO NOTHING RETURNING customer_id) \
         INSERT INTO identity_component_stats (component_id, size, defaulters) \
         SELECT created.customer_id, 1, \
             (EXISTS (SELECT 1 FROM credit_parties p WHERE p.party_id = created.customer_id::text \
                 AND p.defaulter_since IS NOT NULL))::int4::int8 \
         FROM created",
    )
    .bind(&customers)
    .execute(&mut *conn)
    .await?;
    let components: Vec<(Uuid, Uuid, i64)> = sqlx::query_as(
        "SELECT c.customer_id, c.component_id, s.size FROM identity_components c \
         JOIN identity_component_stats s USING (component_id) WHERE c.customer_id = ANY($1)",
    )
    .bind(&customers)
    .fetch_all(&mut *conn)
    .await?;
    let mut index_of: HashMap<Uuid, usize> = HashMap::new();
    let mut ids: Vec<Uuid> = Vec::new();
    let mut sizes: Vec<u64> = Vec::new();
    let mut component_of: HashMap<Uuid, usize> = HashMap::new();
    for (customer, component, size) in &components {
        let index = *index_of.entry(*component).or_insert_with(|| {
            ids.push(*component);
            sizes.push(u64::try_from(*size).unwrap_or(1));
            ids.len() - 1
        });
        component_of.insert(*customer, index);
    }
    let mut groups: BTreeMap<(i16, &str), Vec<usize>> = BTreeMap::new();
    for (kind, identifier, customer) in &members {
        if let Some(index) = component_of.get(customer) {
            groups
                .entry((*kind, identifier.as_str()))
                .or_default()
                .push(*index);
        }
    }
    let groups: Vec<Vec<usize>> = groups.into_values().collect();
    let merged = crate::features::graph::merges(sizes, &groups);
    if merged.is_empty() {
        return Ok(0);
    }
    let absorbed: Vec<Uuid> = merged.iter().map(|(child, _)| ids[*child]).collect();
    let roots: Vec<Uuid> = merged.iter().map(|(_, root)| ids[*root]).collect();
    sqlx::query(
        "UPDATE identity_components c SET component_id = m.root \
         FROM unnest($1::uuid[], $2::uuid[]) AS m(absorbed, root) \
         WHERE c.component_id = m.absorbed",
    )
    .bind(&absorbed)
    .bind(&roots)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "WITH moved AS ( \
             DELETE FROM identity_component_stats s \
             USING unnest($1::uuid[], $2::uuid[]) AS m(absorbed, root) \
             WHERE s.component_id = m.absorbed \
             RETURNING m.root, s.size, s.defaulters), \
         totals AS (SELECT root, sum(size) AS size, sum(defaulters) AS defaulters \
             FROM moved GROUP BY root) \
         UPDATE identity_component_stats s \
         SET size = s.size + totals.size, defaulters = s.defaulters + totals.defaulters \
         FROM totals WHERE s.component_id = totals.root",
    )
    .bind(&absorbed)
    .bind(&roots)
    .execute(&mut *conn)
    .await?;
    Ok(merged.len() as u64)
}

async fn insert_repayment_outcomes(
    conn: &mut PgConnection,
    outcomes: &[Outcome],
) -> Result<(), sqlx::Error> {
    if outcomes.is_empty() {
        return Ok(());
    }
    let customers: Vec<Uuid> = outcomes.iter().map(|o| o.customer_id).collect();
    let loans: Vec<Uuid> = outcomes.iter().map(|o| o.loan_id).collect();
    let sequences: Vec<i32> = outcomes.iter().map(|o| o.installment_sequence).collect();
    let due_dates: Vec<Option<NaiveDate>> = outcomes.iter().map(|o| o.due_date).collect();
    let kinds: Vec<i16> = outcomes.iter().map(|o| o.outcome as i16).collect();
    let days: Vec<i32> = outcomes.iter().map(|o| o.days_past_due).collect();
    let due: Vec<i64> = outcomes.iter().map(|o| o.amount_due_fen).collect();
    let paid: Vec<i64> = outcomes.iter().map(|o| o.amount_paid_fen).collect();
    let times: Vec<DateTime<Utc>> = outcomes.iter().map(|o| o.observe_time).collect();
    sqlx::query(
        "INSERT INTO repayment_outcomes (customer_id, loan_id, installment_sequence, due_date, \
             outcome, days_past_due, amount_due_fen, amount_paid_fen, observe_time) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int4[], $4::date[], $5::int2[], \
             $6::int4[], $7::int8[], $8::int8[], $9::timestamptz[])",
    )
    .bind(&customers)
    .bind(&loans)
    .bind(&sequences)
    .bind(&due_dates)
    .bind(&kinds)
    .bind(&days)
    .bind(&due)
    .bind(&paid)
    .bind(&times)
    .execute(conn)
    .await?;
    Ok(())
}

/// Instalment-level outcomes folded per instalment with [`merge_installment_state`]
/// (loan-level outcomes, sequence 0, are not instalments).
pub fn installment_deltas(outcomes: &[Outcome]) -> BTreeMap<(Uuid, Uuid, i32), InstallmentState> {
    let mut states: BTreeMap<(Uuid, Uuid, i32), InstallmentState> = BTreeMap::new();
    for outcome in outcomes.iter().filter(|o| o.installment_sequence >= 1) {
        let new = InstallmentState {
            outcome: outcome.outcome,
            days_past_due: outcome.days_past_due,
            observe_time: outcome.observe_time,
        };
        let key = (
            outcome.customer_id,
            outcome.loan_id,
            outcome.installment_sequence,
        );
        let merged = match states.get(&key) {
            Some(old) => merge_installment_state(old, &new),
            None => new,
        };
        states.insert(key, merged);
    }
    states
}

async fn upsert_installment_states(
    conn: &mut PgConnection,
    outcomes: &[Outcome],
) -> Result<(), sqlx::Error> {
    let states = installment_deltas(outcomes);
    if states.is_empty() {
        return Ok(());
    }
    let customers: Vec<Uuid> = states.keys().map(|key| key.0).collect();
    let loans: Vec<Uuid> = states.keys().map(|key| key.1).collect();
    let sequences: Vec<i32> = states.keys().map(|key| key.2).collect();
    let kinds: Vec<i16> = states.values().map(|s| s.outcome as i16).collect();
    let days: Vec<i32> = states.values().map(|s| s.days_past_due).collect();
    let times: Vec<DateTime<Utc>> = states.values().map(|s| s.observe_time).collect();
    // The same rule as `merge_installment_state`, in SQL.
    sqlx::query(
        "INSERT INTO installment_states AS s (customer_id, loan_id, installment_sequence, \
             outcome, days_past_due, observe_time) \
         SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int4[], $4::int2[], $5::int4[], \
             $6::timestamptz[]) \
         ON CONFLICT (customer_id, loan_id, installment_sequence) DO UPDATE SET \
             outcome = CASE \
                 WHEN s.outcome = 5 THEN s.outcome \
                 WHEN EXCLUDED.outcome = 5 THEN EXCLUDED.outcome \
                 WHEN EXCLUDED.outcome IN (1, 2) AND s.outcome IN (3, 4) THEN 3 \
                 WHEN EXCLUDED.outcome IN (1, 2, 3) AND s.outcome = 4 THEN 3 \
                 WHEN EXCLUDED.observe_time >= s.observe_time THEN EXCLUDED.outcome \
                 ELSE s.outcome END, \
             days_past_due = GREATEST(s.days_past_due, EXCLUDED.days_past_due), \
             observe_time = GREATEST(s.observe_time, EXCLUDED.observe_time)",
    )
    .bind(&customers)
    .bind(&loans)
    .bind(&sequences)
    .bind(&kinds)
    .bind(&days)
    .bind(&times)
    .execute(conn)
    .await?;
    Ok(())
}

/// Records each customer's worst days past due and known-defaulter status; returns how
/// many became known defaulters, whose identity components count them at once.
async fn upsert_credit_parties(
    conn: &mut PgConnection,
    outcomes: &[Outcome],
) -> Result<u64, sqlx::Error> {
    let mut parties: BTreeMap<Uuid, (i32, Option<DateTime<Utc>>)> = BTreeMap::new();
    for outcome in outcomes {
        let entry = parties.entry(outcome.customer_id).or_insert((0, None));
        entry.0 = entry.0.max(outcome.days_past_due);
        if outcome.makes_defaulter() {
            entry.1 = Some(entry.1.map_or(outcome.observe_time, |since| {
                since.min(outcome.observe_time)
            }));
        }
    }
    if parties.is_empty() {
        return Ok(0);
    }
    let candidates: Vec<String> = parties
        .iter()
        .filter(|(_, (_, since))| since.is_some())
        .map(|(customer, _)| customer.to_string())
        .collect();
    let mut already: BTreeSet<String> = BTreeSet::new();
    if !candidates.is_empty() {
        lock_components(conn).await?;
        already = sqlx::query_scalar(
            "SELECT party_id FROM credit_parties \
             WHERE party_id = ANY($1) AND defaulter_since IS NOT NULL",
        )
        .bind(&candidates)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect();
    }
    let ids: Vec<String> = parties.keys().map(Uuid::to_string).collect();
    let days: Vec<i32> = parties.values().map(|value| value.0).collect();
    let since: Vec<Option<DateTime<Utc>>> = parties.values().map(|value| value.1).collect();
    sqlx::query(
        "INSERT INTO credit_parties AS p (party_id, max_days_past_due, defaulter_since) \
         SELECT * FROM unnest($1::text[], $2::int4[], $3::timestamptz[]) \
         ON CONFLICT (party_id) DO UPDATE SET \
             max_days_past_due = GREATEST(p.max_days_past_due, EXCLUDED.max_days_past_due), \
             defaulter_since = LEAST(p.defaulter_since, EXCLUDED.defaulter_since)",
    )
    .bind(&ids)
    .bind(&days)
    .bind(&since)
    .execute(&mut *conn)
    .await?;
    let new_defaulters: Vec<Uuid> = candidates
        .iter()
        .filter(|party| !already.contains(*party))
        .filter_map(|party| Uuid::parse_str(party).ok())
        .collect();
    if !new_defaulters.is_empty() {
        sqlx::query(
            "UPDATE identity_component_stats s SET defaulters = s.defaulters + n.count \
             FROM (SELECT component_id, count(*) AS count FROM identity_components \
                   WHERE customer_id = ANY($1) GROUP BY component_id) AS n \
             WHERE s.component_id = n.component_id",
        )
        .bind(&new_defaulters)
        .execute(&mut *conn)
        .await?;
    }
    Ok(new_defaulters.len() as u64)
}

/// The credit line a customer holds, as events report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineUpdate {
    /// CreditLineOpened: limit and available both the limit.
    Opened { limit_fen: i64 },
    /// CreditLineChanged: the new limit; available moves by the limit's change, and is
    /// 0 once the line is closed.
    Changed {
        previous_limit_fen: i64,
        new_limit_fen: i64,
        closed: bool,
    },
    /// LoanDisbursed, RepaymentReceived: the headroom after.
    Available { available_fen: i64 },
}

pub async fn update_credit_line(
    conn: &mut PgConnection,
    customer_id: Uuid,
    update: LineUpdate,
    time: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let query = match update {
        LineUpdate::Opened { limit_fen } => sqlx::query(
            "INSERT INTO credit_lines (customer_id, limit_fen, available_fen, update_time) \
             VALUES ($1, $2, $2, $3) ON CONFLICT (customer_id) DO UPDATE SET \
             limit_fen = $2, available_fen = $2, update_time = $3",
        )
        .bind(customer_id)
        .bind(limit_fen)
        .bind(time),
        LineUpdate::Changed {
            previous_limit_fen,
            new_limit_fen,
            closed,
        } => sqlx::query(
            "UPDATE credit_lines SET limit_fen = $2, \
             available_fen = CASE WHEN $4 THEN 0 ELSE GREATEST(0, available_fen + $2 - $3) END, \
             update_time = $5 WHERE customer_id = $1",
        )
        .bind(customer_id)
        .bind(new_limit_fen)
        .bind(previous_limit_fen)
        .bind(closed)
        .bind(time),
        LineUpdate::Available { available_fen } => sqlx::query(
            "UPDATE credit_lines SET available_fen = $2, update_time = $3 WHERE customer_id = $1",
        )
        .bind(customer_id)
        .bind(available_fen)
        .bind(time),
    };
    query.execute(conn).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).expect("time")
    }

    #[test]
    fn adjacency_keeps_units_apart_and_standing_relations_as_presence() {
        let edge = |kind, weight: i64, time| Edge {
            source: "a".into(),
            target: "b".into(),
            kind,
            weight: Decimal::from(weight),
            occur_time: at(time),
        };
        let deltas = adjacency_deltas(&[
            edge(SocialEdgeKind::Transfer, 500, 20),
            edge(SocialEdgeKind::Transfer, 700, 10),
            edge(SocialEdgeKind::Message, 3, 30),
            edge(SocialEdgeKind::Contact, 1, 40),
            edge(SocialEdgeKind::Contact, 1, 50),
        ]);
        assert_eq!(deltas.len(), 2, "both directions");
        for key in [("a", "b"), ("b", "a")] {
            let delta = &deltas[&(key.0.to_owned(), key.1.to_owned())];
            assert_eq!(delta.transfer_fen, Decimal::from(1200));
            assert_eq!(delta.messages, Decimal::from(3));
            assert_eq!(delta.contact, 1);
            assert_eq!((delta.first_seen, delta.last_seen), (at(10), at(50)));
        }
    }
}
