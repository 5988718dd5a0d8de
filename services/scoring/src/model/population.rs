//! The shipped default model: trained on the synthetic population (libs/population,
//! docs/scoring-population.md) with features computed offline by the live feature code
//! ([`crate::features::offline`]), through the same pipeline as `scoring train`.
//!
//! Each person's row is their feature vector at the application (from everything
//! observed before it) and the label is whether the application loan then defaults:
//! nothing after the application enters a feature. The social lift is measured by
//! training the same pipeline, on the same split, without the Social feature group.

use std::collections::HashMap;
use std::fmt::Write as _;

use microloan_proto::scoring::v1::FeatureGroup;
use population::{Population, PopulationConfig, SignalRef, to_signal};
use serde::Serialize;

use super::artefact::{self, Artefact, DataSource, TrainRun};
use super::dataset::{Column, Dataset, Feature};
use super::scorecard::{TrainError, TrainOptions};
use super::validation::HOLDOUT_SHARE;
use crate::features::{FeatureVector, graph::PageRankOptions, offline::OfflineFeatures};
use crate::signals::{Problem, Signals, parse_batch};

/// `make train-model`'s seed and size.
pub const SEED: u64 = 42;
pub const CUSTOMERS: usize = 10_000;
/// The target column of the table.
pub const TARGET: &str = "defaulted";
/// Signals converted and parsed at a time (bounds the proto messages held at once).
const PARSE_CHUNK_SIGNALS: usize = 10_000;

/// How a population model is trained.
#[derive(Debug, Clone, PartialEq)]
pub struct PopulationRun {
    pub population: PopulationConfig,
    pub options: TrainOptions,
    pub holdout_share: f64,
}

impl PopulationRun {
    /// The defaults for `customers` people from `seed` (the seed also draws the split).
    pub fn new(seed: u64, customers: usize) -> Self {
        Self {
            population: PopulationConfig::new(seed, customers),
            options: TrainOptions::default(),
            holdout_share: HOLDOUT_SHARE,
        }
    }
}

/// What `scoring train-population` prints.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PopulationSummary {
    pub seed: u64,
    pub customers: usize,
    /// Signals observed before the application (what `make demo` would stream).
    pub observed_signals: usize,
    pub default_rate: f64,
    pub model_version: String,
    pub sha256: String,
    pub features: Vec<String>,
    /// Hold-out ROC AUC of the full model.
    pub holdout_auc: f64,
    /// Hold-out ROC AUC of the model trained without the Social feature group.
    pub holdout_auc_without_social: f64,
    /// holdout_auc − holdout_auc_without_social.
    pub social_lift: f64,
}

/// The trained models and the table they came from.
#[derive(Debug, Clone)]
pub struct PopulationModel {
    pub artefact: Artefact,
    pub without_social: Artefact,
    pub data: Dataset,
    pub summary: PopulationSummary,
}

/// Why the population could not be turned into features.
#[derive(Debug, Clone, PartialEq)]
pub enum PopulationError {
    /// A generated signal failed validation: a generator bug, reported, never skipped.
    InvalidSignal(Problem),
    Train(TrainError),
}

