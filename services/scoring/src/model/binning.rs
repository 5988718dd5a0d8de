//! Weight-of-evidence binning of one feature, and its information value.
//!
//! Numeric features: quantile pre-bins ([`PREBINS`]) of the regular values, merged
//! greedily — first every bin below the minimum share ([`MIN_BIN_SHARE`]) into the
//! neighbour with the closer bad rate, then adjacent bins that break a monotonic bad rate
//! (in whichever direction keeps the higher IV), then the closest adjacent pair until at
//! most [`MAX_BINS`] remain. Categorical features: levels rarer than
//! [`RARE_LEVEL_SHARE`] pooled into one "rare" group (which also takes levels never seen
//! in training), the groups ordered by bad rate and merged the same way (an order by bad
//! rate is monotonic by construction). Missing values, and each declared special value
//! that occurs, get a bin of their own whatever its size.
//!
//! WOE of a bin = ln(share of goods / share of bads), with [`WOE_SMOOTHING`] added to
//! every bin's good and bad counts so a bin with no bads (or no goods) keeps a finite
//! WOE. Positive WOE = safer than average. IV = Σ (share good − share bad) · WOE.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::dataset::{Cell, Column, Feature};

/// Quantile pre-bins of a numeric feature before merging.
pub const PREBINS: usize = 20;
/// Smallest share of the training weight a regular bin may hold (5%: below that the bad
/// rate of a bin is too noisy to price on — 40 rows of 800).
pub const MIN_BIN_SHARE: f64 = 0.05;
/// Most regular bins per feature (missing and special bins come on top).
pub const MAX_BINS: usize = 8;
/// Categorical levels under this share of the training weight are pooled before ordering.
pub const RARE_LEVEL_SHARE: f64 = 0.02;
/// Pseudo-count added to each bin's goods and bads in the WOE.
pub const WOE_SMOOTHING: f64 = 0.5;

/// The binning thresholds; the defaults are the consts above.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BinningOptions {
    pub prebins: usize,
    pub min_bin_share: f64,
    pub max_bins: usize,
    pub rare_level_share: f64,
    pub woe_smoothing: f64,
    /// Numeric codes (e.g. -1, 9999) that mean something other than their magnitude:
    /// each gets its own bin in every numeric feature it occurs in.
    pub special_values: Vec<f64>,
}

impl Default for BinningOptions {
    fn default() -> Self {
        Self {
            prebins: PREBINS,
            min_bin_share: MIN_BIN_SHARE,
            max_bins: MAX_BINS,
            rare_level_share: RARE_LEVEL_SHARE,
            woe_smoothing: WOE_SMOOTHING,
            special_values: Vec::new(),
        }
    }
}

/// Which values a bin holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BinRule {
    /// No value.
    Missing,
    /// Exactly this declared special value.
    Special { value: f64 },
    /// lower < x ≤ upper; `None` = unbounded on that side.
    Range {
        lower: Option<f64>,
        upper: Option<f64>,
    },
    /// These levels; `rare_pool`: also the pooled rare levels and any level unseen in
    /// training.
    Levels {
        levels: Vec<String>,
        rare_pool: bool,
    },
}

/// One bin with its training counts (weighted), WOE and points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub rule: BinRule,
    pub goods: f64,
    pub bads: f64,
    pub woe: f64,
    /// The scorecard points of the bin; 0 until the regression has been scaled.
    pub points: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureKind {
    Numeric,
    Categorical,
}

/// A feature's bins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureBinning {
    pub name: String,
    pub kind: FeatureKind,
    pub iv: f64,
    /// Numeric: the declared special values (a declared value with no bin goes to the
    /// fallback, not into a range).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub special_values: Vec<f64>,
    /// Where a value no bin holds goes (a missing value with no missing bin, an unseen
    /// special value or level): the bin with the rare pool, else the lowest-WOE
    /// (riskiest) bin — unknown is never priced as better than the worst known.
    pub fallback_bin: usize,
    /// The regression coefficient of the feature's WOE; 0 until fitted.
    #[serde(default)]
    pub coefficient: f64,
    pub bins: Vec<Bin>,
}

