//! The scorecard pipeline on real data: the Statlog German credit set (data/README.md),
//! 5 × 5 repeated stratified cross-validation, every fold refitting bins, WOE, selection
//! and regression on its training rows only.

use scoring::model::dataset::{Dataset, LoadOptions};
use scoring::model::scorecard::TrainOptions;
use scoring::model::validation::{self, cross_validate};

fn german_credit() -> Dataset {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/data/german_credit.csv");
    let file = std::fs::File::open(path).expect("the German credit data ships in data/");
    Dataset::from_csv(
        file,
        "german_credit.csv",
        &LoadOptions {
            target: "creditability".into(),
            bad_value: Some("bad".into()),
            categorical: vec![],
        },
    )
    .expect("the file parses")
}

#[test]
fn german_credit_reaches_a_mean_auc_of_0_78_under_5x5_cross_validation() {
    let data = german_credit();
    assert_eq!((data.rows(), data.bad_count()), (1000, 300));
    let result = cross_validate(
        &data,
        &TrainOptions::default(),
        validation::FOLDS,
        validation::REPEATS,
        validation::SEED,
    )
    .expect("every fold trains");
    eprintln!("{}", serde_json::to_string_pretty(&result).unwrap());
    assert_eq!(result.fold_aucs.len(), 25);
    assert!(result.auc_mean >= 0.78, "mean AUC {}", result.auc_mean);
    assert!(result.ks_mean >= 0.40, "mean KS {}", result.ks_mean);
}
