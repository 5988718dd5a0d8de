//! `scoring train`, `scoring cross-validate` and `scoring train-population`: the edge where files are read and
//! written and arguments checked; everything behind it is pure.
//!
//! Exit codes (sysexits): 0 done; 64 a bad argument or input — unknown option or column,
//! empty or ragged file, a target with other than two values, an out-of-range threshold
//! (the message names the option); 65 data that yields no model (no feature reaches the
//! IV threshold); 70 the population generator produced an invalid signal (a bug); 73
//! the artefact cannot be written; 74 stdout cannot be written.

use std::ffi::{OsStr, OsString};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use super::artefact::{self, DataSource, TrainRun};
use super::binning::{BinningOptions, MAX_BINS, MIN_BIN_SHARE, PREBINS};
use super::dataset::{Dataset, InputError, LoadOptions};
use super::logistic::{L2_PENALTY, LogisticOptions};
use super::population::{self, PopulationError, PopulationRun};
use super::scaling::{BASE_ODDS, BASE_SCORE, POINTS_TO_DOUBLE_ODDS, ScorecardScaling};
use super::scorecard::{MIN_IV, TrainError, TrainOptions};
use super::validation::{self, FOLDS, HOLDOUT_SHARE, REPEATS, SEED};

pub const EXIT_USAGE: u8 = 64;
pub const EXIT_DATA: u8 = 65;
pub const EXIT_SOFTWARE: u8 = 70;
pub const EXIT_CANT_CREATE: u8 = 73;
pub const EXIT_IO: u8 = 74;

/// The subcommands this module serves; anything else is the service's (`launch`).
pub const COMMANDS: [&str; 3] = ["train", "cross-validate", "train-population"];

/// Runs a model command when `args` (program name first) name one; `None` otherwise.
pub fn dispatch(args: impl IntoIterator<Item = OsString>) -> Option<ExitCode> {
    let args: Vec<OsString> = args.into_iter().collect();
    let command = args.get(1)?;
    if !is_model_command(command) {
        return None;
    }
    let code = run(
        args,
        &mut std::io::stdout().lock(),
        &mut std::io::stderr().lock(),
    );
    Some(ExitCode::from(code))
}

pub fn is_model_command(arg: &OsStr) -> bool {
    COMMANDS.iter().any(|command| arg == *command)
}

#[derive(Debug, Parser)]
#[command(
    name = "scoring",
    about = "Train and cross-validate a points-based scorecard from a CSV",
    disable_help_subcommand = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Fit a scorecard (hold-out measured) and write its JSON artefact.
    Train(TrainArgs),
    /// Repeated stratified K-fold cross-validation of the pipeline; prints JSON.
    CrossValidate(CrossValidateArgs),
    /// Train the shipped model on the synthetic population (docs/scoring-population.md);
    /// prints JSON with the hold-out AUC with and without the social features.
    TrainPopulation(TrainPopulationArgs),
}