impl FeatureBinning {
    /// The index of the bin holding `cell`.
    pub fn bin_of(&self, cell: Cell<'_>) -> usize {
        let found = match cell {
            Cell::Missing => self
                .bins
                .iter()
                .position(|bin| matches!(bin.rule, BinRule::Missing)),
            Cell::Number(value) if self.special_values.contains(&value) => {
                self.bins.iter().position(
                    |bin| matches!(bin.rule, BinRule::Special { value: special } if special == value),
                )
            }
            Cell::Number(value) => self.bins.iter().position(|bin| match bin.rule {
                BinRule::Range { lower, upper } => {
                    lower.is_none_or(|lower| value > lower)
                        && upper.is_none_or(|upper| value <= upper)
                }
                _ => false,
            }),
            Cell::Level(level) => self.bins.iter().position(|bin| match &bin.rule {
                BinRule::Levels { levels, .. } => levels.iter().any(|known| known == level),
                _ => false,
            }),
        };
        found.unwrap_or(self.fallback_bin)
    }

    /// The WOE of the bin holding `cell`.
    pub fn woe_of(&self, cell: Cell<'_>) -> f64 {
        self.bins[self.bin_of(cell)].woe
    }
}

/// WOE per bin and the IV, from (goods, bads) per bin.
pub fn woe_iv(counts: &[(f64, f64)], smoothing: f64) -> (Vec<f64>, f64) {
    let k = counts.len() as f64;
    let goods: f64 = counts.iter().map(|(g, _)| g).sum();
    let bads: f64 = counts.iter().map(|(_, b)| b).sum();
    let mut iv = 0.0;
    let woe = counts
        .iter()
        .map(|(g, b)| {
            let share_good = (g + smoothing) / (goods + k * smoothing);
            let share_bad = (b + smoothing) / (bads + k * smoothing);
            let woe = (share_good / share_bad).ln();
            iv += (share_good - share_bad) * woe;
            woe
        })
        .collect();
    (woe, iv)
}

/// A run of atoms (pre-bins or level pools) being merged, with its counts.
#[derive(Debug, Clone)]
struct Group {
    goods: f64,
    bads: f64,
    atoms: Vec<usize>,
}

impl Group {
    fn weight(&self) -> f64 {
        self.goods + self.bads
    }

    fn bad_rate(&self) -> f64 {
        if self.weight() > 0.0 {
            self.bads / self.weight()
        } else {
            0.0
        }
    }
}

/// Merges group `i + 1` into group `i`.
fn merge_pair(groups: &mut Vec<Group>, i: usize) {
    let right = groups.remove(i + 1);
    let left = &mut groups[i];
    left.goods += right.goods;
    left.bads += right.bads;
    left.atoms.extend(right.atoms);
}

/// Merges every group lighter than `min_weight` (lightest first) into the neighbour with
/// the closer bad rate.
fn merge_small(groups: &mut Vec<Group>, min_weight: f64) {
    while groups.len() > 1 {
        let Some(small) = (0..groups.len())
            .filter(|i| groups[*i].weight() < min_weight)
            .min_by(|a, b| groups[*a].weight().total_cmp(&groups[*b].weight()))
        else {
            return;
        };
        let rate = groups[small].bad_rate();
        let distance = |i: usize| (groups[i].bad_rate() - rate).abs();
        let into_left = if small == 0 {
            false
        } else if small + 1 == groups.len() {
            true
        } else {
            distance(small - 1) <= distance(small + 1)
        };
        merge_pair(groups, if into_left { small - 1 } else { small });
    }
}

/// Pools adjacent violators until the bad rate rises (`increasing`) or falls along the
/// groups (pool-adjacent-violators: the result does not depend on the merge order).
fn merge_to_monotone(groups: &mut Vec<Group>, increasing: bool) {
    let mut i = 0;
    while i + 1 < groups.len() {
        let (left, right) = (groups[i].bad_rate(), groups[i + 1].bad_rate());
        let violates = if increasing {
            left > right
        } else {
            left < right
        };
        if violates {
            merge_pair(groups, i);
            i = i.saturating_sub(1);
        } else {
            i += 1;
        }
    }
}

