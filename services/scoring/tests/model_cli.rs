//! The trainer's command line, run as the real binary: exit codes, messages that name
//! the option, byte-identical artefacts for the same data and seed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use scoring::model::artefact::Artefact;

fn scoring(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scoring"))
        .args(args)
        .output()
        .expect("the scoring binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("scoring-model-cli-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

/// 400 rows: `income` (numeric with a -1 "unknown" code and some blanks), `region`
/// (categorical with a rare level), `flag` (noise), target `status` ok/default.
fn loans_csv() -> String {
    let mut text = String::from("income,region,flag,status\n");
    for i in 0..400_usize {
        let income = match i % 17 {
            0 => "-1".to_owned(),
            5 => String::new(),
            _ => ((i * 53) % 90 + 10).to_string(),
        };
        let region = if i == 7 {
            "北"
        } else {
            ["east", "west", "south"][i % 3]
        };
        let income_value: usize = income.parse().unwrap_or(50);
        let default = (income_value < 35 && i % 2 == 0) || (region == "south" && i % 7 == 0);
        text.push_str(&format!(
            "{income},{region},{},{}\n",
            i % 2,
            if default { "default" } else { "ok" }
        ));
    }
    text
}

#[test]
fn bad_arguments_exit_64_with_a_message_naming_the_option() {
    let dir = scratch("bad");
    let loans = write(&dir, "loans.csv", &loans_csv());
    let empty = write(&dir, "empty.csv", "");
    let three = write(&dir, "three.csv", "x,y\n1,a\n2,b\n3,c\n");
    let out = dir.join("m.json").display().to_string();
    let cases = [
        (
            format!("train --data {loans} --target nope --out {out}"),
            "--target",
        ),
        (
            format!("train --data {empty} --target y --out {out}"),
            "--data",
        ),
        (
            format!("train --data {three} --target y --out {out}"),
            "--target",
        ),
        (
            format!("train --data {loans} --target status --bad-value late --out {out}"),
            "--bad-value",
        ),
        (
            format!("train --data {loans} --target status --categorical nope --out {out}"),
            "--categorical",
        ),
        (
            format!("cross-validate --data {loans} --target status --folds 1"),
            "--folds",
        ),
        (format!("train --data {loans} --target status"), "--out"),
        (
            format!("train --data {loans} --target status --out {out} --wat"),
            "--wat",
        ),
    ];
    for (line, option) in &cases {
        let args: Vec<&str> = line.split_whitespace().collect();
        let output = scoring(&args);
        assert_eq!(
            output.status.code(),
            Some(64),
            "{line}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(option),
            "{line}: {}",
            stderr(&output)
        );
    }
    assert!(
        !dir.join("m.json").exists(),
        "no artefact from a failed run"
    );
}

#[test]
fn data_without_a_predictive_feature_exits_65() {
    let dir = scratch("flat");
    let mut text = String::from("x,y\n");
    for i in 0..50 {
        text.push_str(&format!("1,{}\n", if i % 5 == 0 { "b" } else { "g" }));
    }
    let flat = write(&dir, "flat.csv", &text);
    let out = dir.join("m.json").display().to_string();
    let output = scoring(&["train", "--data", &flat, "--target", "y", "--out", &out]);
    assert_eq!(output.status.code(), Some(65), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("no feature reaches IV"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_same_data_and_seed_write_a_byte_identical_artefact() {
    let dir = scratch("same");
    let loans = write(&dir, "loans.csv", &loans_csv());
    let mut files = Vec::new();
    for name in ["a.json", "b.json"] {
        let out = dir.join(name);
        let output = scoring(&[
            "train",
            "--data",
            &loans,
            "--target",
            "status",
            "--special-values",
            "-1,9999",
            "--categorical",
            "flag",
            "--seed",
            "11",
            "--out",
            &out.display().to_string(),
        ]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
        let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        files.push((std::fs::read(&out).unwrap(), summary));
    }
    assert_eq!(files[0].0, files[1].0);
    let artefact: Artefact = serde_json::from_slice(&files[0].0).unwrap();
    assert!(artefact.verify());
    assert_eq!(
        files[0].1["sha256"],
        artefact.sha256.clone().unwrap().as_str()
    );
    assert_eq!(
        artefact.created_from.bad_value, "default",
        "the minority class"
    );
    assert_eq!(artefact.created_from.seed, 11);
    let income = artefact
        .scorecard
        .features
        .iter()
        .find(|f| f.name == "income")
        .expect("income is predictive");
    let json = serde_json::to_value(&income.bins).unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .any(|b| b["rule"]["kind"] == "special")
    );
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .any(|b| b["rule"]["kind"] == "missing")
    );
}

#[test]
fn cross_validate_prints_the_summary_json() {
    let dir = scratch("cv");
    let loans = write(&dir, "loans.csv", &loans_csv());
    let output = scoring(&[
        "cross-validate",
        "--data",
        &loans,
        "--target",
        "status",
        "--special-values=-1",
        "--folds",
        "3",
        "--repeats",
        "2",
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for key in ["auc_mean", "auc_std", "ks_mean", "gini_mean"] {
        assert!(result[key].is_f64(), "{key}: {result}");
    }
    assert_eq!(result["fold_aucs"].as_array().unwrap().len(), 6);
    assert!(result["auc_mean"].as_f64().unwrap() > 0.6);
}
