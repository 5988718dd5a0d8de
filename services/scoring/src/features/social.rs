//! Social features of one customer from its stored neighbourhood, pure.

use std::collections::{HashMap, HashSet};

/// Weights of the edges to one neighbour, kept per SocialEdgeKind in its own unit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KindWeights {
    pub transfer_fen: f64,
    pub red_packet_fen: f64,
    pub messages: f64,
    pub calls: f64,
    /// CONTACT presence (0 or 1).
    pub contacts: f64,
    /// GROUP_MEMBER presence (0 or 1).
    pub group_members: f64,
}

impl KindWeights {
    fn add(&mut self, other: &KindWeights) {
        self.transfer_fen += other.transfer_fen;
        self.red_packet_fen += other.red_packet_fen;
        self.messages += other.messages;
        self.calls += other.calls;
        self.contacts += other.contacts;
        self.group_members += other.group_members;
    }
}

/// A customer's neighbourhood as stored: its neighbours with their weights, the
/// neighbours of those neighbours, and which of all these parties have a credit
/// history (`true`: a known defaulter).
#[derive(Debug, Clone, Default)]
pub struct Neighbourhood {
    pub center: String,
    pub neighbours: Vec<(String, KindWeights)>,
    /// (neighbour, its neighbour) pairs.
    pub second: Vec<(String, String)>,
    pub history: HashMap<String, bool>,
}

/// Degree and weighted degree per kind, and the neighbours' default rates.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Local {
    /// Distinct neighbours (any kind, either direction).
    pub degree: f64,
    pub weighted: KindWeights,
    /// Known defaulters among the neighbours that have a credit history; `None` when none has.
    pub one_hop_bad_rate: Option<f64>,
    /// The same among the parties exactly two hops away.
    pub two_hop_bad_rate: Option<f64>,
}

pub fn local_features(hood: &Neighbourhood) -> Local {
    let mut weighted = KindWeights::default();
    for (_, weights) in &hood.neighbours {
        weighted.add(weights);
    }
    let one_hop: HashSet<&str> = hood.neighbours.iter().map(|(id, _)| id.as_str()).collect();
    let two_hop: HashSet<&str> = hood
        .second
        .iter()
        .map(|(_, far)| far.as_str())
        .filter(|far| *far != hood.center && !one_hop.contains(far))
        .collect();
    Local {
        degree: one_hop.len() as f64,
        weighted,
        one_hop_bad_rate: bad_rate(one_hop.iter().copied(), &hood.history),
        two_hop_bad_rate: bad_rate(two_hop.iter().copied(), &hood.history),
    }
}

/// Share of known defaulters among the `parties` that have a credit history.
pub fn bad_rate<'a>(
    parties: impl Iterator<Item = &'a str>,
    history: &HashMap<String, bool>,
) -> Option<f64> {
    let (with_history, bad) = parties
        .filter_map(|party| history.get(party))
        .fold((0u64, 0u64), |(seen, bad), defaulter| {
            (seen + 1, bad + u64::from(*defaulter))
        });
    (with_history > 0).then(|| bad as f64 / with_history as f64)
}

/// Size of the customer's component over shared identifiers and the default rate of
/// its other members (the customer's own status left out, so the feature never
/// restates the label); `None` for a component of one.
pub fn component_features(size: u64, defaulters: u64, self_defaulter: bool) -> (f64, Option<f64>) {
    let others = size.saturating_sub(1);
    let other_defaulters = defaulters.saturating_sub(u64::from(self_defaulter));
    let rate = (others > 0).then(|| other_defaulters as f64 / others as f64);
    (size.max(1) as f64, rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weights(transfer_fen: f64, messages: f64, contacts: f64) -> KindWeights {
        KindWeights {
            transfer_fen,
            messages,
            contacts,
            ..KindWeights::default()
        }
    }

    /// c — a, b, x; a — d, e; b — e, c; x — (nothing). History: a good, b bad, d bad,
    /// e good, x none. One hop {a, b, x}: with history a, b → 1/2. Two hops {d, e}
    /// (c itself and b, a neighbour, left out): d bad, e good → 1/2... e appears twice
    /// but counts once.
    #[test]
    fn degree_weights_per_kind_and_neighbour_default_rates() {
        let pair = |a: &str, b: &str| (a.to_owned(), b.to_owned());
        let hood = Neighbourhood {
            center: "c".into(),
            neighbours: vec![
                ("a".into(), weights(1000.0, 3.0, 1.0)),
                ("b".into(), weights(250.0, 0.0, 1.0)),
                ("x".into(), weights(0.0, 7.0, 0.0)),
            ],
            second: vec![
                pair("a", "d"),
                pair("a", "e"),
                pair("a", "b"),
                pair("b", "e"),
                pair("b", "c"),
            ],
            history: [("a", false), ("b", true), ("d", true), ("e", false)]
                .into_iter()
                .map(|(party, bad)| (party.to_owned(), bad))
                .collect(),
        };
        let local = local_features(&hood);
        assert_eq!(local.degree, 3.0);
        assert_eq!(local.weighted.transfer_fen, 1250.0);
        assert_eq!(local.weighted.messages, 10.0);
        assert_eq!(local.weighted.contacts, 2.0);
        assert_eq!(local.one_hop_bad_rate, Some(0.5));
        assert_eq!(local.two_hop_bad_rate, Some(0.5));
    }

    #[test]
    fn no_neighbour_with_history_is_a_missing_rate() {
        let local = local_features(&Neighbourhood {
            center: "c".into(),
            neighbours: vec![("ext:z".into(), weights(0.0, 1.0, 0.0))],
            ..Neighbourhood::default()
        });
        assert_eq!(local.degree, 1.0);
        assert_eq!(local.one_hop_bad_rate, None);
        assert_eq!(local.two_hop_bad_rate, None);
    }

    #[test]
    fn the_component_rate_leaves_the_customer_out() {
        assert_eq!(component_features(1, 1, true), (1.0, None));
        assert_eq!(component_features(4, 2, true), (4.0, Some(1.0 / 3.0)));
        assert_eq!(component_features(4, 2, false), (4.0, Some(2.0 / 3.0)));
    }
}
