//! Features of many customers computed in memory from a set of signals, for training:
//! the same folds the store applies per batch ([`adjacency_deltas`], [`month_deltas`],
//! [`installment_deltas`], the known-defaulter rule, identifier components by
//! union-find, [`party_pagerank`]) and the same assembly as the live path
//! ([`super::assemble`]). A model trained on these vectors is therefore trained on the
//! numbers `features_for` serves once the same signals are ingested (asserted by
//! tests/population.rs).
//!
//! Two deliberate equivalences, not copies: the credit line (utilisation) comes from
//! account events, not signals, so it is passed in; and the PageRank sums arcs in this
//! map's order rather than the table's, which moves scores by rounding only (≤ 1e-12).
//! Weights are converted from the exact decimals as Postgres' `numeric::float8` does for
//! the integers the signals carry.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use microloan_proto::scoring::v1::{BehaviourCategory, IdentifierKind, RepaymentOutcomeKind};
use rust_decimal::prelude::ToPrimitive;
use uuid::Uuid;

use super::{
    FeatureVector, assemble,
    behaviour::{MonthTotals, WINDOW_MONTHS},
    graph::{PageRankOptions, UnionFind, party_pagerank},
    social::{KindWeights, Neighbourhood},
};
use crate::{
    signals::Signals,
    store::{
        features::{CustomerScalars, NEIGHBOURS_READ_MAX, SECOND_HOP_ROWS_MAX},
        signals::{adjacency_deltas, installment_deltas, month_deltas},
    },
};

/// Every feature input of every party the signals mention, folded in memory.
#[derive(Debug, Clone, Default)]
pub struct OfflineFeatures {
    /// party → its neighbours in id order, with the weights per kind.
    adjacency: BTreeMap<String, Vec<(String, KindWeights)>>,
    /// party → (worst days past due, known defaulter): credit_parties.
    credit: HashMap<String, (i32, bool)>,
    pagerank: HashMap<String, f64>,
    /// customer → (component size, known defaulters in it), for customers with a link.
    components: HashMap<Uuid, (u64, u64)>,
    lenders: HashMap<Uuid, u64>,
    /// customer → most customers on one of its devices / phones.
    per_device: HashMap<Uuid, u64>,
    per_phone: HashMap<Uuid, u64>,
    /// customer → its latest months, newest first (as the store reads them).
    months: HashMap<Uuid, Vec<MonthTotals>>,
    outcomes: HashMap<Uuid, Vec<RepaymentOutcomeKind>>,
    /// customer → (limit, available) of its credit line, fen.
    lines: HashMap<Uuid, (i64, i64)>,
}

impl OfflineFeatures {
    /// Folds `signals` (valid by construction: parse them with `signals::parse_batch`)
    /// and runs the PageRank over the whole graph with `pagerank`.
    pub fn build(
        signals: &Signals,
        lines: HashMap<Uuid, (i64, i64)>,
        pagerank: PageRankOptions,
    ) -> Self {
        let mut features = OfflineFeatures {
            lines,
            ..Self::default()
        };
        features.fold_edges(signals);
        features.fold_outcomes(signals);
        features.fold_identities(signals);
        features.fold_behaviour(signals);
        let rows: Vec<(String, String)> = features
            .adjacency
            .iter()
            .flat_map(|(party, neighbours)| {
                neighbours
                    .iter()
                    .map(move |(neighbour, _)| (party.clone(), neighbour.clone()))
            })
            .collect();
        let mut defaulters: Vec<String> = features
            .credit
            .iter()
            .filter(|(_, (_, defaulter))| *defaulter)
            .map(|(party, _)| party.clone())
            .collect();
        defaulters.sort_unstable();
        let (names, rank) = party_pagerank(&rows, &defaulters, pagerank);
        features.pagerank = names
            .into_iter()
            .zip(rank.scores)
            .filter(|(_, score)| *score > 0.0)
            .collect();
        features
    }

    fn fold_edges(&mut self, signals: &Signals) {
        let number = |value: rust_decimal::Decimal| value.to_f64().unwrap_or(0.0);
        for ((party, neighbour), delta) in adjacency_deltas(&signals.edges) {
            let weights = KindWeights {
                transfer_fen: number(delta.transfer_fen),
                red_packet_fen: number(delta.red_packet_fen),
                messages: number(delta.messages),
                calls: number(delta.calls),
                contacts: f64::from(delta.contact),
                group_members: f64::from(delta.group_member),
            };
            self.adjacency
                .entry(party)
                .or_default()
                .push((neighbour, weights));
        }
    }

