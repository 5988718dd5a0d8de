//! Graph algorithms over the stored social and identity graphs, pure: personalised
//! PageRank by sparse power iteration, and union-find for the components of customers
//! linked by shared identifiers.

/// Knobs of the personalised PageRank (docs/scoring-features.md).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PageRankOptions {
    /// Probability of following an edge rather than teleporting back to a seed.
    pub damping: f64,
    /// Hard bound on the power iterations, whatever the residual.
    pub iterations_max: u32,
    /// Stop once the L1 change of the score vector in one iteration is below this.
    pub tolerance: f64,
}

impl Default for PageRankOptions {
    fn default() -> Self {
        Self {
            damping: 0.85,
            // The error shrinks by the damping factor per iteration: 0.85^200 < 1e-14,
            // so the bound is reached only if the tolerance is set below what f64 holds.
            iterations_max: 200,
            tolerance: 1e-9,
        }
    }
}

/// Scores (summing to 1 when there are seeds, all 0 otherwise) and how the iteration ended.
#[derive(Debug, Clone, PartialEq)]
pub struct PageRank {
    pub scores: Vec<f64>,
    pub iterations: u32,
    /// L1 change in the last iteration.
    pub residual: f64,
}

/// Personalised PageRank on `nodes` nodes with the directed `arcs` (an undirected edge is
/// two arcs), teleporting to the `seeds` uniformly: r = (1-d)·p + d·(Pᵀr + dangling·p),
/// where P is row-normalised by out-degree and a node without arcs gives its mass back
/// to the seeds. Sparse: each iteration is O(nodes + arcs). Duplicate arcs count twice.
pub fn personalised_pagerank(
    nodes: usize,
    arcs: &[(u32, u32)],
    seeds: &[u32],
    options: PageRankOptions,
) -> PageRank {
    let mut teleport = vec![0.0; nodes];
    let mut seeded: Vec<u32> = seeds.to_vec();
    seeded.sort_unstable();
    seeded.dedup();
    if seeded.is_empty() || nodes == 0 {
        return PageRank {
            scores: teleport,
            iterations: 0,
            residual: 0.0,
        };
    }
    let seed_share = 1.0 / seeded.len() as f64;
    for seed in &seeded {
        teleport[*seed as usize] = seed_share;
    }
    // Compressed sparse rows by source.
    let mut starts = vec![0usize; nodes + 1];
    for (source, _) in arcs {
        starts[*source as usize + 1] += 1;
    }
    for index in 0..nodes {
        starts[index + 1] += starts[index];
    }
    let mut targets = vec![0u32; arcs.len()];
    let mut fill = starts.clone();
    for (source, target) in arcs {
        targets[fill[*source as usize]] = *target;
        fill[*source as usize] += 1;
    }
    let damping = options.damping;
    let mut scores = teleport.clone();
    let mut next = vec![0.0; nodes];
    let mut iterations = 0;
    let mut residual = f64::INFINITY;
    while iterations < options.iterations_max && residual >= options.tolerance {
        let mut dangling = 0.0;
        next.iter_mut().for_each(|value| *value = 0.0);
        for node in 0..nodes {
            let out = &targets[starts[node]..starts[node + 1]];
            if out.is_empty() {
                dangling += scores[node];
                continue;
            }
            let share = damping * scores[node] / out.len() as f64;
            for target in out {
                next[*target as usize] += share;
            }
        }
        let returned = (1.0 - damping) + damping * dangling;
        for (value, teleport) in next.iter_mut().zip(&teleport) {
            *value += returned * teleport;
        }
        residual = next
            .iter()
            .zip(&scores)
            .map(|(new, old)| (new - old).abs())
            .sum();
        std::mem::swap(&mut scores, &mut next);
        iterations += 1;
    }
    debug_assert!(
        (scores.iter().sum::<f64>() - 1.0).abs() < 1e-9,
        "PageRank mass is conserved"
    );
    PageRank {
        scores,
        iterations,
        residual,
    }
}

/// Personalised PageRank over parties named by string: `adjacency` rows (party,
/// neighbour) are the arcs, `defaulters` the seeds (a seed without arcs keeps its mass).
/// Parties are numbered in order of first appearance, adjacency first. Returns the
/// parties in that order with the run. The stored refresh and offline training share it.
pub fn party_pagerank(
    adjacency: &[(String, String)],
    defaulters: &[String],
    options: PageRankOptions,
) -> (Vec<String>, PageRank) {
    let mut index: std::collections::HashMap<String, u32> = std::collections::HashMap::new();
    let mut names: Vec<String> = Vec::new();
    let mut id_of = |name: &String| -> u32 {
        if let Some(id) = index.get(name) {
            return *id;
        }
        let id = u32::try_from(names.len()).expect("fewer than 2^32 parties");
        index.insert(name.clone(), id);
        names.push(name.clone());
        id
    };
    let arcs: Vec<(u32, u32)> = adjacency
        .iter()
        .map(|(party, neighbour)| (id_of(party), id_of(neighbour)))
        .collect();
    let seeds: Vec<u32> = defaulters.iter().map(&mut id_of).collect();
    let rank = personalised_pagerank(names.len(), &arcs, &seeds, options);
    (names, rank)
}

