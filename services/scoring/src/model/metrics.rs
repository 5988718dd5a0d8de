//! Discrimination metrics of a risk ranking: ROC AUC (Mann-Whitney, ties counted half),
//! the Kolmogorov-Smirnov statistic and the Gini coefficient.
//!
//! Every function takes `risk` (higher = more likely bad; pass the negated score of a
//! scorecard) and `bad` per row, and returns `None` when either class is absent, where
//! the statistic is undefined.

use serde::{Deserialize, Serialize};

/// AUC, KS and Gini of one ranking, with the rows it was measured on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Discrimination {
    pub rows: usize,
    pub auc: f64,
    pub ks: f64,
    pub gini: f64,
}

impl Discrimination {
    /// All three on one ranking; `None` when a class is absent.
    pub fn measure(risk: &[f64], bad: &[bool]) -> Option<Self> {
        let auc = roc_auc(risk, bad)?;
        Some(Self {
            rows: risk.len(),
            auc,
            ks: ks(risk, bad)?,
            gini: gini(auc),
        })
    }
}

/// (bads, goods); `None` when either is absent.
fn class_sizes(risk: &[f64], bad: &[bool]) -> Option<(f64, f64)> {
    assert_eq!(risk.len(), bad.len(), "one label per prediction");
    let n_bad = bad.iter().filter(|b| **b).count() as f64;
    let n_good = bad.len() as f64 - n_bad;
    (n_bad > 0.0 && n_good > 0.0).then_some((n_bad, n_good))
}

/// Row indexes sorted by risk, ascending (total order, so NaN cannot scramble it).
fn ascending(risk: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..risk.len()).collect();
    order.sort_by(|a, b| risk[*a].total_cmp(&risk[*b]));
    order
}

/// The runs of equal risk in `order`, as index ranges into it.
fn tie_groups<'a>(
    order: &'a [usize],
    risk: &'a [f64],
) -> impl Iterator<Item = std::ops::Range<usize>> + 'a {
    let mut start = 0;
    std::iter::from_fn(move || {
        if start >= order.len() {
            return None;
        }
        let mut end = start + 1;
        while end < order.len() && risk[order[end]] == risk[order[start]] {
            end += 1;
        }
        let group = start..end;
        start = end;
        Some(group)
    })
}

/// P(risk of a random bad > risk of a random good) + ½ P(equal): the Mann-Whitney U of the
/// bads over n_bad·n_good, from mid-ranks.
pub fn roc_auc(risk: &[f64], bad: &[bool]) -> Option<f64> {
    let (n_bad, n_good) = class_sizes(risk, bad)?;
    let order = ascending(risk);
    let mut bad_rank_sum = 0.0;
    for group in tie_groups(&order, risk) {
        // Ranks are 1-based; a tie shares the mean of the ranks it spans.
        let mid_rank = (group.start + 1 + group.end) as f64 / 2.0;
        let bads = order[group].iter().filter(|row| bad[**row]).count() as f64;
        bad_rank_sum += mid_rank * bads;
    }
    let u = bad_rank_sum - n_bad * (n_bad + 1.0) / 2.0;
    Some(u / (n_bad * n_good))
}

/// max over thresholds t of |F_bad(t) − F_good(t)|, the empirical distribution functions
/// of risk among bads and goods; tied risks move together (a threshold cannot split them).
pub fn ks(risk: &[f64], bad: &[bool]) -> Option<f64> {
    let (n_bad, n_good) = class_sizes(risk, bad)?;
    let order = ascending(risk);
    let (mut bads, mut goods, mut best) = (0.0, 0.0, 0.0_f64);
    for group in tie_groups(&order, risk) {
        for row in &order[group] {
            if bad[*row] {
                bads += 1.0;
            } else {
                goods += 1.0;
            }
        }
        best = best.max((bads / n_bad - goods / n_good).abs());
    }
    Some(best)
}

/// Gini = 2·AUC − 1.
pub fn gini(auc: f64) -> f64 {
    2.0 * auc - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_a_tie_between_a_bad_and_a_good_as_half() {
        // Bads at risk 2 and 3, goods at 1 and 2. Pairs (bad, good): (2,1)=1, (2,2)=½,
        // (3,1)=1, (3,2)=1 → 3.5 / 4.
        let risk = [1.0, 2.0, 2.0, 3.0];
        let bad = [false, true, false, true];
        assert_eq!(roc_auc(&risk, &bad), Some(0.875));
        assert_eq!(gini(0.875), 0.75);
    }

    #[test]
    fn auc_is_one_for_a_perfect_ranking_zero_for_a_reversed_one_half_for_all_tied() {
        let bad = [false, false, true, true];
        assert_eq!(roc_auc(&[1.0, 2.0, 3.0, 4.0], &bad), Some(1.0));
        assert_eq!(roc_auc(&[4.0, 3.0, 2.0, 1.0], &bad), Some(0.0));
        assert_eq!(roc_auc(&[7.0; 4], &bad), Some(0.5));
    }

    #[test]
    fn ks_is_the_largest_gap_between_the_class_distributions() {
        // Thresholds: ≤1: F_bad 0, F_good ½ → ½; ≤2: ½, 1 → ½; ≤3: 1, 1 → 0.
        let risk = [1.0, 2.0, 2.0, 3.0];
        let bad = [false, true, false, true];
        assert_eq!(ks(&risk, &bad), Some(0.5));
        // Goods 1, 2, 3; bads 4, 5: fully separated.
        let risk = [1.0, 2.0, 3.0, 4.0, 5.0];
        let bad = [false, false, false, true, true];
        assert_eq!(ks(&risk, &bad), Some(1.0));
        // Goods 1, 3; bads 2, 4: F after 1: (0, ½) → ½; after 2: (½, ½) → 0; after 3:
        // (½, 1) → ½.
        assert_eq!(
            ks(&[1.0, 2.0, 3.0, 4.0], &[false, true, false, true]),
            Some(0.5)
        );
    }

    #[test]
    fn metrics_are_undefined_without_both_classes() {
        assert_eq!(roc_auc(&[1.0, 2.0], &[true, true]), None);
        assert_eq!(ks(&[1.0, 2.0], &[false, false]), None);
        assert_eq!(Discrimination::measure(&[], &[]), None);
    }
}
