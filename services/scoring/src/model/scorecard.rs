//! Training a scorecard on some rows of a [`Dataset`], and scoring with it.
//!
//! Steps: bin every feature on the training rows; keep the features with IV ≥
//! [`MIN_IV`] (at most [`MAX_FEATURES`], highest IV first); fit ln(odds good:bad) =
//! α + Σ βⱼ·WOEⱼ by L2 IRLS; drop a feature whose β came out ≤ 0 (its WOE points the
//! other way once the others are in: collinearity, not evidence) and refit; scale.
//!
//! Points: each bin gets round(factor · βⱼ · WOE) and the card a base of
//! round(offset + factor · α); the score is the base plus the points of the applicant's
//! bins, so an explanation that lists the base and the bins adds up to the score exactly.
//! The rounding costs at most ½ point per feature plus ½ against the unrounded
//! offset + factor · ln(odds).

use serde::{Deserialize, Serialize};

use super::binning::{BinningOptions, FeatureBinning, bin_feature};
use super::dataset::{Cell, Column, Dataset, InputError};
use super::logistic::{self, Design, LogisticOptions};
use super::scaling::ScorecardScaling;

/// Smallest information value a feature needs to enter the model (below 0.02 a
/// characteristic is conventionally "not predictive").
pub const MIN_IV: f64 = 0.02;
/// Most features in one model (keeps the normal equations small and the card readable).
pub const MAX_FEATURES: usize = 60;

/// Every threshold of a training run; the artefact records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    pub binning: BinningOptions,
    pub min_iv: f64,
    pub max_features: usize,
    pub logistic: LogisticOptions,
    pub scaling: ScorecardScaling,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            binning: BinningOptions::default(),
            min_iv: MIN_IV,
            max_features: MAX_FEATURES,
            logistic: LogisticOptions::default(),
            scaling: ScorecardScaling::default(),
        }
    }
}

/// Why a feature is not in the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    IvBelowThreshold,
    BeyondMaxFeatures,
    NonPositiveCoefficient,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RejectedFeature {
    pub name: String,
    pub iv: f64,
    pub reason: RejectReason,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FitSummary {
    pub iterations: usize,
    pub converged: bool,
}

/// A trained scorecard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scorecard {
    pub scaling: ScorecardScaling,
    /// α of ln(odds good:bad) = α + Σ βⱼ·WOEⱼ.
    pub intercept: f64,
    /// round(offset + factor · α): the points every applicant starts from.
    pub base_points: i32,
    /// The model's features, in the file's column order, with their bins, WOE, β and
    /// points.
    pub features: Vec<FeatureBinning>,
    /// The other features, in column order, with why.
    pub rejected: Vec<RejectedFeature>,
    pub fit: FitSummary,
}

/// One applicant's score, with the bin and points of each model feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Score {
    pub score: i32,
    pub bins: Vec<usize>,
    pub points: Vec<i32>,
}

/// Why training could not produce a model.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainError {
    /// The training rows hold only one class.
    OneClass,
    /// No feature reached the IV threshold (or every one was dropped).
    NoInformativeFeature {
        min_iv: f64,
        best: Option<(String, f64)>,
    },
    /// The regression's system was singular.
    Singular,
}

impl std::fmt::Display for TrainError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrainError::OneClass => write!(f, "the training rows hold only one target class"),
            TrainError::NoInformativeFeature { min_iv, best } => {
                write!(f, "no feature reaches IV {min_iv}")?;
                if let Some((name, iv)) = best {
                    write!(f, " (the best, `{name}`, has {iv:.4})")?;
                }
                Ok(())
            }
            TrainError::Singular => write!(f, "the regression's normal equations are singular"),
        }
    }
}

impl std::error::Error for TrainError {}

