//! Mints a development bearer token: `make token ROLE=operator`.
//! Signs with `AUTH_JWT_SECRET`, the same secret the services verify with.

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use microloan_platform::{
    auth::{Role, TokenKeys},
    config::{EXIT_CODE_CONFIG, Env, JWT_SECRET_BYTES_MIN, Secret},
};

#[derive(Debug, Parser)]
#[command(about = "Mint a microloan JWT for grpcurl and tests")]
struct Args {
    /// operator, service or customer
    #[arg(long)]
    role: Role,
    /// Required for --role customer: the customer the token may act for.
    #[arg(long)]
    customer_id: Option<String>,
    /// Subject (who); defaults to the role's name or the customer id.
    #[arg(long)]
    subject: Option<String>,
    /// Lifetime in seconds (at most 90 days).
    #[arg(long, default_value_t = 3600)]
    ttl_seconds: u64,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let secret: Secret = match Env::process().required("AUTH_JWT_SECRET") {
        Ok(secret) => secret,
        Err(err) => {
            eprintln!("mint-token: {err}");
            return ExitCode::from(EXIT_CODE_CONFIG);
        }
    };
    if secret.expose().len() < JWT_SECRET_BYTES_MIN {
        eprintln!("mint-token: AUTH_JWT_SECRET must be at least {JWT_SECRET_BYTES_MIN} bytes");
        return ExitCode::from(EXIT_CODE_CONFIG);
    }
    let subject = args
        .subject
        .or_else(|| args.customer_id.clone())
        .unwrap_or_else(|| args.role.as_str().to_owned());
    let keys = TokenKeys::from_secret(secret.expose().as_bytes());
    match keys.mint(
        &subject,
        args.role,
        args.customer_id.as_deref(),
        Duration::from_secs(args.ttl_seconds),
    ) {
        Ok(token) => {
            println!("{token}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("mint-token: {err}");
            ExitCode::from(EXIT_CODE_CONFIG)
        }
    }
}
