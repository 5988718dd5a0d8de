//! Postgres: each service owns one database, named in its `DATABASE_URL`. Start-up
//! creates the database when it is missing and applies the service's embedded
//! migrations, so a fresh cluster needs nothing but a role that may create databases.

use std::{str::FromStr, time::Duration};

use futures::future::BoxFuture;
use sqlx::{
    ConnectOptions, Connection, PgPool,
    error::BoxDynError,
    migrate::{Migration, MigrationSource, Migrator},
    postgres::{PgConnectOptions, PgConnection, PgPoolOptions, PgSslMode},
};

use crate::config::CommonConfig;

/// How long start-up waits for a connection before giving up (and letting the
/// orchestrator restart the process) rather than hanging.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(10);
/// Postgres's own limit on identifier length.
const DATABASE_NAME_BYTES_MAX: usize = 63;

/// Creates the database named in `url` if it does not exist. Safe against a
/// concurrent creator (two replicas starting at once). Connects to the database itself
/// first, so a role that may not reach the `postgres` maintenance database (common on
/// managed Postgres, where the database is provisioned beforehand) still starts.
pub async fn create_database_if_missing(url: &str) -> anyhow::Result<()> {
    let options = PgConnectOptions::from_str(url)?;
    let name = options
        .get_database()
        .ok_or_else(|| anyhow::anyhow!("DATABASE_URL names no database"))?
        .to_owned();
    anyhow::ensure!(
        !name.is_empty() && name.len() <= DATABASE_NAME_BYTES_MAX,
        "database name must be 1..={DATABASE_NAME_BYTES_MAX} bytes"
    );
    match options.connect().await {
        Ok(connection) => {
            close(connection).await;
            return Ok(());
        }
        // 3D000 invalid_catalog_name: the database does not exist yet.
        Err(sqlx::Error::Database(err)) if err.code().as_deref() == Some("3D000") => {}
        Err(err) => return Err(err.into()),
    }
    let mut maintenance = options
        .clone()
        .database("postgres")
        .log_statements(tracing::log::LevelFilter::Debug)
        .connect()
        .await?;
    let quoted = format!("\"{}\"", name.replace('"', "\"\""));
    match sqlx::query(&format!("CREATE DATABASE {quoted}"))
        .execute(&mut maintenance)
        .await
    {
        Ok(_) => tracing::info!(database = %name, "created database"),
        // 42P04 duplicate_database, 23505 unique_violation: another replica won.
        Err(sqlx::Error::Database(err))
            if matches!(err.code().as_deref(), Some("42P04" | "23505")) => {}
        Err(err) => return Err(err.into()),
    }
    close(maintenance).await;
    Ok(())
}

async fn close(connection: PgConnection) {
    if let Err(err) = connection.close().await {
        tracing::debug!(%err, "closing maintenance connection");
    }
}

/// Creates the database if needed, connects a pool and applies `migrator`.
pub async fn connect_and_migrate(
    config: &CommonConfig,
    migrator: &Migrator,
) -> anyhow::Result<PgPool> {
    connect_and_migrate_all(config, &[migrator]).await
}

/// Like [`connect_and_migrate`] with several migration sets applied as one: the
/// service's own and the ones of shared libraries (the events outbox), so a library's
/// tables are defined once, in the library, yet live in every service's database.
pub async fn connect_and_migrate_all(
    config: &CommonConfig,
    migrators: &[&Migrator],
) -> anyhow::Result<PgPool> {
    let url = config.database_url.expose();
    create_database_if_missing(url).await?;
    let pool = PgPoolOptions::new()
        .max_connections(config.database_connections_max)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        // No ping before every checkout: it was a round trip and ~10% of scoring's CPU
        // per Evaluate. A connection the server dropped fails its next statement
        // instead, which every caller already maps to UNAVAILABLE (retry with the same
        // request_id), and sqlx then discards it.
        .test_before_acquire(false)
        .connect_with(connect_options(url)?)
        .await?;
    migrate_all(&pool, migrators).await?;
    Ok(pool)
}