#[derive(Debug, Args)]
struct TrainPopulationArgs {
    /// Seed of the population and of the hold-out split.
    #[arg(long, value_name = "N", default_value_t = population::SEED)]
    seed: u64,
    /// People in the population.
    #[arg(long, value_name = "N", default_value_t = population::CUSTOMERS)]
    customers: usize,
    /// Where to write the artefact.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Also write the training table as CSV (`scoring train --data` reads it).
    #[arg(long, value_name = "FILE")]
    csv_out: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct DataArgs {
    /// The CSV file: a header row, then one row per account.
    #[arg(long, value_name = "FILE")]
    data: PathBuf,
    /// The binary target column.
    #[arg(long, value_name = "COL")]
    target: String,
    /// The target value that means bad [default: the minority class].
    #[arg(long, value_name = "V")]
    bad_value: Option<String>,
    /// Columns to bin as categories even when numeric (non-numeric ones are detected).
    #[arg(long, value_name = "A,B", value_delimiter = ',')]
    categorical: Vec<String>,
    /// Numeric codes (e.g. -1,9999) that get bins of their own.
    #[arg(
        long,
        value_name = "V1,V2",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    special_values: Vec<String>,
    /// Seed of the hold-out split and the fold assignment.
    #[arg(long, value_name = "N", default_value_t = SEED)]
    seed: u64,
    /// Smallest information value a feature needs to enter the model.
    #[arg(long, value_name = "IV", default_value_t = MIN_IV)]
    min_iv: f64,
    /// L2 penalty of the logistic regression.
    #[arg(long, value_name = "LAMBDA", default_value_t = L2_PENALTY)]
    l2: f64,
    /// Quantile pre-bins of a numeric feature.
    #[arg(long, value_name = "N", default_value_t = PREBINS)]
    prebins: usize,
    /// Smallest share of the rows a bin may hold.
    #[arg(long, value_name = "SHARE", default_value_t = MIN_BIN_SHARE)]
    min_bin_share: f64,
    /// Most regular bins per feature.
    #[arg(long, value_name = "N", default_value_t = MAX_BINS)]
    max_bins: usize,
}

#[derive(Debug, Args)]
struct TrainArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Where to write the artefact.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Share of rows held out (stratified) to measure the model on; 0 = none.
    #[arg(long, value_name = "SHARE", default_value_t = HOLDOUT_SHARE)]
    holdout: f64,
    /// The model version to record [default: <data stem>.seed<N>.<data sha256 prefix>].
    #[arg(long, value_name = "V")]
    model_version: Option<String>,
    /// Score at the base odds.
    #[arg(long, value_name = "POINTS", default_value_t = BASE_SCORE)]
    base_score: i32,
    /// Good:bad odds at the base score.
    #[arg(long, value_name = "ODDS", default_value_t = BASE_ODDS)]
    base_odds: f64,
    /// Points to double the odds.
    #[arg(long, value_name = "POINTS", default_value_t = POINTS_TO_DOUBLE_ODDS)]
    pdo: i32,
}

#[derive(Debug, Args)]
struct CrossValidateArgs {
    #[command(flatten)]
    data: DataArgs,
    #[arg(long, value_name = "K", default_value_t = FOLDS)]
    folds: usize,
    #[arg(long, value_name = "N", default_value_t = REPEATS)]
    repeats: usize,
}

/// A failure with its exit code.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl From<InputError> for Failure {
    fn from(err: InputError) -> Self {
        Self {
            code: EXIT_USAGE,
            message: err.to_string(),
        }
    }
}

impl From<TrainError> for Failure {
    fn from(err: TrainError) -> Self {
        Self {
            code: EXIT_DATA,
            message: err.to_string(),
        }
    }
}

/// Runs `args` (program name first), writing results to `out` and messages to `err`;
/// returns the exit code.
pub fn run(
    args: impl IntoIterator<Item = OsString>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(clap_error) => {
            let text = clap_error.render().to_string();
            return if clap_error.use_stderr() {
                let _ = write!(err, "{text}");
                EXIT_USAGE
            } else {
                let _ = write!(out, "{text}");
                0
            };
        }
    };
    let (name, result) = match &cli.command {
        Command::Train(args) => ("train", train(args, out)),
        Command::CrossValidate(args) => ("cross-validate", cross_validate(args, out)),
        Command::TrainPopulation(args) => ("train-population", train_population(args, out)),
    };
    match result {
        Ok(()) => 0,
        Err(failure) => {
            let _ = writeln!(err, "scoring {name}: {}", failure.message);
            failure.code
        }
    }
}