/// Disjoint sets with union by size and path halving.
#[derive(Debug, Clone)]
pub struct UnionFind {
    parent: Vec<usize>,
    size: Vec<u64>,
}

impl UnionFind {
    /// `sizes[i]` is the weight of set `i` (a stored component's member count).
    pub fn with_sizes(sizes: Vec<u64>) -> Self {
        Self {
            parent: (0..sizes.len()).collect(),
            size: sizes,
        }
    }

    pub fn find(&mut self, mut node: usize) -> usize {
        while self.parent[node] != node {
            self.parent[node] = self.parent[self.parent[node]];
            node = self.parent[node];
        }
        node
    }

    /// Joins the sets of `a` and `b`; the larger set's root stays root (ties: the lower
    /// index), so the fewest members are relabelled.
    pub fn union(&mut self, a: usize, b: usize) -> usize {
        let (a, b) = (self.find(a), self.find(b));
        if a == b {
            return a;
        }
        let (root, child) =
            if self.size[a] > self.size[b] || (self.size[a] == self.size[b] && a < b) {
                (a, b)
            } else {
                (b, a)
            };
        self.parent[child] = root;
        self.size[root] += self.size[child];
        root
    }

    pub fn size_of(&mut self, node: usize) -> u64 {
        let root = self.find(node);
        self.size[root]
    }
}

