//! Redis: a cache and an event bus, never a source of truth (DESIGN §2). A service
//! starts and keeps serving while Redis is down; the connection is (re)made on use.

use std::{sync::Arc, time::Duration};

use redis::{
    RedisError,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tokio::sync::OnceCell;

use crate::config::CommonConfig;

/// Each Redis round trip and connection attempt is bounded, so a hung Redis slows a
/// request by at most this much instead of stalling it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
const RECONNECT_RETRIES: usize = 3;

/// A shared, lazily connected Redis handle whose keys all start with one prefix.
#[derive(Clone)]
pub struct Cache {
    client: redis::Client,
    key_prefix: Arc<str>,
    connection: Arc<OnceCell<ConnectionManager>>,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

impl Cache {
    /// Parses the URL and tries one connection; a failure is logged, not fatal.
    pub async fn connect(config: &CommonConfig) -> anyhow::Result<Self> {
        let cache = Self::open(config.redis_url.expose(), &config.redis_key_prefix)?;
        if let Err(err) = cache.ping().await {
            tracing::warn!(%err, "Redis is unavailable at start-up; serving without it until it returns");
        }
        Ok(cache)
    }

    /// A handle that connects on first use; fails only on a malformed URL.
    pub fn open(redis_url: &str, key_prefix: &str) -> Result<Self, RedisError> {
        Ok(Self {
            client: redis::Client::open(redis_url)?,
            key_prefix: key_prefix.into(),
            connection: Arc::new(OnceCell::new()),
        })
    }

    /// `<prefix><key>`. Keys that belong to one customer should contain a
    /// `{customer_id}` hash tag so they share a Redis Cluster slot (DESIGN §11).
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.key_prefix)
    }

    /// A multiplexed connection; after the first success it reconnects by itself.
    pub async fn connection(&self) -> Result<ConnectionManager, RedisError> {
        self.connection
            .get_or_try_init(|| async {
                let config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(CONNECT_TIMEOUT))
                    .set_response_timeout(Some(RESPONSE_TIMEOUT))
                    .set_number_of_retries(RECONNECT_RETRIES);
                self.client.get_connection_manager_with_config(config).await
            })
            .await
            .cloned()
    }

    /// A connection of its own for blocking commands (`XREADGROUP ... BLOCK`), which
    /// would stall every other command multiplexed on the shared one. Its response
    /// timeout is `blocking_max` plus the usual round-trip bound.
    pub async fn dedicated_connection(
        &self,
        blocking_max: Duration,
    ) -> Result<ConnectionManager, RedisError> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(blocking_max + RESPONSE_TIMEOUT))
            .set_number_of_retries(RECONNECT_RETRIES);
        self.client.get_connection_manager_with_config(config).await
    }

    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut connection = self.connection().await?;
        redis::cmd("PING").query_async::<()>(&mut connection).await
    }
}