/// Merges the adjacent pair with the closest bad rates until at most `max_bins` remain.
fn merge_to_max(groups: &mut Vec<Group>, max_bins: usize) {
    while groups.len() > max_bins.max(1) {
        let closest = (0..groups.len() - 1)
            .min_by(|a, b| {
                let gap = |i: usize| (groups[i].bad_rate() - groups[i + 1].bad_rate()).abs();
                gap(*a).total_cmp(&gap(*b))
            })
            .unwrap_or(0);
        merge_pair(groups, closest);
    }
}

fn groups_iv(groups: &[Group], smoothing: f64) -> f64 {
    let counts: Vec<(f64, f64)> = groups.iter().map(|g| (g.goods, g.bads)).collect();
    woe_iv(&counts, smoothing).1
}

/// Bins `feature` on the training `rows`.
pub fn bin_feature(
    feature: &Feature,
    bad: &[bool],
    weights: &[f64],
    rows: &[usize],
    options: &BinningOptions,
) -> FeatureBinning {
    assert!(!rows.is_empty(), "binning needs training rows");
    let total: f64 = rows.iter().map(|row| weights[*row]).sum();
    let min_weight = options.min_bin_share * total;
    let mut missing = (0.0, 0.0);
    let add = |counts: &mut (f64, f64), row: usize| {
        if bad[row] {
            counts.1 += weights[row];
        } else {
            counts.0 += weights[row];
        }
    };
    let mut rules_and_counts: Vec<(BinRule, (f64, f64))> = Vec::new();
    let (kind, special_values) = match &feature.column {
        Column::Numeric(values) => {
            let mut specials: Vec<(f64, (f64, f64))> = Vec::new();
            let mut regular: Vec<(f64, usize)> = Vec::new();
            for row in rows {
                match values[*row] {
                    None => add(&mut missing, *row),
                    Some(value) if options.special_values.contains(&value) => {
                        match specials.iter_mut().find(|(special, _)| *special == value) {
                            Some((_, counts)) => add(counts, *row),
                            None => {
                                let mut counts = (0.0, 0.0);
                                add(&mut counts, *row);
                                specials.push((value, counts));
                            }
                        }
                    }
                    Some(value) => regular.push((value, *row)),
                }
            }
            if missing.0 + missing.1 > 0.0 {
                rules_and_counts.push((BinRule::Missing, missing));
            }
            specials.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (value, counts) in specials {
                rules_and_counts.push((BinRule::Special { value }, counts));
            }
            rules_and_counts.extend(numeric_bins(&regular, bad, weights, min_weight, options));
            (FeatureKind::Numeric, options.special_values.clone())
        }
        Column::Categorical(values) => {
            let mut levels: BTreeMap<&str, (f64, f64)> = BTreeMap::new();
            for row in rows {
                match &values[*row] {
                    None => add(&mut missing, *row),
                    Some(level) => add(levels.entry(level.as_str()).or_default(), *row),
                }
            }
            if missing.0 + missing.1 > 0.0 {
                rules_and_counts.push((BinRule::Missing, missing));
            }
            let rare_weight = options.rare_level_share * total;
            rules_and_counts.extend(categorical_bins(levels, rare_weight, min_weight, options));
            (FeatureKind::Categorical, Vec::new())
        }
    };
    let counts: Vec<(f64, f64)> = rules_and_counts.iter().map(|(_, c)| *c).collect();
    let (woe, iv) = woe_iv(&counts, options.woe_smoothing);
    let bins: Vec<Bin> = rules_and_counts
        .into_iter()
        .zip(woe)
        .map(|((rule, (goods, bads)), woe)| Bin {
            rule,
            goods,
            bads,
            woe,
            points: 0,
        })
        .collect();
    let fallback_bin = bins
        .iter()
        .position(|bin| {
            matches!(
                bin.rule,
                BinRule::Levels {
                    rare_pool: true,
                    ..
                }
            )
        })
        .or_else(|| (0..bins.len()).min_by(|a, b| bins[*a].woe.total_cmp(&bins[*b].woe)))
        .unwrap_or(0);
    FeatureBinning {
        name: feature.name.clone(),
        kind,
        iv,
        special_values,
        fallback_bin,
        coefficient: 0.0,
        bins,
    }
}

