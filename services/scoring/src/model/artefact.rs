//! The versioned JSON artefact of a trained scorecard.
//!
//! Reproducible by construction: no timestamps, no host or path (only the data file's
//! name and sha256), no map with an unspecified order (structs and vectors only), floats
//! printed by serde_json's shortest round-trip form. The same data, options and seed
//! therefore give the same bytes. `sha256` is the hex SHA-256 of the canonical form: the
//! compact JSON (`serde_json::to_vec`) of the artefact without its `sha256` field;
//! [`Artefact::verify`] recomputes it.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::dataset::Dataset;
use super::metrics::Discrimination;
use super::scorecard::{self, Scorecard, TrainError, TrainOptions};
use super::validation;

/// The artefact format; bump on an incompatible change.
pub const FORMAT: &str = "microloan.scorecard.v1";

/// Where the model came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// The data file's name (no directory: the artefact must not depend on where the
    /// file sat).
    pub data_file: String,
    /// SHA-256 of the data file's bytes.
    pub data_sha256: String,
    pub rows: usize,
    pub train_rows: usize,
    pub holdout_rows: usize,
    pub holdout_share: f64,
    pub seed: u64,
    pub target: String,
    pub bad_value: String,
    pub good_value: String,
    /// The columns declared categorical (others were detected).
    pub categorical: Vec<String>,
}

/// Discrimination on the training rows and on the hold-out (absent without one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingMetrics {
    pub train: Discrimination,
    pub holdout: Option<Discrimination>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artefact {
    pub format: String,
    pub model_version: String,
    pub created_from: Provenance,
    pub options: TrainOptions,
    pub scorecard: Scorecard,
    pub metrics: TrainingMetrics,
    /// The training rows' score distribution, the reference of the live PSI
    /// (GetModelInfo); absent in artefacts written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_scores: Option<ScoreDistribution>,
    /// Hex SHA-256 of the canonical JSON without this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

/// Scores in (at most) [`SCORE_BANDS`] quantile bands: band k holds the scores in
/// (edges[k-1], edges[k]], the first band everything up to edges[0], the last band
/// everything above the last edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreDistribution {
    pub edges: Vec<i32>,
    /// Share of the rows in each band (edges.len() + 1 of them, summing to 1).
    pub shares: Vec<f64>,
}

/// Deciles: the conventional PSI resolution.
pub const SCORE_BANDS: usize = 10;

impl ScoreDistribution {
    /// Decile edges of `scores` (ties merged, so fewer bands when scores repeat); `None`
    /// without scores.
    pub fn of_scores(scores: &[i32]) -> Option<Self> {
        if scores.is_empty() {
            return None;
        }
        let mut sorted = scores.to_vec();
        sorted.sort_unstable();
        let mut edges: Vec<i32> = (1..SCORE_BANDS)
            .map(|k| sorted[(k * sorted.len() / SCORE_BANDS).saturating_sub(1)])
            .collect();
        edges.dedup();
        if edges.last() == sorted.last() {
            edges.pop();
        }
        let mut counts = vec![0_usize; edges.len() + 1];
        for score in &sorted {
            counts[Self::band_of(&edges, *score)] += 1;
        }
        let shares = counts
            .iter()
            .map(|count| *count as f64 / sorted.len() as f64)
            .collect();
        Some(Self { edges, shares })
    }

    /// The band of `score`.
    pub fn band_of(edges: &[i32], score: i32) -> usize {
        edges.partition_point(|edge| *edge < score)
    }
}

/// The data file as the artefact names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSource {
    pub file_name: String,
    pub sha256: String,
}

impl DataSource {
    pub fn new(file_name: impl Into<String>, bytes: &[u8]) -> Self {
        Self {
            file_name: file_name.into(),
            sha256: sha256_hex(bytes),
        }
    }

    /// `<file stem>.seed<seed>.<first 8 hex of the data's sha256>`: names the data and the
    /// split, and changes when either does.
    pub fn default_model_version(&self, seed: u64) -> String {
        let stem = self
            .file_name
            .rsplit_once('.')
            .map_or(self.file_name.as_str(), |(stem, _)| stem);
        format!("{stem}.seed{seed}.{}", &self.sha256[..8])
    }
}

/// How `train` runs.
#[derive(Debug, Clone, PartialEq)]
pub struct TrainRun {
    pub options: TrainOptions,
    pub holdout_share: f64,
    pub seed: u64,
    pub model_version: Option<String>,
    /// The columns declared categorical, for the record.
    pub categorical: Vec<String>,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// Splits off the hold-out, trains on the rest, measures both and seals the artefact.
pub fn train_artefact(
    data: &Dataset,
    source: &DataSource,
    run: &TrainRun,
) -> Result<Artefact, TrainError> {
    let (train_rows, holdout_rows) =
        validation::holdout_split(&data.bad, run.holdout_share, run.seed);
    let card = scorecard::train(data, &train_rows, &run.options)?;
    let train = validation::measure(&card, data, &train_rows).ok_or(TrainError::OneClass)?;
    let holdout = validation::measure(&card, data, &holdout_rows);
    let training_scores = card
        .scores(data, &train_rows)
        .ok()
        .and_then(|scores| ScoreDistribution::of_scores(&scores));
    let artefact = Artefact {
        format: FORMAT.to_owned(),
        model_version: run
            .model_version
            .clone()
            .unwrap_or_else(|| source.default_model_version(run.seed)),
        created_from: Provenance {
            data_file: source.file_name.clone(),
            data_sha256: source.sha256.clone(),
            rows: data.rows(),
            train_rows: train_rows.len(),
            holdout_rows: holdout_rows.len(),
            holdout_share: run.holdout_share,
            seed: run.seed,
            target: data.target.clone(),
            bad_value: data.bad_value.clone(),
            good_value: data.good_value.clone(),
            categorical: run.categorical.clone(),
        },
        options: run.options.clone(),
        scorecard: card,
        metrics: TrainingMetrics { train, holdout },
        training_scores,
        sha256: None,
    };
    Ok(artefact.sealed())
}

impl Artefact {
    /// The canonical bytes the sha256 is taken over.
    pub fn canonical_json(&self) -> Vec<u8> {
        let unsealed = Artefact {
            sha256: None,
            ..self.clone()
        };
        serde_json::to_vec(&unsealed).expect("the artefact is plain data")
    }