/// The merges that linking the members of each group implies: for sets of the given
/// sizes (indexes into `sizes`), `(absorbed, root)` for every set that stops being a
/// root. The root of each merged group is its largest set (ties: the lowest index), so
/// the fewest members are relabelled.
pub fn merges(sizes: Vec<u64>, groups: &[Vec<usize>]) -> Vec<(usize, usize)> {
    let count = sizes.len();
    let mut sets = UnionFind::with_sizes(sizes.clone());
    for group in groups {
        for pair in group.windows(2) {
            sets.union(pair[0], pair[1]);
        }
    }
    let mut largest: std::collections::HashMap<usize, usize> = std::collections::HashMap::new();
    for node in 0..count {
        let group = sets.find(node);
        let best = largest.entry(group).or_insert(node);
        if sizes[node] > sizes[*best] {
            *best = node;
        }
    }
    (0..count)
        .filter_map(|node| {
            let root = largest[&sets.find(node)];
            (root != node).then_some((node, root))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn undirected(edges: &[(u32, u32)]) -> Vec<(u32, u32)> {
        edges.iter().flat_map(|&(a, b)| [(a, b), (b, a)]).collect()
    }

    /// A star: centre 0, leaves 1-4, seeded on leaf 1, damping 0.85. By symmetry the
    /// other leaves share a score d; solving r = 0.15·p + 0.85·Pᵀr by hand:
    /// centre b = 0.85·(a + 3d), d = 0.85·b/4, a = 0.15 + 0.85·b/4, so
    /// b = 0.85/1.85 = 17/37, d = 289/2960, a = 733/2960.
    /// Tight enough that the fixed point is reached within f64 rounding.
    fn exact() -> PageRankOptions {
        PageRankOptions {
            tolerance: 1e-13,
            ..PageRankOptions::default()
        }
    }

    #[test]
    fn pagerank_on_a_five_node_star_matches_the_hand_solution() {
        let arcs = undirected(&[(0, 1), (0, 2), (0, 3), (0, 4)]);
        let rank = personalised_pagerank(5, &arcs, &[1], exact());
        let want = [
            17.0 / 37.0,
            733.0 / 2960.0,
            289.0 / 2960.0,
            289.0 / 2960.0,
            289.0 / 2960.0,
        ];
        for (got, want) in rank.scores.iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        assert!(rank.residual < 1e-13);
        assert!(rank.iterations < exact().iterations_max);
        // The default tolerance stops earlier, within 1e-8 of the fixed point.
        let rank = personalised_pagerank(5, &arcs, &[1], PageRankOptions::default());
        assert!((rank.scores[0] - 17.0 / 37.0).abs() < 1e-8);
        assert!(rank.iterations < 200);
    }

    /// A path 0-1-2-3-4 seeded on both ends: symmetric, so r0 = r4, r1 = r3; by hand
    /// with d = 0.85: r1 = 0.85·(r0 + r2/2), r2 = 0.85·r1, r0 = 0.075 + 0.85·r1/2.
    /// Hence r1 = 0.85·0.075 / (1 − 0.85²/2 − 0.85²/2) = 0.06375/0.2775.
    #[test]
    fn pagerank_on_a_five_node_path_seeded_on_both_ends() {
        let arcs = undirected(&[(0, 1), (1, 2), (2, 3), (3, 4)]);
        let rank = personalised_pagerank(5, &arcs, &[0, 4], exact());
        let r1 = 0.06375 / 0.2775;
        let r2 = 0.85 * r1;
        let r0 = 0.075 + 0.85 * r1 / 2.0;
        let want = [r0, r1, r2, r1, r0];
        for (got, want) in rank.scores.iter().zip(want) {
            assert!((got - want).abs() < 1e-9, "{got} vs {want}");
        }
        let total: f64 = rank.scores.iter().sum();
        assert!((total - 1.0).abs() < 1e-12);
    }

    #[test]
    fn pagerank_stops_at_the_iteration_bound_and_gives_dangling_mass_to_the_seeds() {
        let options = PageRankOptions {
            iterations_max: 3,
            tolerance: 0.0,
            ..PageRankOptions::default()
        };
        // Node 2 has no arcs: isolated from the seed, it scores 0.
        let rank = personalised_pagerank(3, &undirected(&[(0, 1)]), &[0], options);
        assert_eq!(rank.iterations, 3);
        assert_eq!(rank.scores[2], 0.0);
        // A dangling seed keeps all the mass.
        let rank = personalised_pagerank(2, &[], &[1], PageRankOptions::default());
        assert_eq!(rank.scores, [0.0, 1.0]);
    }

    #[test]
    fn no_known_defaulter_means_every_score_is_zero() {
        let rank = personalised_pagerank(
            3,
            &undirected(&[(0, 1), (1, 2)]),
            &[],
            PageRankOptions::default(),
        );
        assert_eq!(rank.scores, [0.0; 3]);
        assert_eq!(rank.iterations, 0);
    }

    #[test]
    fn merges_relabel_the_smaller_side() {
        // Sets 0 (size 5), 1 (1), 2 (2), 3 (1); identifiers link {1, 0} and {2, 3}.
        let merged = merges(vec![5, 1, 2, 1], &[vec![1, 0], vec![3, 2]]);
        assert_eq!(merged, [(1, 0), (3, 2)]);
        // A third identifier joins both groups: everything ends under 0, the largest.
        let merged = merges(vec![5, 1, 2, 1], &[vec![1, 0], vec![3, 2], vec![2, 1]]);
        assert_eq!(merged, [(1, 0), (2, 0), (3, 0)]);
        // The root is the largest set of the group, wherever it stands in the chain.
        assert_eq!(merges(vec![3, 1, 4], &[vec![0, 1, 2]]), [(0, 2), (1, 2)]);
        let mut sets = UnionFind::with_sizes(vec![5, 1, 2, 1]);
        sets.union(0, 1);
        sets.union(2, 3);
        sets.union(3, 1);
        assert_eq!(sets.size_of(3), 9);
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Components by brute force: repeatedly join groups sharing a member.
        fn naive_roots(count: usize, groups: &[Vec<usize>]) -> Vec<usize> {
            let mut label: Vec<usize> = (0..count).collect();
            loop {
                let mut changed = false;
                for group in groups {
                    let low = group.iter().map(|node| label[*node]).min().unwrap_or(0);
                    for node in group {
                        let old = label[*node];
                        if old != low {
                            for entry in label.iter_mut().filter(|entry| **entry == old) {
                                *entry = low;
                            }
                            changed = true;
                        }
                    }
                }
                if !changed {
                    return label;
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(64))]

            /// Merges put exactly the brute-force components together, each under its
            /// largest member set.
            #[test]
            fn merges_match_brute_force_components(
                sizes in proptest::collection::vec(1u64..20, 1..12),
                raw_groups in proptest::collection::vec(proptest::collection::vec(0usize..12, 1..4), 0..8),
            ) {
                let count = sizes.len();
                let groups: Vec<Vec<usize>> = raw_groups
                    .into_iter()
                    .map(|group| group.into_iter().map(|node| node % count).collect())
                    .collect();
                let merged = merges(sizes.clone(), &groups);
                let mut root: Vec<usize> = (0..count).collect();
                for (child, parent) in &merged {
                    root[*child] = *parent;
                }
                let naive = naive_roots(count, &groups);
                for a in 0..count {
                    for b in 0..count {
                        prop_assert_eq!(root[a] == root[b], naive[a] == naive[b]);
                    }
                    let members = (0..count).filter(|other| root[*other] == root[a]);
                    let largest = members.map(|member| sizes[member]).max().unwrap_or(0);
                    prop_assert_eq!(sizes[root[a]], largest);
                }
            }

            /// Scores are non-negative and sum to 1 whatever the graph, within the bound.
            #[test]
            fn pagerank_conserves_mass(
                nodes in 1usize..12,
                raw_arcs in proptest::collection::vec((0u32..12, 0u32..12), 0..30),
                raw_seeds in proptest::collection::vec(0u32..12, 1..4),
            ) {
                let bound = |node: u32| node % nodes as u32;
                let arcs: Vec<(u32, u32)> =
                    raw_arcs.into_iter().map(|(a, b)| (bound(a), bound(b))).collect();
                let seeds: Vec<u32> = raw_seeds.into_iter().map(bound).collect();
                let rank = personalised_pagerank(nodes, &arcs, &seeds, PageRankOptions::default());
                prop_assert!(rank.iterations <= PageRankOptions::default().iterations_max);
                prop_assert!(rank.scores.iter().all(|score| *score >= 0.0));
                prop_assert!((rank.scores.iter().sum::<f64>() - 1.0).abs() < 1e-9);
            }
        }
    }
}