/// Trains on `rows` (ascending row indexes of `data`).
pub fn train(
    data: &Dataset,
    rows: &[usize],
    options: &TrainOptions,
) -> Result<Scorecard, TrainError> {
    let bads = rows.iter().filter(|row| data.bad[**row]).count();
    if bads == 0 || bads == rows.len() {
        return Err(TrainError::OneClass);
    }
    let binnings: Vec<FeatureBinning> = data
        .features
        .iter()
        .map(|feature| bin_feature(feature, &data.bad, &data.weights, rows, &options.binning))
        .collect();

    let mut rejected: Vec<(usize, RejectReason)> = Vec::new();
    let mut selected: Vec<usize> = Vec::new();
    for (index, binning) in binnings.iter().enumerate() {
        if binning.iv >= options.min_iv {
            selected.push(index);
        } else {
            rejected.push((index, RejectReason::IvBelowThreshold));
        }
    }
    if selected.len() > options.max_features {
        // Highest IV first; equal IVs keep column order.
        selected.sort_by(|a, b| binnings[*b].iv.total_cmp(&binnings[*a].iv));
        for index in selected.split_off(options.max_features) {
            rejected.push((index, RejectReason::BeyondMaxFeatures));
        }
        selected.sort_unstable();
    }

    // WOE of each training row, per feature (computed once; refits pick columns).
    let woe: Vec<Vec<f64>> = binnings
        .iter()
        .zip(&data.features)
        .map(|(binning, feature)| {
            rows.iter()
                .map(|row| binning.woe_of(feature.column.cell(*row)))
                .collect()
        })
        .collect();
    let y: Vec<f64> = rows
        .iter()
        .map(|row| if data.bad[*row] { 0.0 } else { 1.0 })
        .collect();
    let weights: Vec<f64> = rows.iter().map(|row| data.weights[*row]).collect();

    let fit = loop {
        if selected.is_empty() {
            let best = binnings
                .iter()
                .max_by(|a, b| a.iv.total_cmp(&b.iv))
                .map(|b| (b.name.clone(), b.iv));
            return Err(TrainError::NoInformativeFeature {
                min_iv: options.min_iv,
                best,
            });
        }
        let woe = &woe;
        let x: Vec<f64> = (0..rows.len())
            .flat_map(|i| selected.iter().map(move |feature| woe[*feature][i]))
            .collect();
        let design = Design {
            x: &x,
            columns: selected.len(),
            y: &y,
            weights: &weights,
        };
        let fit = logistic::fit(&design, &options.logistic).map_err(|_| TrainError::Singular)?;
        let worst = (0..selected.len())
            .filter(|j| fit.coefficients[*j] <= 0.0)
            .min_by(|a, b| fit.coefficients[*a].total_cmp(&fit.coefficients[*b]));
        match worst {
            Some(j) => {
                let index = selected.remove(j);
                rejected.push((index, RejectReason::NonPositiveCoefficient));
            }
            None => break fit,
        }
    };

    let scaling = options.scaling;
    let factor = scaling.factor();
    let mut binnings: Vec<Option<FeatureBinning>> = binnings.into_iter().map(Some).collect();
    let features = selected
        .iter()
        .zip(&fit.coefficients)
        .map(|(index, beta)| {
            let mut binning = binnings[*index].take().expect("each feature selected once");
            binning.coefficient = *beta;
            for bin in &mut binning.bins {
                bin.points = round_points(factor * beta * bin.woe);
            }
            binning
        })
        .collect();
    rejected.sort_by_key(|(index, _)| *index);
    let rejected = rejected
        .into_iter()
        .map(|(index, reason)| {
            let feature = &data.features[index];
            let iv = binnings[index].as_ref().map_or(0.0, |b| b.iv);
            RejectedFeature {
                name: feature.name.clone(),
                iv,
                reason,
            }
        })
        .collect();
    Ok(Scorecard {
        scaling,
        intercept: fit.intercept,
        base_points: round_points(scaling.score(fit.intercept)),
        features,
        rejected,
        fit: FitSummary {
            iterations: fit.iterations,
            converged: fit.converged,
        },
    })
}

/// Points are whole numbers, rounded half away from zero.
fn round_points(points: f64) -> i32 {
    points.round() as i32
}

