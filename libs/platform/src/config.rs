//! Configuration comes from environment variables only (twelve-factor). A variable that
//! is missing or malformed stops the process with exit code 64 (`EX_USAGE`) and a
//! message that names it, before anything else starts.

use std::{fmt::Display, net::SocketAddr, str::FromStr, time::Duration};

/// `EX_USAGE` from sysexits.h: the process was started with bad configuration.
pub const EXIT_CODE_CONFIG: u8 = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration error: {variable}: {reason}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub reason: String,
}

/// Reads variables through a lookup function so tests can supply their own
/// environment without touching the process-wide one.
pub struct Env<'a> {
    lookup: Box<Lookup<'a>>,
}

type Lookup<'a> = dyn Fn(&str) -> Option<String> + 'a;

impl std::fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Env")
    }
}

impl<'a> Env<'a> {
    pub fn process() -> Env<'static> {
        Env {
            lookup: Box::new(|name| std::env::var(name).ok()),
        }
    }

    pub fn from_fn(lookup: impl Fn(&str) -> Option<String> + 'a) -> Self {
        Self {
            lookup: Box::new(lookup),
        }
    }

    /// The raw value, with an empty string treated as unset (a common shell mistake:
    /// `FOO= cmd`).
    fn raw(&self, variable: &'static str) -> Option<String> {
        (self.lookup)(variable).filter(|value| !value.trim().is_empty())
    }

    pub fn required<T>(&self, variable: &'static str) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        let raw = self.raw(variable).ok_or(ConfigError {
            variable,
            reason: "is not set".into(),
        })?;
        parse(variable, &raw)
    }

    pub fn optional<T>(&self, variable: &'static str) -> Result<Option<T>, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        self.raw(variable)
            .map(|raw| parse(variable, &raw))
            .transpose()
    }

    pub fn or<T>(&self, variable: &'static str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: Display,
    {
        Ok(self.optional(variable)?.unwrap_or(default))
    }

    /// A whole number of seconds, bounded so a typo cannot disable a limit.
    pub fn seconds(
        &self,
        variable: &'static str,
        default: Duration,
        max: Duration,
    ) -> Result<Duration, ConfigError> {
        let seconds: u64 = self.or(variable, default.as_secs())?;
        let value = Duration::from_secs(seconds);
        if value > max {
            return Err(ConfigError {
                variable,
                reason: format!("{seconds} s is above the maximum of {} s", max.as_secs()),
            });
        }
        Ok(value)
    }

    /// A whole number within `min..=max`.
    pub fn bounded(
        &self,
        variable: &'static str,
        default: u64,
        min: u64,
        max: u64,
    ) -> Result<u64, ConfigError> {
        let value: u64 = self.or(variable, default)?;
        if !(min..=max).contains(&value) {
            return Err(ConfigError {
                variable,
                reason: format!("{value} is outside {min}..={max}"),
            });
        }
        Ok(value)
    }

    /// A URL with an `http`/`https` scheme: what a gRPC peer is reached at.
    pub fn peer_url(&self, variable: &'static str, default: &str) -> Result<String, ConfigError> {
        let url: String = self.or(variable, default.to_owned())?;
        let uri: http::Uri = parse(variable, &url)?;
        match (uri.scheme_str(), uri.host()) {
            (Some("http" | "https"), Some(_)) => Ok(url),
            _ => Err(ConfigError {
                variable,
                reason: format!("`{url}` is not an http:// or https:// URL with a host"),
            }),
        }
    }
}

fn parse<T>(variable: &'static str, raw: &str) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: Display,
{
    raw.trim().parse().map_err(|err: T::Err| ConfigError {
        variable,
        // The value is not echoed: it may be a secret (a URL with a password, a key).
        reason: format!("is malformed: {err}"),
    })
}

/// How logs are written: human-readable for a terminal, JSON lines for a collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "human" | "text" => Ok(Self::Human),
            "json" => Ok(Self::Json),
            other => Err(format!("`{other}` is not one of human, json")),
        }
    }
}

/// A secret that is never printed, not even by `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Ok(Self(value.to_owned()))
    }
}

/// Fixed facts about one service, used for defaults and names.
#[derive(Debug, Clone, Copy)]
pub struct ServiceIdentity {
    /// Short name: `ledger`. Also the default database name and OTel service name.
    pub name: &'static str,
    pub default_grpc_port: u16,
    pub default_admin_port: u16,
}

/// HS256 secrets shorter than the hash output weaken the MAC (RFC 7518 §3.2).
pub const JWT_SECRET_BYTES_MIN: usize = 32;

pub const MESSAGE_BYTES_DEFAULT: u64 = 4 * 1024 * 1024;
pub const MESSAGE_BYTES_MAX: u64 = 64 * 1024 * 1024;
pub const CONCURRENT_REQUESTS_DEFAULT: u64 = 256;
pub const CONCURRENT_REQUESTS_MAX: u64 = 10_000;
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);
pub const REQUEST_TIMEOUT_MAX: Duration = Duration::from_secs(600);
pub const SHUTDOWN_GRACE_DEFAULT: Duration = Duration::from_secs(20);
pub const SHUTDOWN_GRACE_MAX: Duration = Duration::from_secs(300);

