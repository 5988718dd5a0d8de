#![forbid(unsafe_code)]
//! The scoring service binary: see `lib.rs`. `scoring train` and `scoring
//! cross-validate` are the scorecard trainer (`scoring::model::cli`); anything else goes
//! to the shared lifecycle (serve, `migrate`).

fn main() -> std::process::ExitCode {
    scoring::model::cli::dispatch(std::env::args_os())
        .unwrap_or_else(microloan_platform::launch::<scoring::Scoring>)
}
