//! What every microloan service does the same way, so that a reader who knows one
//! service knows all four: configuration from the environment, telemetry, the gRPC
//! server (health, reflection, auth, limits, metrics, graceful drain), gRPC clients,
//! and the connections to Postgres and Redis.
#![forbid(unsafe_code)]

pub mod auth;
pub mod cache;
pub mod client;
pub mod config;
pub mod convert;
pub mod db;
pub mod idempotency;
pub mod launch;
pub mod metrics;
pub mod server;
pub mod shutdown;
pub mod status;
pub mod telemetry;
pub mod testing;

pub use launch::{App, launch};