/// The settings every service reads the same way.
#[derive(Debug, Clone)]
pub struct CommonConfig {
    pub identity: ServiceIdentity,
    /// `LISTEN_ADDR`: where gRPC is served.
    pub listen_addr: SocketAddr,
    /// `ADMIN_LISTEN_ADDR`: where `/metrics` is served (plain HTTP).
    pub admin_listen_addr: SocketAddr,
    /// `DATABASE_URL`: this service's own Postgres database (created if missing).
    pub database_url: Secret,
    /// `DATABASE_MAX_CONNECTIONS`.
    pub database_connections_max: u32,
    /// `REDIS_URL`.
    pub redis_url: Secret,
    /// `REDIS_KEY_PREFIX`: every key this service writes starts with it, so tests and
    /// environments can share one Redis without seeing each other's keys.
    pub redis_key_prefix: String,
    /// `AUTH_JWT_SECRET`: the HS256 key that signs and verifies bearer tokens.
    pub auth_jwt_secret: Secret,
    /// `AUTH_JWT_VERIFY_ONLY_SECRET`: during a rotation, the previous secret; tokens
    /// signed with it are still accepted, none are signed with it.
    pub auth_jwt_verify_only_secret: Option<Secret>,
    /// `LOG_FORMAT`: human (default) or json.
    pub log_format: LogFormat,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`: spans are exported over OTLP/gRPC when set.
    pub otlp_endpoint: Option<String>,
    /// `OTEL_SERVICE_NAME`: defaults to the service's short name.
    pub otel_service_name: String,
    /// `MAX_MESSAGE_BYTES`: largest request or response message.
    pub message_bytes_max: usize,
    /// `MAX_CONCURRENT_REQUESTS`: in-flight requests per connection (HTTP/2 streams).
    pub concurrent_requests_max: usize,
    /// `REQUEST_TIMEOUT_SECONDS`: the server-side ceiling on any call's deadline.
    pub request_timeout: Duration,
    /// `SHUTDOWN_GRACE_SECONDS`: how long in-flight calls may drain after SIGTERM.
    pub shutdown_grace: Duration,
}

impl CommonConfig {
    pub fn from_env(env: &Env<'_>, identity: ServiceIdentity) -> Result<Self, ConfigError> {
        let auth_jwt_secret: Secret = env.required("AUTH_JWT_SECRET")?;
        if auth_jwt_secret.expose().len() < JWT_SECRET_BYTES_MIN {
            return Err(ConfigError {
                variable: "AUTH_JWT_SECRET",
                reason: format!("must be at least {JWT_SECRET_BYTES_MIN} bytes"),
            });
        }
        let auth_jwt_verify_only_secret: Option<Secret> =
            env.optional("AUTH_JWT_VERIFY_ONLY_SECRET")?;
        if auth_jwt_verify_only_secret
            .as_ref()
            .is_some_and(|secret| secret.expose().len() < JWT_SECRET_BYTES_MIN)
        {
            return Err(ConfigError {
                variable: "AUTH_JWT_VERIFY_ONLY_SECRET",
                reason: format!("must be at least {JWT_SECRET_BYTES_MIN} bytes"),
            });
        }
        let database_url: Secret = env.required("DATABASE_URL")?;
        if !database_url.expose().starts_with("postgres://")
            && !database_url.expose().starts_with("postgresql://")
        {
            return Err(ConfigError {
                variable: "DATABASE_URL",
                reason: "must be a postgres:// URL".into(),
            });
        }
        let redis_url: Secret = env.required("REDIS_URL")?;
        redis::Client::open(redis_url.expose()).map_err(|err| ConfigError {
            variable: "REDIS_URL",
            reason: format!("is malformed: {err}"),
        })?;
        Ok(Self {
            identity,
            listen_addr: env.or(
                "LISTEN_ADDR",
                SocketAddr::from(([0, 0, 0, 0], identity.default_grpc_port)),
            )?,
            admin_listen_addr: env.or(
                "ADMIN_LISTEN_ADDR",
                SocketAddr::from(([0, 0, 0, 0], identity.default_admin_port)),
            )?,
            database_url,
            database_connections_max: env.bounded("DATABASE_MAX_CONNECTIONS", 10, 1, 1000)? as u32,
            redis_url,
            redis_key_prefix: env.or("REDIS_KEY_PREFIX", "microloan:".to_owned())?,
            auth_jwt_secret,
            auth_jwt_verify_only_secret,
            log_format: env.or("LOG_FORMAT", LogFormat::Human)?,
            otlp_endpoint: env.optional("OTEL_EXPORTER_OTLP_ENDPOINT")?,
            otel_service_name: env.or("OTEL_SERVICE_NAME", identity.name.to_owned())?,
            message_bytes_max: env.bounded(
                "MAX_MESSAGE_BYTES",
                MESSAGE_BYTES_DEFAULT,
                1024,
                MESSAGE_BYTES_MAX,
            )? as usize,
            concurrent_requests_max: env.bounded(
                "MAX_CONCURRENT_REQUESTS",
                CONCURRENT_REQUESTS_DEFAULT,
                1,
                CONCURRENT_REQUESTS_MAX,
            )? as usize,
            request_timeout: env.seconds(
                "REQUEST_TIMEOUT_SECONDS",
                REQUEST_TIMEOUT_DEFAULT,
                REQUEST_TIMEOUT_MAX,
            )?,
            shutdown_grace: env.seconds(
                "SHUTDOWN_GRACE_SECONDS",
                SHUTDOWN_GRACE_DEFAULT,
                SHUTDOWN_GRACE_MAX,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const IDENTITY: ServiceIdentity = ServiceIdentity {
        name: "ledger",
        default_grpc_port: 50053,
        default_admin_port: 9103,
    };

    fn env_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn load(vars: &HashMap<String, String>) -> Result<CommonConfig, ConfigError> {
        CommonConfig::from_env(&Env::from_fn(|name| vars.get(name).cloned()), IDENTITY)
    }

    fn valid() -> HashMap<String, String> {
        env_of(&[
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/ledger"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
    }

    #[test]
    fn defaults_apply_when_only_the_required_variables_are_set() {
        let config = load(&valid()).expect("valid config");
        assert_eq!(config.listen_addr, "0.0.0.0:50053".parse().expect("addr"));
        assert_eq!(config.admin_listen_addr.port(), 9103);
        assert_eq!(config.log_format, LogFormat::Human);
        assert_eq!(config.otel_service_name, "ledger");
        assert_eq!(config.shutdown_grace, SHUTDOWN_GRACE_DEFAULT);
        assert!(config.otlp_endpoint.is_none());
    }

    #[test]
    fn each_missing_required_variable_is_named() {
        for variable in ["DATABASE_URL", "REDIS_URL", "AUTH_JWT_SECRET"] {
            let mut vars = valid();
            vars.remove(variable);
            let err = load(&vars).expect_err("missing variable");
            assert_eq!(err.variable, variable);
            assert!(err.to_string().contains(variable));
            // Blank counts as missing.
            vars.insert(variable.to_owned(), "  ".to_owned());
            assert_eq!(load(&vars).expect_err("blank").variable, variable);
        }
    }

    #[test]
    fn malformed_values_are_named_without_echoing_them() {
        let cases = [
            ("LISTEN_ADDR", "not-an-address"),
            ("LISTEN_ADDR", "127.0.0.1:99999"),
            ("ADMIN_LISTEN_ADDR", "localhost"),
            ("LOG_FORMAT", "xml"),
            ("MAX_MESSAGE_BYTES", "-1"),
            ("MAX_MESSAGE_BYTES", "999999999999"),
            ("SHUTDOWN_GRACE_SECONDS", "3601"),
            ("REQUEST_TIMEOUT_SECONDS", "1.5"),
            ("DATABASE_URL", "mysql://root@localhost/ledger"),
            ("REDIS_URL", "::::"),
            ("AUTH_JWT_SECRET", "short"),
            ("AUTH_JWT_VERIFY_ONLY_SECRET", "short"),
        ];
        for (variable, value) in cases {
            let mut vars = valid();
            vars.insert(variable.to_owned(), value.to_owned());
            let err = load(&vars).expect_err(value);
            assert_eq!(err.variable, variable, "{value}");
            if variable == "AUTH_JWT_SECRET" {
                assert!(!err.to_string().contains(value), "secret echoed");
            }
        }
    }

    #[test]
    fn peer_urls_must_be_http_with_a_host() {
        let vars = env_of(&[
            ("LEDGER_URL", "ftp://ledger"),
            ("SCORING_URL", "http://scoring:50052"),
        ]);
        let env = Env::from_fn(|name| vars.get(name).cloned());
        assert_eq!(
            env.peer_url("LEDGER_URL", "http://127.0.0.1:50053")
                .expect_err("ftp")
                .variable,
            "LEDGER_URL"
        );
        assert_eq!(
            env.peer_url("SCORING_URL", "http://127.0.0.1:50052")
                .expect("ok"),
            "http://scoring:50052"
        );
        assert_eq!(
            env.peer_url("ACCOUNT_URL", "http://127.0.0.1:50051")
                .expect("default"),
            "http://127.0.0.1:50051"
        );
    }

    #[test]
    fn secrets_do_not_leak_through_debug() {
        let config = load(&valid()).expect("valid");
        let printed = format!("{config:?}");
        assert!(!printed.contains("0123456789abcdef"));
        assert!(!printed.contains("postgres@127.0.0.1"));
    }
}