impl Scorecard {
    /// The score of one applicant, given the cell of each model feature (in
    /// `self.features` order).
    pub fn score_cells(&self, cells: &[Cell<'_>]) -> Score {
        assert_eq!(
            cells.len(),
            self.features.len(),
            "one cell per model feature"
        );
        let bins: Vec<usize> = self
            .features
            .iter()
            .zip(cells)
            .map(|(feature, cell)| feature.bin_of(*cell))
            .collect();
        let points: Vec<i32> = self
            .features
            .iter()
            .zip(&bins)
            .map(|(feature, bin)| feature.bins[*bin].points)
            .collect();
        Score {
            score: self.base_points + points.iter().sum::<i32>(),
            bins,
            points,
        }
    }

    /// The model features' columns in `data`, by name.
    pub fn columns<'a>(&self, data: &'a Dataset) -> Result<Vec<&'a Column>, InputError> {
        self.features
            .iter()
            .map(|feature| {
                data.feature(&feature.name)
                    .map(|f| &f.column)
                    .ok_or_else(|| {
                        InputError::new(
                            "--data",
                            format!("no column `{}`, which the model needs", feature.name),
                        )
                    })
            })
            .collect()
    }

    /// The scores of `rows` of `data`.
    pub fn scores(&self, data: &Dataset, rows: &[usize]) -> Result<Vec<i32>, InputError> {
        let columns = self.columns(data)?;
        let mut cells = Vec::with_capacity(columns.len());
        Ok(rows
            .iter()
            .map(|row| {
                cells.clear();
                cells.extend(columns.iter().map(|column| column.cell(*row)));
                self.score_cells(&cells).score
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dataset::{Feature, LoadOptions};

    /// 200 rows: `signal` (bad rate 10% / 50% by half), `mirror` (the same signal as
    /// text), `noise` (unrelated), `constant`.
    fn table() -> Dataset {
        let mut csv = String::from("signal,level,noise,constant,y\n");
        for i in 0..200 {
            let high = i % 2 == 0;
            let bad = if high {
                i % 20 < 10
            } else {
                i % 20 == 1 || i % 20 == 11
            };
            let noise = (i * 7919) % 13;
            csv.push_str(&format!(
                "{},{},{},5,{}\n",
                if high { 10 + i % 5 } else { i % 5 },
                ["a", "b", "c"][i % 3],
                noise,
                if bad { "bad" } else { "good" }
            ));
        }
        Dataset::from_csv(
            csv.as_bytes(),
            "t.csv",
            &LoadOptions {
                target: "y".into(),
                bad_value: Some("bad".into()),
                categorical: vec![],
            },
        )
        .unwrap()
    }

    #[test]
    fn weak_features_are_rejected_and_the_score_is_the_sum_of_the_points() {
        let data = table();
        let rows: Vec<usize> = (0..data.rows()).collect();
        let card = train(&data, &rows, &TrainOptions::default()).unwrap();
        let names: Vec<&str> = card.features.iter().map(|f| f.name.as_str()).collect();
        assert!(names.contains(&"signal"), "{names:?}");
        assert!(card.rejected.iter().any(|r| r.name == "constant"
            && r.reason == RejectReason::IvBelowThreshold
            && r.iv == 0.0));
        assert!(card.features.iter().all(|f| f.coefficient > 0.0));
        let columns = card.columns(&data).unwrap();
        for row in 0..data.rows() {
            let cells: Vec<Cell<'_>> = columns.iter().map(|c| c.cell(row)).collect();
            let score = card.score_cells(&cells);
            assert_eq!(
                score.score,
                card.base_points + score.points.iter().sum::<i32>()
            );
            // Within rounding of the unrounded offset + factor · ln(odds).
            let log_odds = card.intercept
                + card
                    .features
                    .iter()
                    .zip(&score.bins)
                    .map(|(f, b)| f.coefficient * f.bins[*b].woe)
                    .sum::<f64>();
            let exact = card.scaling.score(log_odds);
            let slack = 0.5 * (card.features.len() + 1) as f64;
            assert!((f64::from(score.score) - exact).abs() <= slack);
        }
        // Low signal (rows with odd i) is the safer half: it scores higher.
        let scores = card.scores(&data, &[0, 1]).unwrap();
        assert!(scores[1] > scores[0], "{scores:?}");
    }

    #[test]
    fn a_table_without_information_is_refused_naming_the_best_feature() {
        let data = Dataset {
            features: vec![Feature {
                name: "flat".into(),
                column: Column::Numeric(vec![Some(1.0); 4]),
            }],
            bad: vec![true, false, false, false],
            weights: vec![1.0; 4],
            target: "y".into(),
            bad_value: "b".into(),
            good_value: "g".into(),
        };
        let err = train(&data, &[0, 1, 2, 3], &TrainOptions::default()).unwrap_err();
        assert_eq!(
            err,
            TrainError::NoInformativeFeature {
                min_iv: MIN_IV,
                best: Some(("flat".into(), 0.0))
            }
        );
        assert_eq!(
            train(&data, &[1, 2], &TrainOptions::default()),
            Err(TrainError::OneClass)
        );
    }
}