impl std::fmt::Display for PopulationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PopulationError::InvalidSignal(problem) => write!(
                f,
                "a generated signal is invalid ({}: {})",
                problem.field, problem.description
            ),
            PopulationError::Train(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for PopulationError {}

impl From<TrainError> for PopulationError {
    fn from(err: TrainError) -> Self {
        PopulationError::Train(err)
    }
}

/// Everything observed before the application, through the ingestion's parser.
pub fn observed_signals(population: &Population) -> Result<Signals, PopulationError> {
    let refs: Vec<SignalRef<'_>> = population.observed().collect();
    let mut all = Signals::default();
    for chunk in refs.chunks(PARSE_CHUNK_SIGNALS) {
        let protos: Vec<_> = chunk.iter().map(|signal| to_signal(*signal)).collect();
        let (mut valid, rejected) = parse_batch(&protos);
        if let Some((_, problem)) = rejected.into_iter().next() {
            return Err(PopulationError::InvalidSignal(problem));
        }
        all.edges.append(&mut valid.edges);
        all.behaviours.append(&mut valid.behaviours);
        all.sightings.append(&mut valid.sightings);
        all.outcomes.append(&mut valid.outcomes);
    }
    Ok(all)
}

/// Every person's feature vector at the application, and their label.
pub fn feature_table(
    population: &Population,
) -> Result<(Vec<FeatureVector>, Vec<bool>), PopulationError> {
    let signals = observed_signals(population)?;
    let offline = OfflineFeatures::build(&signals, HashMap::new(), PageRankOptions::default());
    let vectors = population
        .people
        .iter()
        .map(|person| offline.features_for(person.customer_id))
        .collect();
    let bad = population
        .people
        .iter()
        .map(|person| person.defaults)
        .collect();
    Ok((vectors, bad))
}

/// The training table: one numeric column per feature (missing = `None`), leaving out
/// the features of the `left_out` groups.
pub fn dataset(vectors: &[FeatureVector], bad: &[bool], left_out: &[FeatureGroup]) -> Dataset {
    let template = vectors
        .first()
        .map(|vector| vector.features.clone())
        .unwrap_or_default();
    let features = template
        .iter()
        .enumerate()
        .filter(|(_, feature)| !left_out.contains(&feature.group))
        .map(|(index, feature)| Feature {
            name: feature.name.to_owned(),
            column: Column::Numeric(
                vectors
                    .iter()
                    .map(|vector| vector.features[index].value)
                    .collect(),
            ),
        })
        .collect();
    Dataset {
        features,
        bad: bad.to_vec(),
        weights: vec![1.0; bad.len()],
        target: TARGET.to_owned(),
        bad_value: "1".to_owned(),
        good_value: "0".to_owned(),
    }
}

/// The table as CSV (a header, then one row per person; missing cells empty; floats in
/// Rust's shortest round-trip form), so `scoring train --data` can refit it and the
/// artefact can name the data by its sha256.
pub fn to_csv(data: &Dataset) -> Vec<u8> {
    let mut text = String::new();
    for feature in &data.features {
        text.push_str(&feature.name);
        text.push(',');
    }
    text.push_str(&data.target);
    text.push('\n');
    for row in 0..data.rows() {
        for feature in &data.features {
            if let Column::Numeric(values) = &feature.column
                && let Some(value) = values[row]
            {
                let _ = write!(text, "{value}");
            }
            text.push(',');
        }
        text.push_str(if data.bad[row] {
            &data.bad_value
        } else {
            &data.good_value
        });
        text.push('\n');
    }
    text.into_bytes()
}

/// Generates the population, computes its features, trains the full model and the one
/// without social features on the same split.
pub fn train_population(run: &PopulationRun) -> Result<PopulationModel, PopulationError> {
    let config = &run.population;
    let population = Population::generate(config);
    let (vectors, bad) = feature_table(&population)?;
    let observed_signals = population.observed().count();
    let data = dataset(&vectors, &bad, &[]);
    let file_name = format!("population-n{}.csv", config.customers);
    let source = DataSource::new(file_name.clone(), &to_csv(&data));
    let train_run = TrainRun {
        options: run.options.clone(),
        holdout_share: run.holdout_share,
        seed: config.seed,
        model_version: None,
        categorical: Vec::new(),
    };
    let artefact = artefact::train_artefact(&data, &source, &train_run)?;
    let without = dataset(&vectors, &bad, &[FeatureGroup::Social]);
    let without_source = DataSource::new(
        format!("population-n{}-without-social.csv", config.customers),
        &to_csv(&without),
    );
    let without_social = artefact::train_artefact(&without, &without_source, &train_run)?;
    let auc = |artefact: &Artefact| artefact.metrics.holdout.map_or(f64::NAN, |m| m.auc);
    let summary = PopulationSummary {
        seed: config.seed,
        customers: config.customers,
        observed_signals,
        default_rate: population.default_rate(),
        model_version: artefact.model_version.clone(),
        sha256: artefact.sha256.clone().unwrap_or_default(),
        features: artefact
            .scorecard
            .features
            .iter()
            .map(|feature| feature.name.clone())
            .collect(),
        holdout_auc: auc(&artefact),
        holdout_auc_without_social: auc(&without_social),
        social_lift: auc(&artefact) - auc(&without_social),
    };
    Ok(PopulationModel {
        artefact,
        without_social,
        data,
        summary,
    })
}
