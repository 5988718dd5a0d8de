//! A training table parsed from CSV: one binary target, every other column a feature,
//! each column typed once here (numeric or categorical) so the math never sees text it
//! has to guess about.
//!
//! Parsing takes any [`std::io::Read`]; opening the file is the caller's business (the
//! CLI). Every error names the option it is about (`--data`, `--target`, `--bad-value`,
//! `--categorical`), so the CLI can print it as is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// Cell texts (compared case-insensitively, after trimming) that mean "no value". `none`
/// is deliberately absent: in real data it is usually a category ("guarantor: none").
pub const MISSING_TOKENS: [&str; 6] = ["", "na", "n/a", "nan", "null", "?"];

/// True when `text` is one of [`MISSING_TOKENS`].
pub fn is_missing(text: &str) -> bool {
    let text = text.trim();
    MISSING_TOKENS
        .iter()
        .any(|token| text.eq_ignore_ascii_case(token))
}

/// A bad input, named by the option that brought it in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The command-line option at fault, e.g. `--target`.
    pub option: &'static str,
    /// What is wrong, for a person.
    pub message: String,
}

impl InputError {
    pub fn new(option: &'static str, message: impl Into<String>) -> Self {
        Self {
            option,
            message: message.into(),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.option, self.message)
    }
}

impl std::error::Error for InputError {}

/// How to read the table.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The target column's name.
    pub target: String,
    /// Which target value is "bad". `None`: the minority class of the two values (an error
    /// when both are equally frequent).
    pub bad_value: Option<String>,
    /// Columns to treat as categorical even when every value parses as a number.
    pub categorical: Vec<String>,
}

/// One feature column's values.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Every present value parsed as a finite number. `None` = missing.
    Numeric(Vec<Option<f64>>),
    /// Declared categorical, or some present value is not a number. `None` = missing.
    Categorical(Vec<Option<String>>),
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Numeric(values) => values.len(),
            Column::Categorical(values) => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The value in `row`.
    pub fn cell(&self, row: usize) -> Cell<'_> {
        match self {
            Column::Numeric(values) => match values[row] {
                Some(value) => Cell::Number(value),
                None => Cell::Missing,
            },
            Column::Categorical(values) => match &values[row] {
                Some(level) => Cell::Level(level),
                None => Cell::Missing,
            },
        }
    }
}

/// A single value, borrowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    Missing,
    Number(f64),
    Level(&'a str),
}

/// A named feature column.
#[derive(Debug, Clone, PartialEq)]
pub struct Feature {
    pub name: String,
    pub column: Column,
}

/// The parsed table.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// Every column but the target, in file order.
    pub features: Vec<Feature>,
    /// Per row: the target is the bad value.
    pub bad: Vec<bool>,
    /// Per row: sample weight (1 for a CSV without weights).
    pub weights: Vec<f64>,
    pub target: String,
    pub bad_value: String,
    pub good_value: String,
}

impl Dataset {
    pub fn rows(&self) -> usize {
        self.bad.len()
    }

    /// The feature called `name`.
    pub fn feature(&self, name: &str) -> Option<&Feature> {
        self.features.iter().find(|feature| feature.name == name)
    }

    /// Rows whose target is bad.
    pub fn bad_count(&self) -> usize {
        self.bad.iter().filter(|bad| **bad).count()
    }