/// The table and the training options from the shared arguments.
fn load(args: &DataArgs) -> Result<(Dataset, DataSource, TrainOptions), Failure> {
    let special_values = args
        .special_values
        .iter()
        .map(|text| {
            text.trim()
                .parse::<f64>()
                .ok()
                .filter(|value| value.is_finite())
                .ok_or_else(|| {
                    InputError::new("--special-values", format!("`{text}` is not a number"))
                })
        })
        .collect::<Result<Vec<f64>, InputError>>()?;
    check(
        "--min-bin-share",
        args.min_bin_share > 0.0 && args.min_bin_share <= 0.5,
        "must be in (0, 0.5]",
    )?;
    check("--prebins", args.prebins >= 2, "must be at least 2")?;
    check("--max-bins", args.max_bins >= 1, "must be at least 1")?;
    check(
        "--min-iv",
        args.min_iv >= 0.0 && args.min_iv.is_finite(),
        "must be a number ≥ 0",
    )?;
    check(
        "--l2",
        args.l2 >= 0.0 && args.l2.is_finite(),
        "must be a number ≥ 0",
    )?;

    let bytes = std::fs::read(&args.data).map_err(|err| {
        InputError::new(
            "--data",
            format!("cannot read {}: {err}", args.data.display()),
        )
    })?;
    let file_name = file_name(&args.data);
    let data = Dataset::from_csv(
        bytes.as_slice(),
        &file_name,
        &LoadOptions {
            target: args.target.clone(),
            bad_value: args.bad_value.clone(),
            categorical: categorical_columns(args),
        },
    )?;
    if data.features.is_empty() {
        return Err(InputError::new(
            "--data",
            format!("{file_name} has no column besides the target"),
        )
        .into());
    }
    let options = TrainOptions {
        binning: BinningOptions {
            prebins: args.prebins,
            min_bin_share: args.min_bin_share,
            max_bins: args.max_bins,
            special_values,
            ..BinningOptions::default()
        },
        min_iv: args.min_iv,
        logistic: LogisticOptions {
            l2_penalty: args.l2,
            ..LogisticOptions::default()
        },
        ..TrainOptions::default()
    };
    Ok((data, DataSource::new(file_name, &bytes), options))
}

/// `--categorical` names, trimmed (`--categorical "a, b"` names `b`, as the header's
/// trimmed cells do).
fn categorical_columns(args: &DataArgs) -> Vec<String> {
    args.categorical
        .iter()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .collect()
}

fn check(option: &'static str, ok: bool, message: &str) -> Result<(), InputError> {
    if ok {
        Ok(())
    } else {
        Err(InputError::new(option, message))
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |name| name.to_string_lossy().into_owned(),
    )
}

fn print_json(out: &mut dyn Write, value: &impl serde::Serialize) -> Result<(), Failure> {
    let text = serde_json::to_string_pretty(value).expect("plain data serialises");
    writeln!(out, "{text}").map_err(|err| Failure {
        code: EXIT_IO,
        message: format!("cannot write the result: {err}"),
    })
}

fn train(args: &TrainArgs, out: &mut dyn Write) -> Result<(), Failure> {
    check(
        "--holdout",
        (0.0..=0.9).contains(&args.holdout),
        "must be in [0, 0.9]",
    )?;
    check(
        "--base-odds",
        args.base_odds > 0.0 && args.base_odds.is_finite(),
        "must be a number > 0",
    )?;
    check("--pdo", args.pdo > 0, "must be at least 1")?;
    let (data, source, mut options) = load(&args.data)?;
    options.scaling = ScorecardScaling {
        base_score: args.base_score,
        base_odds: args.base_odds,
        points_to_double_odds: args.pdo,
    };
    let run = TrainRun {
        options,
        holdout_share: args.holdout,
        seed: args.data.seed,
        model_version: args.model_version.clone(),
        categorical: categorical_columns(&args.data),
    };
    let artefact = artefact::train_artefact(&data, &source, &run)?;
    write_file("--out", &args.out, artefact.to_pretty_json().as_bytes())?;
    let summary = serde_json::json!({
        "out": args.out.display().to_string(),
        "model_version": artefact.model_version,
        "sha256": artefact.sha256,
        "features": artefact.scorecard.features.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        "train": artefact.metrics.train,
        "holdout": artefact.metrics.holdout,
    });
    print_json(out, &summary)
}