/// The range bins of the regular (non-missing, non-special) values `(value, row)`.
fn numeric_bins(
    regular: &[(f64, usize)],
    bad: &[bool],
    weights: &[f64],
    min_weight: f64,
    options: &BinningOptions,
) -> Vec<(BinRule, (f64, f64))> {
    if regular.is_empty() {
        return Vec::new();
    }
    let mut sorted = regular.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total: f64 = sorted.iter().map(|(_, row)| weights[*row]).sum();
    let max = sorted[sorted.len() - 1].0;

    // Cut points: the value at each weighted quantile i/prebins; a bin is (cut, next cut].
    let prebins = options.prebins.max(1);
    let mut cuts: Vec<f64> = Vec::new();
    let (mut cumulative, mut next) = (0.0, 1);
    for (value, row) in &sorted {
        cumulative += weights[*row];
        while next < prebins && cumulative >= total * next as f64 / prebins as f64 {
            if *value < max && cuts.last() != Some(value) {
                cuts.push(*value);
            }
            next += 1;
        }
    }

    let mut groups: Vec<Group> = (0..=cuts.len())
        .map(|atom| Group {
            goods: 0.0,
            bads: 0.0,
            atoms: vec![atom],
        })
        .collect();
    let mut atom = 0;
    for (value, row) in &sorted {
        while atom < cuts.len() && *value > cuts[atom] {
            atom += 1;
        }
        if bad[*row] {
            groups[atom].bads += weights[*row];
        } else {
            groups[atom].goods += weights[*row];
        }
    }

    merge_small(&mut groups, min_weight);
    let mut rising = groups.clone();
    merge_to_monotone(&mut rising, true);
    merge_to_monotone(&mut groups, false);
    if groups_iv(&rising, options.woe_smoothing) >= groups_iv(&groups, options.woe_smoothing) {
        groups = rising;
    }
    merge_to_max(&mut groups, options.max_bins);

    let last_atom = cuts.len();
    groups
        .into_iter()
        .map(|group| {
            let first = group.atoms[0];
            let last = group.atoms[group.atoms.len() - 1];
            let rule = BinRule::Range {
                lower: (first > 0).then(|| cuts[first - 1]),
                upper: (last < last_atom).then(|| cuts[last]),
            };
            (rule, (group.goods, group.bads))
        })
        .collect()
}

