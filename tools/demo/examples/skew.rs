//! The shipped model's ROC AUC on a population's features computed offline (the
//! trainer's code, what the service serves once the same signals are ingested), by
//! population size: `cargo run --release -p microloan-demo --example skew -- SEED N...`.
//! Also with `defaulter_pagerank` rescaled to 10,000 people (× N / 10,000): the
//! personalised PageRank sums to one over the graph, so its values scale with 1 / N and
//! a model trained at 10,000 people reads a smaller population as riskier.
//! docs/demo.md "Train/serve skew" has the figures.
use std::collections::HashMap;

use population::{Population, PopulationConfig};
use scoring::features::{graph::PageRankOptions, offline::OfflineFeatures};
use scoring::model::{
    artefact::Artefact, dataset::Cell, metrics::roc_auc, population::observed_signals,
};

fn main() -> anyhow::Result<()> {
    let artefact: Artefact = serde_json::from_str(&std::fs::read_to_string(
        "services/scoring/model/default.json",
    )?)?;
    let card = &artefact.scorecard;
    let mut args = std::env::args().skip(1);
    let seed: u64 = args.next().unwrap_or_else(|| "2026".into()).parse()?;
    for n in args {
        let n: usize = n.parse()?;
        let population = Population::generate(&PopulationConfig::new(seed, n));
        let signals = observed_signals(&population)?;
        let offline = OfflineFeatures::build(&signals, HashMap::new(), PageRankOptions::default());
        let scale = n as f64 / 10_000.0;
        let (mut risk, mut rescaled, mut bad) = (Vec::new(), Vec::new(), Vec::new());
        for person in &population.people {
            let vector = offline.features_for(person.customer_id);
            let score = |pagerank_scale: f64| {
                let cells: Vec<Cell<'_>> = card
                    .features
                    .iter()
                    .map(|feature| match vector.get(&feature.name).flatten() {
                        Some(x) if feature.name == "defaulter_pagerank" => {
                            Cell::Number(x * pagerank_scale)
                        }
                        Some(x) => Cell::Number(x),
                        None => Cell::Missing,
                    })
                    .collect();
                -f64::from(card.score_cells(&cells).score)
            };
            risk.push(score(1.0));
            rescaled.push(score(scale));
            bad.push(person.defaults);
        }
        println!(
            "seed {seed}, {n} people (default rate {:.3}): AUC {:.4}; pagerank rescaled to 10,000 people {:.4}",
            population.default_rate(),
            roc_auc(&risk, &bad).unwrap_or(f64::NAN),
            roc_auc(&rescaled, &bad).unwrap_or(f64::NAN),
        );
    }
    Ok(())
}