/// `url`'s options, with TLS off to a Postgres on this host unless `sslmode` (in the URL
/// or `PGSSLMODE`) asks otherwise: the default `prefer` encrypts loopback traffic, which
/// protects nothing and cost scoring ~16% of its CPU in rustls (and Postgres its
/// OpenSSL share). A remote host keeps the default.
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url)?;
    let sslmode_explicit = url.contains("sslmode=") || std::env::var_os("PGSSLMODE").is_some();
    let loopback = options.get_socket().is_some()
        || matches!(
            options.get_host(),
            "localhost" | "127.0.0.1" | "::1" | "[::1]"
        )
        || options.get_host().starts_with('/');
    Ok(if loopback && !sslmode_explicit {
        options.ssl_mode(PgSslMode::Disable)
    } else {
        options
    })
}

/// Applies several migration sets as one set, recorded in the one `_sqlx_migrations`
/// table. Merging (rather than running each set with `ignore_missing`) keeps sqlx's
/// check that no applied migration vanished or changed. The sets must use disjoint
/// version ranges: libraries take versions from 9_000_000_000 up, services count from 1.
pub async fn migrate_all(pool: &PgPool, migrators: &[&Migrator]) -> anyhow::Result<()> {
    let mut migrations: Vec<Migration> = migrators
        .iter()
        .flat_map(|migrator| migrator.iter().cloned())
        .collect();
    migrations.sort_by_key(|migration| migration.version);
    if let Some(pair) = migrations
        .windows(2)
        .find(|pair| pair[0].version == pair[1].version)
    {
        anyhow::bail!(
            "migration version {} is defined twice ({} and {})",
            pair[0].version,
            pair[0].description,
            pair[1].description
        );
    }
    Migrator::new(Migrations(migrations))
        .await?
        .run(pool)
        .await?;
    Ok(())
}

/// An already resolved list of migrations, as a source for [`Migrator::new`].
#[derive(Debug)]
struct Migrations(Vec<Migration>);

impl MigrationSource<'static> for Migrations {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move { Ok(self.0) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing;

    async fn exists(name: &str) -> bool {
        let mut connection = PgConnectOptions::from_str(&testing::server_url())
            .expect("url")
            .database("postgres")
            .connect()
            .await
            .expect("connect");
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut connection)
            .await
            .expect("query")
    }

    #[test]
    fn tls_is_off_to_this_host_unless_asked_for_and_kept_elsewhere() {
        let mode = |url: &str| connect_options(url).expect("url").get_ssl_mode();
        if std::env::var_os("PGSSLMODE").is_none() {
            for url in [
                "postgres://postgres@127.0.0.1:5432/db",
                "postgres://postgres@localhost/db",
                "postgres://postgres@[::1]:5432/db",
            ] {
                assert!(matches!(mode(url), PgSslMode::Disable), "{url}");
            }
            assert!(matches!(
                mode("postgres://postgres@db.internal:5432/db"),
                PgSslMode::Prefer
            ));
        }
        assert!(matches!(
            mode("postgres://postgres@127.0.0.1:5432/db?sslmode=require"),
            PgSslMode::Require
        ));
        assert!(matches!(
            mode("postgres://postgres@127.0.0.1:5432/db?sslmode=prefer"),
            PgSslMode::Prefer
        ));
    }

    /// Replicas starting together race to create the database: all succeed, one creates.
    #[tokio::test]
    async fn concurrent_creators_all_succeed_and_the_database_exists_once() {
        let url = testing::fresh_database_url("db");
        let name = PgConnectOptions::from_str(&url)
            .expect("url")
            .get_database()
            .expect("name")
            .to_owned();
        assert!(!exists(&name).await);
        let creators: Vec<_> = (0..4)
            .map(|_| tokio::spawn(create_database_if_missing_owned(url.clone())))
            .collect();
        for creator in creators {
            creator.await.expect("join").expect("created or found");
        }
        assert!(exists(&name).await);
        // Idempotent: a second start finds it.
        create_database_if_missing(&url).await.expect("again");
        testing::drop_database(&url).await.expect("drop");
        assert!(!exists(&name).await);
    }

    async fn create_database_if_missing_owned(url: String) -> anyhow::Result<()> {
        create_database_if_missing(&url).await
    }

    #[tokio::test]
    async fn a_database_name_postgres_cannot_hold_is_refused() {
        let url = testing::fresh_database_url(&"x".repeat(80));
        let err = create_database_if_missing(&url)
            .await
            .expect_err("too long");
        assert!(err.to_string().contains("1..=63"), "{err}");
    }
}
