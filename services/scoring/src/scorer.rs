//! The active scorecard: loaded once at start-up from `SCORING_MODEL_PATH`, verified
//! against its sha256, and applied to a customer's [`FeatureVector`]. Without a usable
//! model, Evaluate and GetModelInfo answer UNAVAILABLE MODEL_UNAVAILABLE (the reason is
//! logged at start-up and kept for the error message).

use std::path::{Path, PathBuf};

use crate::features::FeatureVector;
use crate::model::{
    artefact::{Artefact, FORMAT},
    binning::BinRule,
    dataset::Cell,
};

/// A verified artefact.
#[derive(Debug, Clone)]
pub struct ActiveModel {
    pub artefact: Artefact,
    /// Its sha256 (verified).
    pub sha256: String,
}

/// The model Evaluate uses, or why there is none.
#[derive(Debug, Clone)]
pub enum ModelState {
    Active(std::sync::Arc<ActiveModel>),
    Unavailable(String),
}

/// A relative `path` is tried from the working directory, then from the workspace root
/// (so the default resolves under `make run`, the tests and `cargo run` alike).
pub fn resolve(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    let from_root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    if from_root.exists() {
        from_root
    } else {
        path.to_path_buf()
    }
}

/// Reads and verifies the artefact at `path` (resolved by [`resolve`]).
pub fn load(path: &Path) -> ModelState {
    let resolved = resolve(path);
    let loaded = std::fs::read(&resolved)
        .map_err(|err| format!("cannot read {}: {err}", resolved.display()))
        .and_then(|bytes| {
            serde_json::from_slice::<Artefact>(&bytes)
                .map_err(|err| format!("{} is not a scorecard artefact: {err}", resolved.display()))
        })
        .and_then(|artefact| {
            if artefact.format != FORMAT {
                return Err(format!(
                    "{} has format `{}`, expected `{FORMAT}`",
                    resolved.display(),
                    artefact.format
                ));
            }
            if !artefact.verify() {
                return Err(format!(
                    "{} fails its sha256 check (edited or truncated)",
                    resolved.display()
                ));
            }
            let sha256 = artefact.sha256.clone().unwrap_or_default();
            Ok(ActiveModel { artefact, sha256 })
        });
    match loaded {
        Ok(model) => {
            tracing::info!(
                model_version = %model.artefact.model_version,
                sha256 = %model.sha256,
                "scorecard loaded"
            );
            ModelState::Active(std::sync::Arc::new(model))
        }
        Err(why) => {
            tracing::warn!(%why, "no usable scorecard: Evaluate and GetModelInfo answer MODEL_UNAVAILABLE");
            ModelState::Unavailable(why)
        }
    }
}

/// One model feature's part in a score.
#[derive(Debug, Clone, PartialEq)]
pub struct Contribution {
    pub feature: String,
    pub value: Option<f64>,
    pub bin_label: String,
    pub woe: f64,
    pub points: i32,
    /// Points of the feature's best bin.
    pub max_points: i32,
}

impl Contribution {
    pub fn points_lost(&self) -> i32 {
        (self.max_points - self.points).max(0)
    }
}

/// A score with its parts: score = base_points + Σ contributions' points.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub score: i32,
    pub base_points: i32,
    pub probability_of_default: f64,
    /// In the model's feature order.
    pub contributions: Vec<Contribution>,
}

impl ActiveModel {
    pub fn version(&self) -> &str {
        &self.artefact.model_version
    }

    /// Scores `vector`. A model feature the vector does not have (a model trained on
    /// other columns) is missing: its missing bin, else the riskiest bin.
    pub fn score(&self, vector: &FeatureVector) -> Scored {
        let card = &self.artefact.scorecard;
        let values: Vec<Option<f64>> = card
            .features
            .iter()
            .map(|feature| vector.get(&feature.name).flatten())
            .collect();
        let cells: Vec<Cell<'_>> = values
            .iter()
            .map(|value| value.map_or(Cell::Missing, Cell::Number))
            .collect();
        let score = card.score_cells(&cells);
        let contributions = card
            .features
            .iter()
            .zip(&values)
            .zip(&score.bins)
            .map(|((feature, value), bin)| Contribution {
                feature: feature.name.clone(),
                value: *value,
                bin_label: bin_label(&feature.bins[*bin].rule),
                woe: feature.bins[*bin].woe,
                points: feature.bins[*bin].points,
                max_points: feature.bins.iter().map(|b| b.points).max().unwrap_or(0),
            })
            .collect();
        Scored {
            score: score.score,
            base_points: card.base_points,
            probability_of_default: card.scaling.probability_of_default(f64::from(score.score)),
            contributions,
        }
    }
}

/// A bin as people read it: "missing", "= -1", "(0.05, 0.1]", "{a, b}".
pub fn bin_label(rule: &BinRule) -> String {
    match rule {
        BinRule::Missing => "missing".to_owned(),
        BinRule::Special { value } => format!("= {value}"),
        BinRule::Range { lower, upper } => format!(
            "({}, {}]",
            lower.map_or("-inf".to_owned(), |v| v.to_string()),
            upper.map_or("+inf".to_owned(), |v| v.to_string())
        ),
        BinRule::Levels { levels, rare_pool } => {
            let mut names = levels.clone();
            if *rare_pool {
                names.push("other".to_owned());
            }
            format!("{{{}}}", names.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_read_as_intervals_open_below_closed_above() {
        assert_eq!(bin_label(&BinRule::Missing), "missing");
        assert_eq!(
            bin_label(&BinRule::Range {
                lower: Some(0.05),
                upper: Some(0.1)
            }),
            "(0.05, 0.1]"
        );
        assert_eq!(
            bin_label(&BinRule::Range {
                lower: None,
                upper: Some(3.0)
            }),
            "(-inf, 3]"
        );
        assert_eq!(
            bin_label(&BinRule::Levels {
                levels: vec!["a".into(), "b".into()],
                rare_pool: true
            }),
            "{a, b, other}"
        );
    }

    #[test]
    fn a_missing_file_is_unavailable_with_its_path() {
        match load(Path::new("/nonexistent/model.json")) {
            ModelState::Unavailable(why) => assert!(why.contains("/nonexistent/model.json")),
            ModelState::Active(_) => panic!("no such file"),
        }
    }
}
