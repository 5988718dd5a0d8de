#![forbid(unsafe_code)]
//! The scoring service binary: see `lib.rs`.

fn main() -> std::process::ExitCode {
    microloan_platform::launch::<scoring::Scoring>()
}