    fn fold_outcomes(&mut self, signals: &Signals) {
        for outcome in &signals.outcomes {
            let entry = self
                .credit
                .entry(outcome.customer_id.to_string())
                .or_insert((0, false));
            entry.0 = entry.0.max(outcome.days_past_due);
            entry.1 |= outcome.makes_defaulter();
        }
        for ((customer, _, _), state) in installment_deltas(&signals.outcomes) {
            self.outcomes
                .entry(customer)
                .or_default()
                .push(state.outcome);
        }
    }

    fn fold_identities(&mut self, signals: &Signals) {
        let links: BTreeSet<(i32, &str, Uuid)> = signals
            .sightings
            .iter()
            .map(|s| (s.kind as i32, s.identifier.as_str(), s.customer_id))
            .collect();
        let mut index_of: BTreeMap<Uuid, usize> = BTreeMap::new();
        for (_, _, customer) in &links {
            let next = index_of.len();
            index_of.entry(*customer).or_insert(next);
        }
        let mut sets = UnionFind::with_sizes(vec![1; index_of.len()]);
        let mut holders: BTreeMap<(i32, &str), Vec<Uuid>> = BTreeMap::new();
        for (kind, identifier, customer) in &links {
            holders
                .entry((*kind, *identifier))
                .or_default()
                .push(*customer);
        }
        for ((kind, _), customers) in &holders {
            for pair in customers.windows(2) {
                sets.union(index_of[&pair[0]], index_of[&pair[1]]);
            }
            let count = customers.len() as u64;
            let most = if *kind == IdentifierKind::Device as i32 {
                &mut self.per_device
            } else if *kind == IdentifierKind::Phone as i32 {
                &mut self.per_phone
            } else {
                continue;
            };
            for customer in customers {
                let entry = most.entry(*customer).or_insert(0);
                *entry = (*entry).max(count);
            }
        }
        let mut defaulters_in: HashMap<usize, u64> = HashMap::new();
        for (customer, index) in &index_of {
            let root = sets.find(*index);
            let defaulter = self
                .credit
                .get(&customer.to_string())
                .is_some_and(|(_, defaulter)| *defaulter);
            *defaulters_in.entry(root).or_insert(0) += u64::from(defaulter);
        }
        for (customer, index) in &index_of {
            let root = sets.find(*index);
            let size = sets.size_of(*index);
            self.components
                .insert(*customer, (size, defaulters_in[&root]));
        }
    }

    fn fold_behaviour(&mut self, signals: &Signals) {
        // Newest first, at most the window and one month more: what the store reads.
        for ((customer, month), totals) in month_deltas(&signals.behaviours).into_iter().rev() {
            let months = self.months.entry(customer).or_default();
            if months.len() <= WINDOW_MONTHS as usize {
                months.push(MonthTotals {
                    month,
                    income_fen: totals[0],
                    spend_fen: totals[1],
                    risky_spend_fen: totals[2],
                });
            }
        }
        let lenders: BTreeSet<(Uuid, &str)> = signals
            .behaviours
            .iter()
            .filter(|event| event.category == BehaviourCategory::OtherLender)
            .filter_map(|event| Some((event.customer_id, event.counterparty_id.as_deref()?)))
            .collect();
        for (customer, _) in lenders {
            *self.lenders.entry(customer).or_insert(0) += 1;
        }
    }