fn cross_validate(args: &CrossValidateArgs, out: &mut dyn Write) -> Result<(), Failure> {
    check("--folds", args.folds >= 2, "must be at least 2")?;
    check("--repeats", args.repeats >= 1, "must be at least 1")?;
    let (data, _, options) = load(&args.data)?;
    let bads = data.bad_count();
    let smaller = bads.min(data.rows() - bads);
    check(
        "--folds",
        smaller >= args.folds,
        &format!(
            "{} folds need at least {} rows of each class; the smaller class has {smaller}",
            args.folds, args.folds
        ),
    )?;
    let result =
        validation::cross_validate(&data, &options, args.folds, args.repeats, args.data.seed)?;
    print_json(out, &result)
}

fn write_file(option: &str, path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    std::fs::write(path, bytes).map_err(|err| Failure {
        code: EXIT_CANT_CREATE,
        message: format!("{option}: cannot write {}: {err}", path.display()),
    })
}

fn train_population(args: &TrainPopulationArgs, out: &mut dyn Write) -> Result<(), Failure> {
    check(
        "--customers",
        (100..=1_000_000).contains(&args.customers),
        "must be 100 to 1,000,000",
    )?;
    let model = population::train_population(&PopulationRun::new(args.seed, args.customers))
        .map_err(|err| Failure {
            code: match err {
                PopulationError::Train(_) => EXIT_DATA,
                PopulationError::InvalidSignal(_) => EXIT_SOFTWARE,
            },
            message: err.to_string(),
        })?;
    if let Some(path) = &args.csv_out {
        write_file("--csv-out", path, &population::to_csv(&model.data))?;
    }
    write_file(
        "--out",
        &args.out,
        model.artefact.to_pretty_json().as_bytes(),
    )?;
    print_json(out, &model.summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_args(args: &[&str]) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let args = std::iter::once("scoring")
            .chain(args.iter().copied())
            .map(OsString::from);
        let code = run(args, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn only_the_model_commands_are_dispatched_here() {
        assert!(is_model_command(OsStr::new("train")));
        assert!(is_model_command(OsStr::new("cross-validate")));
        assert!(!is_model_command(OsStr::new("migrate")));
        assert!(dispatch(["scoring", "migrate"].map(OsString::from)).is_none());
        assert!(dispatch(["scoring"].map(OsString::from)).is_none());
    }

    #[test]
    fn argument_errors_exit_64_naming_the_option() {
        let cases = [
            ("train --target y --out m.json", "--data"),
            ("train --data x.csv --out m.json", "--target"),
            (
                "cross-validate --data x.csv --target y --folds x",
                "--folds",
            ),
            (
                "cross-validate --data /nonexistent/x.csv --target y",
                "--data",
            ),
            (
                "cross-validate --data x.csv --target y --special-values -1,abc",
                "--special-values",
            ),
            (
                "cross-validate --data x.csv --target y --folds 1",
                "--folds",
            ),
            (
                "cross-validate --data x.csv --target y --min-bin-share 0.9",
                "--min-bin-share",
            ),
            (
                "train --data x.csv --target y --out m.json --holdout 1.5",
                "--holdout",
            ),
        ];
        for (line, option) in cases {
            let args: Vec<&str> = line.split_whitespace().collect();
            let (code, _, err) = run_args(&args);
            assert_eq!(code, EXIT_USAGE, "{line}: {err}");
            assert!(err.contains(option), "{line}: {err}");
        }
    }

    #[test]
    fn help_is_not_an_error() {
        let (code, out, _) = run_args(&["train", "--help"]);
        assert_eq!(code, 0);
        assert!(out.contains("--special-values"));
    }
}
