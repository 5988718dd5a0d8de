//! The train/serve check: every applicant's features computed offline, by the trainer's
//! code (`scoring::features::offline`, what `make train-model` trains on), from the
//! signals the demo ingested, to compare with what ExplainDecision says the service
//! used, and the shipped model's AUC on those offline features (what the service's
//! scores would rank like if it saw exactly what the trainer sees).

use std::collections::HashMap;

use population::Population;
use scoring::{
    features::{graph::PageRankOptions, offline::OfflineFeatures},
    model::population::observed_signals,
};

/// Every feature's value by name, per person in population order.
pub type Values = HashMap<String, Option<f64>>;

/// The offline feature values of everyone in `population` (ids as the service knows them).
pub fn offline_values(population: &Population) -> anyhow::Result<Vec<Values>> {
    let signals = observed_signals(population)?;
    let offline = OfflineFeatures::build(&signals, HashMap::new(), PageRankOptions::default());
    Ok(population
        .people
        .iter()
        .map(|person| {
            offline
                .features_for(person.customer_id)
                .features
                .iter()
                .map(|feature| (feature.name.to_owned(), feature.value))
                .collect()
        })
        .collect())
}

/// Whether a served value (ExplainDecision prints 4 decimals) is the offline one.
pub fn same(served: Option<f64>, offline: Option<f64>) -> bool {
    match (served, offline) {
        (None, None) => true,
        (Some(served), Some(offline)) => {
            let rounded: f64 = format!("{offline:.4}").parse().unwrap_or(f64::NAN);
            (served - rounded).abs() <= 1e-9
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_values_match_at_four_decimals() {
        assert!(same(Some(0.0001), Some(0.000_066_5)));
        assert!(!same(Some(0.0), Some(0.000_066_5)));
        assert!(same(None, None));
        assert!(!same(Some(1.0), None));
        assert!(same(Some(0.6667), Some(2.0 / 3.0)));
    }
}
