#![forbid(unsafe_code)]
//! The account service binary: see `lib.rs`.

fn main() -> std::process::ExitCode {
    microloan_platform::launch::<account::Account>()
}