    /// The customer's two-hop neighbourhood, as `store::features::neighbourhood` reads it.
    fn neighbourhood(&self, party: &str) -> Neighbourhood {
        let neighbours: Vec<(String, KindWeights)> = self
            .adjacency
            .get(party)
            .map(|rows| {
                rows.iter()
                    .take(NEIGHBOURS_READ_MAX as usize)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let second: Vec<(String, String)> = neighbours
            .iter()
            .flat_map(|(near, _)| {
                self.adjacency
                    .get(near)
                    .into_iter()
                    .flatten()
                    .map(move |(far, _)| (near.clone(), far.clone()))
            })
            .take(SECOND_HOP_ROWS_MAX as usize)
            .collect();
        let history = neighbours
            .iter()
            .map(|(near, _)| near)
            .chain(second.iter().map(|(_, far)| far))
            .filter_map(|other| {
                let (_, defaulter) = self.credit.get(other)?;
                Some((other.clone(), *defaulter))
            })
            .collect();
        Neighbourhood {
            center: party.to_owned(),
            neighbours,
            second,
            history,
        }
    }

    /// The customer's scalar inputs, as `store::features::customer_inputs` reads them.
    fn scalars(&self, customer_id: Uuid, party: &str) -> CustomerScalars {
        CustomerScalars {
            pagerank: self.pagerank.get(party).copied().unwrap_or(0.0),
            credit: self.credit.get(party).copied(),
            component: self.components.get(&customer_id).copied(),
            distinct_lenders: self.lenders.get(&customer_id).copied().unwrap_or(0),
            line: self.lines.get(&customer_id).copied(),
            customers_per_device: self.per_device.get(&customer_id).copied().unwrap_or(0),
            customers_per_phone: self.per_phone.get(&customer_id).copied().unwrap_or(0),
        }
    }

    /// The features of `customer_id`, as `features_for` computes them from the store.
    pub fn features_for(&self, customer_id: Uuid) -> FeatureVector {
        let party = customer_id.to_string();
        let hood = self.neighbourhood(&party);
        let own = self.scalars(customer_id, &party);
        let months = self.months.get(&customer_id).map_or(&[][..], Vec::as_slice);
        let outcomes = self
            .outcomes
            .get(&customer_id)
            .map_or(&[][..], Vec::as_slice);
        assemble(customer_id, &hood, &own, months, outcomes)
    }
}

#[cfg(test)]
mod tests {
    use chrono::DateTime;
    use microloan_proto::scoring::v1::{SightingContext, SocialEdgeKind};
    use rust_decimal::Decimal;

    use super::*;
    use crate::signals::{Edge, Outcome, Sighting};

    fn customer(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    /// a — b — c by contact; a and c share a device; c has written off a loan.
    #[test]
    fn a_small_graph_by_hand() {
        let at = DateTime::from_timestamp(1_750_000_000, 0).expect("time");
        let (a, b, c) = (customer(1), customer(2), customer(3));
        let edge = |x: Uuid, y: Uuid| Edge {
            source: x.to_string(),
            target: y.to_string(),
            kind: SocialEdgeKind::Contact,
            weight: Decimal::ONE,
            occur_time: at,
        };
        let sighting = |who| Sighting {
            customer_id: who,
            kind: IdentifierKind::Device,
            identifier: "dev-shared".into(),
            context: SightingContext::Login,
            observe_time: at,
        };
        let signals = Signals {
            edges: vec![edge(a, b), edge(b, c)],
            sightings: vec![sighting(a), sighting(c)],
            outcomes: vec![Outcome {
                customer_id: c,
                loan_id: customer(9),
                installment_sequence: 1,
                due_date: None,
                outcome: RepaymentOutcomeKind::WrittenOff,
                days_past_due: 180,
                amount_due_fen: 100,
                amount_paid_fen: 0,
                observe_time: at,
            }],
            ..Signals::default()
        };
        let offline = OfflineFeatures::build(&signals, HashMap::new(), PageRankOptions::default());
        let features_a = offline.features_for(a);
        assert_eq!(features_a.get("degree"), Some(Some(1.0)));
        assert_eq!(features_a.get("one_hop_bad_rate"), Some(None));
        assert_eq!(features_a.get("two_hop_bad_rate"), Some(Some(1.0)));
        assert_eq!(features_a.get("component_size"), Some(Some(2.0)));
        assert_eq!(features_a.get("component_bad_rate"), Some(Some(1.0)));
        assert_eq!(features_a.get("customers_per_device"), Some(Some(2.0)));
        let features_b = offline.features_for(b);
        assert_eq!(features_b.get("degree"), Some(Some(2.0)));
        assert_eq!(features_b.get("one_hop_bad_rate"), Some(Some(1.0)));
        // Seeded on c: by hand (d = 0.85) a = 0.425·b, b = 0.85·(a + c), c = 0.15 +
        // 0.425·b, so c = 0.15 / (1 − 0.425 · 0.85 / 0.63875) and b = 1.33072·c.
        let rank = |vector: &FeatureVector| vector.get("defaulter_pagerank").flatten().unwrap();
        let features_c = offline.features_for(c);
        let want_c = 0.15 / (1.0 - 0.425 * 0.85 / 0.63875);
        let want_b = 0.85 / 0.63875 * want_c;
        assert!(
            (rank(&features_c) - want_c).abs() < 1e-7,
            "{}",
            rank(&features_c)
        );
        assert!(
            (rank(&features_b) - want_b).abs() < 1e-7,
            "{}",
            rank(&features_b)
        );
        assert!((rank(&features_a) - 0.425 * want_b).abs() < 1e-7);
        assert_eq!(features_c.get("max_days_past_due"), Some(Some(180.0)));
        assert_eq!(features_c.get("on_time_ratio"), Some(Some(0.0)));
        // A customer nobody mentioned is a thin file.
        let nobody = offline.features_for(customer(77));
        assert_eq!(nobody.get("component_size"), Some(Some(1.0)));
        assert_eq!(nobody.get("income_monthly_mean"), Some(None));
    }
}
