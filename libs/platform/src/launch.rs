//! The whole `main` of a service, so that every binary starts and stops the same way:
//! read config (exit 64 naming the variable on error) → telemetry → serve or migrate →
//! flush telemetry → exit 0.

use std::{future::Future, process::ExitCode};

use sqlx::migrate::Migrator;
use tokio::net::TcpListener;

use crate::{
    config::{CommonConfig, ConfigError, EXIT_CODE_CONFIG, Env, ServiceIdentity},
    db, shutdown, telemetry,
};

/// What a service crate provides to [`launch`].
pub trait App {
    const IDENTITY: ServiceIdentity;
    type Config: Send + Sync + 'static;
    /// The service's embedded migrations (`sqlx::migrate!("./migrations")`).
    const MIGRATOR: &'static Migrator;
    /// Migrations of shared libraries applied with the service's own (e.g. the events
    /// outbox, `microloan_events::MIGRATOR`); see [`db::migrate_all`].
    const MIGRATORS_SHARED: &'static [&'static Migrator] = &[];

    fn config_from_env(env: &Env<'_>) -> Result<Self::Config, ConfigError>;
    fn common(config: &Self::Config) -> &CommonConfig;

    /// Applies the service's migrations and returns (the `migrate` subcommand).
    fn migrate(config: Self::Config) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
        async move {
            db::connect_and_migrate_all(Self::common(&config), &Self::migrators()).await?;
            Ok(())
        }
    }
    /// The service's migrations followed by the shared ones, applied as one set.
    fn migrators() -> Vec<&'static Migrator> {
        std::iter::once(Self::MIGRATOR)
            .chain(Self::MIGRATORS_SHARED.iter().copied())
            .collect()
    }

    /// Maintenance subcommands of this service besides `migrate`: (name, one-line help).
    /// They run with the service's configuration and telemetry, then exit.
    const COMMANDS: &'static [(&'static str, &'static str)] = &[];

    /// Runs the subcommand `name`, one of [`App::COMMANDS`].
    fn run_command(
        name: &str,
        config: Self::Config,
    ) -> impl Future<Output = anyhow::Result<()>> + Send + 'static {
        let name = name.to_owned();
        async move {
            drop(config);
            anyhow::bail!("no command `{name}`")
        }
    }

    /// Serves on `listener` until `shutdown` resolves, then drains and returns.
    fn run(
        config: Self::Config,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> impl Future<Output = anyhow::Result<()>> + Send + 'static;
}

const USAGE: &str = "usage: <service> [migrate | <command>]\n  (no argument) serve gRPC until SIGTERM/SIGINT\n  migrate       apply database migrations and exit";

/// What the process was asked to do.
enum Mode {
    Serve,
    Migrate,
    Command(String),
}

fn usage<A: App>() -> String {
    let mut usage = USAGE.to_owned();
    for (command, help) in A::COMMANDS {
        usage.push_str(&format!("\n  {command:<13} {help}"));
    }
    usage
}

/// Runs the service named by `A` as a process and returns its exit code.
pub fn launch<A: App>() -> ExitCode {
    let name = A::IDENTITY.name;
    let mut args = std::env::args().skip(1);
    let command = args.next();
    let mode = match command.as_deref() {
        None => Mode::Serve,
        Some("migrate") => Mode::Migrate,
        Some("-h" | "--help") => {
            eprintln!("{}", usage::<A>());
            return ExitCode::SUCCESS;
        }
        Some(other) if A::COMMANDS.iter().any(|(command, _)| *command == other) => {
            Mode::Command(other.to_owned())
        }
        Some(other) => {
            eprintln!("{name}: unknown command `{other}`\n{}", usage::<A>());
            return ExitCode::from(EXIT_CODE_CONFIG);
        }
    };
    let config = match A::config_from_env(&Env::process()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("{name}: {err}");
            return ExitCode::from(EXIT_CODE_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{name}: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let telemetry = match telemetry::init(A::common(&config)) {
            Ok(telemetry) => telemetry,
            Err(err) => {
                eprintln!("{name}: cannot start telemetry: {err:#}");
                return ExitCode::FAILURE;
            }
        };
        let outcome = match mode {
            Mode::Migrate => A::migrate(config).await,
            Mode::Command(command) => A::run_command(&command, config).await,
            Mode::Serve => {
                let listen_addr = A::common(&config).listen_addr;
                match TcpListener::bind(listen_addr).await {
                    Ok(listener) => A::run(config, listener, shutdown::signal()).await,
                    Err(err) => Err(anyhow::anyhow!("cannot listen on {listen_addr}: {err}")),
                }
            }
        };
        let code = match &outcome {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                tracing::error!(error = format!("{err:#}"), "{name} failed");
                ExitCode::FAILURE
            }
        };
        telemetry.shutdown().await;
        if let Err(err) = outcome {
            eprintln!("{name}: {err:#}");
        }
        code
    })
}
