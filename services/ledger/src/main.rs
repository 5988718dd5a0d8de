#![forbid(unsafe_code)]
//! The ledger service binary: see `lib.rs`.

fn main() -> std::process::ExitCode {
    microloan_platform::launch::<ledger::Ledger>()
}
