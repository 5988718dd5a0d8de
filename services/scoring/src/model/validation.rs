//! Honest estimates of a scorecard's discrimination: a stratified hold-out split and
//! repeated stratified K-fold cross-validation. Every fold refits the whole pipeline —
//! bins, WOE, selection, regression — on its training rows only, so nothing of the
//! scored fold leaks into its model.
//!
//! Assignment is seeded (ChaCha8, so the same seed gives the same folds on every
//! platform and release of this code): per repeat, the bad rows and the good rows are
//! shuffled separately and dealt round-robin to the folds, bads first, goods carrying on
//! where the bads stopped, so each fold has the population's bad rate and folds differ
//! in size by at most one row.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::dataset::Dataset;
use super::metrics::{self, Discrimination};
use super::scorecard::{self, TrainError, TrainOptions};

/// Default folds and repeats of `cross-validate`.
pub const FOLDS: usize = 5;
pub const REPEATS: usize = 5;
/// Default seed of every random choice (hold-out split, fold assignment).
pub const SEED: u64 = 42;
/// Default share of rows `train` holds out to measure the model on.
pub const HOLDOUT_SHARE: f64 = 0.3;

/// The fold (0..folds) of each row, for one repeat.
pub fn stratified_folds(bad: &[bool], folds: usize, rng: &mut ChaCha8Rng) -> Vec<usize> {
    assert!(folds >= 1, "at least one fold");
    let mut bads: Vec<usize> = (0..bad.len()).filter(|row| bad[*row]).collect();
    let mut goods: Vec<usize> = (0..bad.len()).filter(|row| !bad[*row]).collect();
    bads.shuffle(rng);
    goods.shuffle(rng);
    let mut fold_of = vec![0; bad.len()];
    for (position, row) in bads.iter().chain(&goods).enumerate() {
        fold_of[*row] = position % folds;
    }
    fold_of
}

/// (training rows, hold-out rows), both ascending: round(share · n) of the bads and of
/// the goods, drawn at random with `seed`, are held out.
pub fn holdout_split(bad: &[bool], share: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut held = vec![false; bad.len()];
    for class in [true, false] {
        let mut rows: Vec<usize> = (0..bad.len()).filter(|row| bad[*row] == class).collect();
        rows.shuffle(&mut rng);
        let take = (share * rows.len() as f64).round() as usize;
        for row in &rows[..take.min(rows.len())] {
            held[*row] = true;
        }
    }
    let (holdout, train): (Vec<usize>, Vec<usize>) = (0..bad.len()).partition(|row| held[*row]);
    (train, holdout)
}

/// The result printed by `scoring cross-validate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CrossValidation {
    pub rows: usize,
    pub folds: usize,
    pub repeats: usize,
    pub seed: u64,
    pub auc_mean: f64,
    /// Sample standard deviation (n − 1) of the fold AUCs.
    pub auc_std: f64,
    pub ks_mean: f64,
    /// 2 · auc_mean − 1 (the mean of the fold Ginis).
    pub gini_mean: f64,
    /// Per fold, repeat by repeat.
    pub fold_aucs: Vec<f64>,
    pub fold_ks: Vec<f64>,
}

/// `repeats` × `folds` stratified cross-validation of the training pipeline on `data`.
pub fn cross_validate(
    data: &Dataset,
    options: &TrainOptions,
    folds: usize,
    repeats: usize,
    seed: u64,
) -> Result<CrossValidation, TrainError> {
    assert!(folds >= 2 && repeats >= 1, "at least 2 folds and 1 repeat");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut fold_aucs = Vec::with_capacity(folds * repeats);
    let mut fold_ks = Vec::with_capacity(folds * repeats);
    for _ in 0..repeats {
        let fold_of = stratified_folds(&data.bad, folds, &mut rng);
        for fold in 0..folds {
            let (test, train): (Vec<usize>, Vec<usize>) =
                (0..data.rows()).partition(|row| fold_of[*row] == fold);
            let card = scorecard::train(data, &train, options)?;
            let measured = measure(&card, data, &test).ok_or(TrainError::OneClass)?;
            fold_aucs.push(measured.auc);
            fold_ks.push(measured.ks);
        }
    }
    let auc_mean = mean(&fold_aucs);
    Ok(CrossValidation {
        rows: data.rows(),
        folds,
        repeats,
        seed,
        auc_mean,
        auc_std: sample_std(&fold_aucs, auc_mean),
        ks_mean: mean(&fold_ks),
        gini_mean: metrics::gini(auc_mean),
        fold_aucs,
        fold_ks,
    })
}

/// AUC, KS and Gini of `card`'s integer scores on `rows` (`None` when a class is absent).
pub fn measure(
    card: &scorecard::Scorecard,
    data: &Dataset,
    rows: &[usize],
) -> Option<Discrimination> {
    // The model's columns come from the same table, so they are there.
    let scores = card.scores(data, rows).ok()?;
    let risk: Vec<f64> = scores.iter().map(|score| -f64::from(*score)).collect();
    let bad: Vec<bool> = rows.iter().map(|row| data.bad[*row]).collect();
    Discrimination::measure(&risk, &bad)
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

fn sample_std(values: &[f64], mean: f64) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let squares: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    (squares / (values.len() - 1) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_keep_the_bad_rate_and_sizes_within_one_row() {
        let bad: Vec<bool> = (0..103).map(|i| i % 4 == 0).collect();
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let fold_of = stratified_folds(&bad, 5, &mut rng);
        let total_bads = bad.iter().filter(|b| **b).count();
        for fold in 0..5 {
            let rows: Vec<usize> = (0..103).filter(|r| fold_of[*r] == fold).collect();
            let bads = rows.iter().filter(|r| bad[**r]).count();
            assert!((20..=21).contains(&rows.len()), "{}", rows.len());
            assert!(bads == total_bads / 5 || bads == total_bads / 5 + 1);
        }
        let mut again = ChaCha8Rng::seed_from_u64(7);
        assert_eq!(stratified_folds(&bad, 5, &mut again), fold_of);
    }

    #[test]
    fn the_holdout_takes_the_share_of_each_class() {
        let bad: Vec<bool> = (0..100).map(|i| i < 20).collect();
        let (train, holdout) = holdout_split(&bad, 0.3, 1);
        assert_eq!((train.len(), holdout.len()), (70, 30));
        assert_eq!(holdout.iter().filter(|r| bad[**r]).count(), 6);
        assert!(train.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(holdout_split(&bad, 0.3, 1), (train, holdout));
        assert_eq!(holdout_split(&bad, 0.0, 1).1, Vec::<usize>::new());
    }

    #[test]
    fn sample_std_by_hand() {
        // Values 1, 2, 3: mean 2, squares 1 + 0 + 1 = 2, / (3 − 1) = 1.
        assert_eq!(sample_std(&[1.0, 2.0, 3.0], 2.0), 1.0);
        assert_eq!(sample_std(&[5.0], 5.0), 0.0);
    }
}