    /// Parses a CSV with a header row. `source` names the data in messages (a file name).
    pub fn from_csv(
        reader: impl std::io::Read,
        source: &str,
        options: &LoadOptions,
    ) -> Result<Self, InputError> {
        let mut csv = csv::ReaderBuilder::new()
            .has_headers(true)
            .trim(csv::Trim::All)
            .from_reader(reader);
        let header: Vec<String> = csv
            .headers()
            .map_err(|err| InputError::new("--data", format!("{source}: {err}")))?
            .iter()
            .map(str::to_owned)
            .collect();
        if header.iter().all(String::is_empty) {
            return Err(InputError::new(
                "--data",
                format!("{source} is empty (no header row)"),
            ));
        }
        let mut seen = BTreeSet::new();
        for name in &header {
            if !seen.insert(name.as_str()) {
                return Err(InputError::new(
                    "--data",
                    format!("{source}: the column `{name}` appears twice in the header"),
                ));
            }
        }
        let target_index = header
            .iter()
            .position(|name| *name == options.target)
            .ok_or_else(|| {
                InputError::new(
                    "--target",
                    format!(
                        "no column `{}` in {source} (columns: {})",
                        options.target,
                        header.join(", ")
                    ),
                )
            })?;
        for name in &options.categorical {
            if !header.contains(name) {
                return Err(InputError::new(
                    "--categorical",
                    format!("no column `{name}` in {source}"),
                ));
            }
            if *name == options.target {
                return Err(InputError::new(
                    "--categorical",
                    format!("`{name}` is the target, not a feature"),
                ));
            }
        }

        let mut columns: Vec<Vec<Option<String>>> = vec![Vec::new(); header.len()];
        for (index, record) in csv.records().enumerate() {
            let record =
                record.map_err(|err| InputError::new("--data", format!("{source}: {err}")))?;
            // Line numbers for people: the header is line 1.
            let line = index + 2;
            if record.len() != header.len() {
                return Err(InputError::new(
                    "--data",
                    format!(
                        "{source}: line {line} has {} fields, the header {}",
                        record.len(),
                        header.len()
                    ),
                ));
            }
            for (column, text) in columns.iter_mut().zip(record.iter()) {
                column.push((!is_missing(text)).then(|| text.to_owned()));
            }
        }
        let rows = columns[target_index].len();
        if rows == 0 {
            return Err(InputError::new(
                "--data",
                format!("{source} has a header but no rows"),
            ));
        }

        let target_values = std::mem::take(&mut columns[target_index]);
        let (bad, bad_value, good_value) = parse_target(&target_values, options)?;

        let features = header
            .into_iter()
            .zip(columns)
            .enumerate()
            .filter(|(index, _)| *index != target_index)
            .map(|(_, (name, values))| {
                let declared = options.categorical.contains(&name);
                Feature {
                    column: type_column(values, declared),
                    name,
                }
            })
            .collect();
        Ok(Self {
            features,
            weights: vec![1.0; rows],
            bad,
            target: options.target.clone(),
            bad_value,
            good_value,
        })
    }
}

/// Maps the target's two values to bad/good.
fn parse_target(
    values: &[Option<String>],
    options: &LoadOptions,
) -> Result<(Vec<bool>, String, String), InputError> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for (row, value) in values.iter().enumerate() {
        let value = value.as_deref().ok_or_else(|| {
            InputError::new(
                "--target",
                format!(
                    "`{}` has no value on line {} (every row needs a target)",
                    options.target,
                    row + 2
                ),
            )
        })?;
        *counts.entry(value).or_default() += 1;
    }
    if counts.len() != 2 {
        let shown: Vec<&str> = counts.keys().take(5).copied().collect();
        return Err(InputError::new(
            "--target",
            format!(
                "`{}` has {} distinct values ({}{}); a binary target needs exactly 2",
                options.target,
                counts.len(),
                shown.join(", "),
                if counts.len() > shown.len() {
                    ", …"
                } else {
                    ""
                }
            ),
        ));
    }
    let entries: Vec<(&str, usize)> = counts.into_iter().collect();
    let (bad_value, good_value) = match &options.bad_value {
        Some(bad) => {
            let good = entries
                .iter()
                .find(|(value, _)| value != bad)
                .map(|(value, _)| *value);
            match good {
                Some(good) if entries.iter().any(|(value, _)| value == bad) => {
                    (bad.clone(), good.to_owned())
                }
                _ => {
                    return Err(InputError::new(
                        "--bad-value",
                        format!(
                            "`{bad}` is not a value of `{}` (values: {}, {})",
                            options.target, entries[0].0, entries[1].0
                        ),
                    ));
                }
            }
        }
        None => {
            let (first, second) = (entries[0], entries[1]);
            if first.1 == second.1 {
                return Err(InputError::new(
                    "--bad-value",
                    format!(
                        "required: `{}` and `{}` are equally frequent, so the minority class \
                         cannot stand for bad",
                        first.0, second.0
                    ),
                ));
            }
            let (bad, good) = if first.1 < second.1 {
                (first, second)
            } else {
                (second, first)
            };
            (bad.0.to_owned(), good.0.to_owned())
        }
    };
    let bad = values
        .iter()
        .map(|value| value.as_deref() == Some(bad_value.as_str()))
        .collect();
    Ok((bad, bad_value, good_value))
}

