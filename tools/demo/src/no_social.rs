//! The scorecard without social features. The scoring service loads one model (the
//! shipped services/scoring/model/default.json, trained by `make train-model`:
//! `scoring train-population --seed 42 --customers 10000`). That command trains, on the
//! same split, the same pipeline without the Social feature group; this module runs the
//! same library code in-process with the same seed and size, so the no-social scorecard
//! is exactly the one `train-population` reports its hold-out AUC for. Each applicant's
//! no-social score is that scorecard applied to the feature values ExplainDecision
//! returned for their application decision.

use std::collections::HashMap;

use scoring::model::{
    artefact::Artefact,
    dataset::Cell,
    population::{CUSTOMERS, PopulationRun, SEED, train_population},
};

#[derive(Debug, Clone)]
pub struct NoSocial {
    pub full: Artefact,
    pub without_social: Artefact,
    pub train_seconds: f64,
}

/// Trains both models of `make train-model` (seed 42, 10,000 people).
pub fn train() -> anyhow::Result<NoSocial> {
    let started = std::time::Instant::now();
    let model = train_population(&PopulationRun::new(SEED, CUSTOMERS))?;
    Ok(NoSocial {
        full: model.artefact,
        without_social: model.without_social,
        train_seconds: started.elapsed().as_secs_f64(),
    })
}

impl NoSocial {
    /// The no-social score of one applicant from the feature values (by name) of their
    /// decision; a feature the explanation does not carry is missing (its missing bin).
    /// Returns the score and how many of the scorecard's features were missing.
    pub fn score(&self, values: &HashMap<String, Option<f64>>) -> (i32, usize) {
        score_with(&self.without_social, values)
    }

    /// The full model's score of offline feature values (the train/serve check).
    pub fn score_full(&self, values: &HashMap<String, Option<f64>>) -> i32 {
        score_with(&self.full, values).0
    }
}

/// `artefact`'s score of feature values by name, and how many of its features the
/// values lack (scored as missing).
fn score_with(artefact: &Artefact, values: &HashMap<String, Option<f64>>) -> (i32, usize) {
    let card = &artefact.scorecard;
    let mut missing = 0;
    let cells: Vec<Cell<'_>> = card
        .features
        .iter()
        .map(|feature| match values.get(&feature.name) {
            Some(Some(value)) => Cell::Number(*value),
            Some(None) => Cell::Missing,
            None => {
                missing += 1;
                Cell::Missing
            }
        })
        .collect();
    (card.score_cells(&cells).score, missing)
}

impl NoSocial {
    pub fn feature_names(&self) -> Vec<String> {
        self.without_social
            .scorecard
            .features
            .iter()
            .map(|feature| feature.name.clone())
            .collect()
    }
}