    /// With `sha256` set.
    pub fn sealed(mut self) -> Self {
        self.sha256 = Some(sha256_hex(&self.canonical_json()));
        self
    }

    /// True when `sha256` matches the content.
    pub fn verify(&self) -> bool {
        self.sha256.as_deref() == Some(sha256_hex(&self.canonical_json()).as_str())
    }

    /// The file form: pretty JSON and a final newline.
    pub fn to_pretty_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).expect("the artefact is plain data");
        text.push('\n');
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dataset::LoadOptions;

    fn csv() -> String {
        let mut text = String::from("amount,channel,y\n");
        for i in 0..300_usize {
            let amount = (i * 37) % 100;
            let channel = ["web", "app", "agent", ""][i % 4];
            let bad = (amount > 70 && i % 3 != 0) || (channel == "agent" && i % 5 == 0);
            text.push_str(&format!("{amount},{channel},{}\n", u8::from(bad)));
        }
        text
    }

    fn run(seed: u64) -> Artefact {
        run_with_holdout(seed, validation::HOLDOUT_SHARE)
    }

    fn run_with_holdout(seed: u64, holdout_share: f64) -> Artefact {
        let text = csv();
        let data = Dataset::from_csv(
            text.as_bytes(),
            "loans.csv",
            &LoadOptions {
                target: "y".into(),
                bad_value: Some("1".into()),
                categorical: vec![],
            },
        )
        .unwrap();
        let source = DataSource::new("loans.csv", text.as_bytes());
        let run = TrainRun {
            options: TrainOptions::default(),
            holdout_share,
            seed,
            model_version: None,
            categorical: vec![],
        };
        train_artefact(&data, &source, &run).unwrap()
    }

    #[test]
    fn the_same_data_and_seed_give_the_same_bytes_and_sha256() {
        let (first, second) = (run(9), run(9));
        assert_eq!(first.to_pretty_json(), second.to_pretty_json());
        assert_eq!(first.sha256, second.sha256);
        assert!(first.verify());
        assert_ne!(run(10).sha256, first.sha256, "another seed, another split");
        assert!(first.model_version.starts_with("loans.seed9."));
    }

    #[test]
    fn the_artefact_round_trips_and_detects_tampering() {
        let artefact = run(3);
        let text = artefact.to_pretty_json();
        let back: Artefact = serde_json::from_str(&text).unwrap();
        assert_eq!(back, artefact);
        assert!(back.verify());
        let mut tampered = back;
        tampered.scorecard.base_points += 1;
        assert!(!tampered.verify());
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(json["format"], FORMAT);
        assert_eq!(json["scorecard"]["scaling"]["base_odds"], "50");
        let holdout = json["created_from"]["holdout_rows"].as_u64().unwrap();
        let train = json["created_from"]["train_rows"].as_u64().unwrap();
        assert_eq!((holdout + train, holdout.abs_diff(90) <= 1), (300, true));
    }

    #[test]
    fn without_a_holdout_the_model_sees_every_row_and_records_no_holdout_metrics() {
        let artefact = run_with_holdout(3, 0.0);
        assert_eq!(artefact.created_from.train_rows, 300);
        assert_eq!(artefact.created_from.holdout_rows, 0);
        assert_eq!(artefact.metrics.holdout, None);
        assert_eq!(artefact.metrics.train.rows, 300);
        assert!(artefact.verify());
    }

    #[test]
    fn the_training_scores_are_kept_in_decile_bands() {
        let artefact = run(3);
        let distribution = artefact.training_scores.expect("recorded");
        assert_eq!(distribution.shares.len(), distribution.edges.len() + 1);
        assert!((distribution.shares.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        let even = ScoreDistribution::of_scores(&(1..=100).collect::<Vec<i32>>()).unwrap();
        assert_eq!(even.edges, vec![10, 20, 30, 40, 50, 60, 70, 80, 90]);
        assert!(even.shares.iter().all(|share| (share - 0.1).abs() < 1e-12));
        assert_eq!(ScoreDistribution::band_of(&even.edges, 10), 0);
        assert_eq!(ScoreDistribution::band_of(&even.edges, 11), 1);
        assert_eq!(ScoreDistribution::band_of(&even.edges, 95), 9);
        let flat = ScoreDistribution::of_scores(&[5, 5, 5]).unwrap();
        assert_eq!((flat.edges.len(), flat.shares), (0, vec![1.0]));
    }
}