/// Numeric when not declared categorical and every present value is a finite number.
fn type_column(values: Vec<Option<String>>, declared_categorical: bool) -> Column {
    if !declared_categorical {
        let numbers: Option<Vec<Option<f64>>> = values
            .iter()
            .map(|value| match value {
                None => Some(None),
                Some(text) => text
                    .parse::<f64>()
                    .ok()
                    .filter(|number| number.is_finite())
                    .map(Some),
            })
            .collect();
        if let Some(numbers) = numbers {
            return Column::Numeric(numbers);
        }
    }
    Column::Categorical(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, target: &str, bad: Option<&str>) -> Result<Dataset, InputError> {
        Dataset::from_csv(
            text.as_bytes(),
            "t.csv",
            &LoadOptions {
                target: target.into(),
                bad_value: bad.map(Into::into),
                categorical: vec![],
            },
        )
    }

    #[test]
    fn columns_are_typed_numeric_or_categorical_with_missing_tokens() {
        let data = load("x,c,y\n1,a,g\nNA,b,b\n2.5,,g\n", "y", None).unwrap();
        assert_eq!(
            data.features[0].column,
            Column::Numeric(vec![Some(1.0), None, Some(2.5)])
        );
        assert_eq!(
            data.features[1].column,
            Column::Categorical(vec![Some("a".into()), Some("b".into()), None])
        );
        assert_eq!(data.bad, vec![false, true, false]);
        assert_eq!(
            (data.bad_value.as_str(), data.good_value.as_str()),
            ("b", "g")
        );
    }

    #[test]
    fn the_minority_class_is_bad_unless_told_otherwise() {
        let text = "x,y\n1,yes\n2,no\n3,no\n";
        assert_eq!(load(text, "y", None).unwrap().bad_value, "yes");
        assert_eq!(
            load(text, "y", Some("no")).unwrap().bad,
            vec![false, true, true]
        );
    }

    #[test]
    fn bad_inputs_name_their_option() {
        let cases = [
            ("", "y", None, "--data"),
            ("x,y\n", "y", None, "--data"),
            ("x,y\n1,a\n", "z", None, "--target"),
            ("x,y\n1,a\n2,b\n3,c\n", "y", None, "--target"),
            ("x,y\n1,a\n2,a\n", "y", None, "--target"),
            ("x,y\n1,a\n2,\n", "y", None, "--target"),
            ("x,y\n1,a\n2,b\n", "y", None, "--bad-value"),
            ("x,y\n1,a\n2,b\n3,b\n", "y", Some("c"), "--bad-value"),
            ("x,y\n1,a,3\n", "y", None, "--data"),
            ("x,x\n1,a\n", "x", None, "--data"),
        ];
        for (text, target, bad, option) in cases {
            let err = load(text, target, bad).unwrap_err();
            assert_eq!(err.option, option, "{text:?}: {err}");
        }
    }

    #[test]
    fn a_declared_categorical_column_stays_text_and_an_unknown_one_is_refused() {
        let options = LoadOptions {
            target: "y".into(),
            bad_value: None,
            categorical: vec!["x".into()],
        };
        let data = Dataset::from_csv("x,y\n1,a\n2,b\n2,b\n".as_bytes(), "t", &options).unwrap();
        assert!(matches!(data.features[0].column, Column::Categorical(_)));
        let options = LoadOptions {
            categorical: vec!["nope".into()],
            ..options
        };
        let err = Dataset::from_csv("x,y\n1,a\n".as_bytes(), "t", &options).unwrap_err();
        assert_eq!(err.option, "--categorical");
    }
}