/// The level bins: rare levels pooled, groups ordered by bad rate and merged.
fn categorical_bins(
    levels: BTreeMap<&str, (f64, f64)>,
    rare_weight: f64,
    min_weight: f64,
    options: &BinningOptions,
) -> Vec<(BinRule, (f64, f64))> {
    // Atoms: each common level alone, then the rare pool (if any level is rare).
    let mut atoms: Vec<(Vec<String>, bool)> = Vec::new();
    let mut groups: Vec<Group> = Vec::new();
    let mut pool = Group {
        goods: 0.0,
        bads: 0.0,
        atoms: Vec::new(),
    };
    let mut pooled: Vec<String> = Vec::new();
    for (level, (goods, bads)) in levels {
        if goods + bads < rare_weight {
            pool.goods += goods;
            pool.bads += bads;
            pooled.push(level.to_owned());
        } else {
            groups.push(Group {
                goods,
                bads,
                atoms: vec![atoms.len()],
            });
            atoms.push((vec![level.to_owned()], false));
        }
    }
    if !pooled.is_empty() {
        pool.atoms.push(atoms.len());
        atoms.push((pooled, true));
        groups.push(pool);
    }
    // Stable: equal bad rates keep the levels' alphabetical order.
    groups.sort_by(|a, b| a.bad_rate().total_cmp(&b.bad_rate()));
    merge_small(&mut groups, min_weight);
    merge_to_max(&mut groups, options.max_bins);
    groups
        .into_iter()
        .map(|group| {
            let mut levels: Vec<String> = Vec::new();
            let mut rare_pool = false;
            for atom in &group.atoms {
                levels.extend(atoms[*atom].0.iter().cloned());
                rare_pool |= atoms[*atom].1;
            }
            levels.sort();
            (
                BinRule::Levels { levels, rare_pool },
                (group.goods, group.bads),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn numeric(values: &[Option<f64>]) -> Feature {
        Feature {
            name: "x".into(),
            column: Column::Numeric(values.to_vec()),
        }
    }

    fn categorical(values: &[Option<&str>]) -> Feature {
        Feature {
            name: "c".into(),
            column: Column::Categorical(values.iter().map(|v| v.map(str::to_owned)).collect()),
        }
    }

    fn bin(feature: &Feature, bad: &[bool], options: &BinningOptions) -> FeatureBinning {
        let rows: Vec<usize> = (0..bad.len()).collect();
        bin_feature(feature, bad, &vec![1.0; bad.len()], &rows, options)
    }

    #[test]
    fn woe_and_iv_of_a_two_bin_table_by_hand() {
        // Bin A: 3 goods 1 bad; bin B: 1 good 3 bads; G = B = 4, k = 2, α = ½.
        // share_good(A) = 3.5 / 5 = 0.7, share_bad(A) = 1.5 / 5 = 0.3 → WOE ln(7/3);
        // B is the mirror → −ln(7/3); IV = 0.4·ln(7/3) + (−0.4)(−ln(7/3)) = 0.8·ln(7/3).
        let (woe, iv) = woe_iv(&[(3.0, 1.0), (1.0, 3.0)], 0.5);
        assert!(close(woe[0], (7.0_f64 / 3.0).ln()));
        assert!(close(woe[1], -(7.0_f64 / 3.0).ln()));
        assert!(close(iv, 0.8 * (7.0_f64 / 3.0).ln()));
        assert!((iv - 0.6778).abs() < 1e-4);
    }

    #[test]
    fn a_bin_without_bads_keeps_a_finite_woe() {
        // 4 goods 0 bads | 0 goods 4 bads, k = 2: share_good = 4.5/5 and 0.5/5.
        let (woe, iv) = woe_iv(&[(4.0, 0.0), (0.0, 4.0)], 0.5);
        assert!(close(woe[0], 9.0_f64.ln()));
        assert!(close(woe[1], -(9.0_f64.ln())));
        assert!(iv.is_finite());
    }

    #[test]
    fn a_constant_column_is_one_bin_with_no_information() {
        let feature = numeric(&[Some(3.0); 10]);
        let bad = [
            true, false, false, false, true, false, false, false, false, false,
        ];
        let binning = bin(&feature, &bad, &BinningOptions::default());
        assert_eq!(binning.bins.len(), 1);
        assert_eq!(
            binning.bins[0].rule,
            BinRule::Range {
                lower: None,
                upper: None
            }
        );
        assert_eq!(binning.iv, 0.0);
        assert_eq!(binning.bins[0].woe, 0.0);
    }

    #[test]
    fn an_all_missing_column_is_one_missing_bin() {
        let feature = numeric(&[None; 6]);
        let binning = bin(
            &feature,
            &[true, false, false, true, false, false],
            &BinningOptions::default(),
        );
        assert_eq!(binning.bins.len(), 1);
        assert_eq!(binning.bins[0].rule, BinRule::Missing);
        assert_eq!(binning.iv, 0.0);
        assert_eq!(
            binning.bin_of(Cell::Number(5.0)),
            0,
            "falls back to the only bin"
        );
    }

    #[test]
    fn missing_and_special_values_get_their_own_bins_whatever_their_size() {
        // 40 regular values 1..=40 (bad when > 30), one missing (bad), one -1 (good).
        let mut values: Vec<Option<f64>> = (1..=40).map(|v| Some(v as f64)).collect();
        let mut bad: Vec<bool> = (1..=40).map(|v| v > 30).collect();
        values.push(None);
        bad.push(true);
        values.push(Some(-1.0));
        bad.push(false);
        let options = BinningOptions {
            special_values: vec![-1.0, 9999.0],
            ..BinningOptions::default()
        };
        let binning = bin(&numeric(&values), &bad, &options);
        assert_eq!(binning.bins[0].rule, BinRule::Missing);
        assert_eq!(binning.bins[0].bads, 1.0);
        assert_eq!(binning.bins[1].rule, BinRule::Special { value: -1.0 });
        assert_eq!(binning.bins[1].goods, 1.0);
        assert_eq!(binning.bin_of(Cell::Missing), 0);
        assert_eq!(binning.bin_of(Cell::Number(-1.0)), 1);
        // 9999 is declared but never seen: the riskiest bin, not the top range.
        let worst = binning.fallback_bin;
        assert_eq!(binning.bin_of(Cell::Number(9999.0)), worst);
        assert!(
            binning
                .bins
                .iter()
                .all(|b| b.woe >= binning.bins[worst].woe)
        );
        // The regular values split where the bad rate jumps, rising with the value.
        let ranges: Vec<&Bin> = binning.bins[2..].iter().collect();
        assert!(ranges.len() >= 2);
        for pair in ranges.windows(2) {
            let rate = |b: &Bin| b.bads / (b.goods + b.bads);
            assert!(rate(pair[0]) <= rate(pair[1]));
        }
        assert_eq!(binning.bin_of(Cell::Number(35.0)), 2 + ranges.len() - 1);
        assert_eq!(binning.bin_of(Cell::Number(-50.0)), 2);
    }

    #[test]
    fn small_prebins_merge_until_each_bin_holds_the_minimum_share() {
        let values: Vec<Option<f64>> = (0..100).map(|v| Some(v as f64)).collect();
        let bad: Vec<bool> = (0..100).map(|v| v % 3 == 0 || v > 80).collect();
        let options = BinningOptions {
            min_bin_share: 0.25,
            ..BinningOptions::default()
        };
        let binning = bin(&numeric(&values), &bad, &options);
        for b in &binning.bins {
            assert!(b.goods + b.bads >= 25.0, "{b:?}");
        }
        assert!(binning.bins.len() <= 4);
    }

    #[test]
    fn a_level_seen_once_is_pooled_with_the_rare_levels_and_takes_unseen_ones() {
        let mut values = vec![Some("a"); 50];
        values.extend(vec![Some("b"); 50]);
        values.push(Some("once"));
        let mut bad = vec![false; 45];
        bad.extend(vec![true; 5]);
        bad.extend(vec![true; 25]);
        bad.extend(vec![false; 25]);
        bad.push(true);
        let binning = bin(&categorical(&values), &bad, &BinningOptions::default());
        let pool = binning.fallback_bin;
        match &binning.bins[pool].rule {
            BinRule::Levels { levels, rare_pool } => {
                assert!(rare_pool);
                assert!(levels.contains(&"once".to_owned()));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(binning.bin_of(Cell::Level("never seen")), pool);
        assert_eq!(binning.bin_of(Cell::Level("once")), pool);
        assert_ne!(
            binning.bin_of(Cell::Level("a")),
            binning.bin_of(Cell::Level("b"))
        );
        assert!(binning.iv > 0.3);
    }

    #[test]
    fn unicode_levels_are_kept_as_written_and_ordered_by_bad_rate() {
        let mut values = vec![Some("微信支付"); 30];
        values.extend(vec![Some("Zürich"); 30]);
        values.extend(vec![Some("🙂"); 30]);
        let mut bad = vec![false; 30];
        bad.extend((0..30).map(|i| i < 15));
        bad.extend((0..30).map(|i| i < 25));
        let binning = bin(&categorical(&values), &bad, &BinningOptions::default());
        let levels: Vec<Vec<String>> = binning
            .bins
            .iter()
            .map(|b| match &b.rule {
                BinRule::Levels { levels, .. } => levels.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            levels,
            vec![
                vec!["微信支付".to_owned()],
                vec!["Zürich".to_owned()],
                vec!["🙂".to_owned()]
            ]
        );
        assert!(binning.bins[0].woe > binning.bins[1].woe);
        assert!(binning.bins[1].woe > binning.bins[2].woe);
        assert_eq!(binning.bin_of(Cell::Level("Zürich")), 1);
    }
}
