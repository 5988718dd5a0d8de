#![forbid(unsafe_code)]
//! The notification service binary: see `lib.rs`.

fn main() -> std::process::ExitCode {
    microloan_platform::launch::<notification::Notification>()
}
