//! GetCreditLine's cache (DESIGN §2: Redis is a cache, never a source of truth):
//! cache-aside per customer under `<prefix>line:{<customer_id>}` (a hash tag, so a
//! customer's keys share a Cluster slot), holding the encoded `CreditLine` and the
//! `cache_version` of the line row it was built from. Every change to a line bumps
//! that version in Postgres in the transaction that makes it; [`LineCache::put`] writes
//! through one Lua script that refuses a value older than the one held, so a slow
//! reader can never overwrite a newer value. Invalidation writes a tombstone at the new
//! version (an empty value) for the same reason. Redis errors and slowness are never
//! the caller's: every call is bounded by [`REDIS_CALL_TIMEOUT`] and a failure reads as
//! a miss (the caller then answers from Postgres and the ledger). The cache never
//! authorises money: the ledger's posting does.

use std::time::Duration;

use microloan_platform::cache::Cache;
use microloan_proto::account::v1::CreditLine;
use prost::Message;
use uuid::Uuid;

/// Longest a cache round trip may add to a request before it counts as a miss.
pub const REDIS_CALL_TIMEOUT: Duration = Duration::from_millis(250);

/// Sets the value unless the held version is newer; refreshes the TTL. Returns 1 when
/// written, 0 when refused as stale.
const PUT_SCRIPT: &str = r"
local held = redis.call('HGET', KEYS[1], 'v')
if held and tonumber(held) > tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'v', ARGV[1], 'd', ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
";

/// The outcome of a [`LineCache::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Written,
    /// A newer version is held; nothing changed.
    Stale,
    /// Redis did not answer in time or failed (logged); nothing is known.
    Unavailable,
}

/// Credit lines in Redis; see the module docs.
#[derive(Debug, Clone)]
pub struct LineCache {
    cache: Cache,
    ttl: Duration,
}

impl LineCache {
    pub fn new(cache: Cache, ttl: Duration) -> Self {
        Self { cache, ttl }
    }

    pub fn key(&self, customer_id: Uuid) -> String {
        self.cache.key(&format!("line:{{{customer_id}}}"))
    }

    /// The cached line of `customer_id`, or `None` on a miss, a tombstone or any Redis
    /// trouble.
    pub async fn get(&self, customer_id: Uuid) -> Option<(i64, CreditLine)> {
        let key = self.key(customer_id);
        let fetched = bounded(async {
            let mut connection = self.cache.connection().await?;
            redis::cmd("HMGET")
                .arg(&key)
                .arg("v")
                .arg("d")
                .query_async::<(Option<i64>, Option<Vec<u8>>)>(&mut connection)
                .await
        })
        .await?;
        let (Some(version), Some(bytes)) = fetched else {
            return None;
        };
        if bytes.is_empty() {
            return None;
        }
        match CreditLine::decode(bytes.as_slice()) {
            Ok(line) => Some((version, line)),
            Err(err) => {
                tracing::warn!(%err, "undecodable cached credit line; treated as a miss");
                None
            }
        }
    }

    /// Stores `line` at `version` unless a newer version is held.
    pub async fn put(&self, customer_id: Uuid, version: i64, line: &CreditLine) -> PutOutcome {
        self.write(customer_id, version, line.encode_to_vec()).await
    }

    /// Marks the line stale at `version`: reads miss, and only a value built from
    /// `version` or later may be stored again.
    pub async fn invalidate(&self, customer_id: Uuid, version: i64) -> PutOutcome {
        self.write(customer_id, version, Vec::new()).await
    }

    /// [`Self::invalidate`] for each (customer, version), in one pipelined round trip.
    pub async fn invalidate_all(&self, versions: &[(Uuid, i64)]) -> PutOutcome {
        if versions.is_empty() {
            return PutOutcome::Written;
        }
        let mut pipe = redis::pipe();
        for (customer_id, version) in versions {
            pipe.add_command(self.put_command(*customer_id, *version, Vec::new()))
                .ignore();
        }
        let written = bounded(async {
            let mut connection = self.cache.connection().await?;
            pipe.query_async::<()>(&mut connection).await
        })
        .await;
        match written {
            Some(()) => PutOutcome::Written,
            None => PutOutcome::Unavailable,
        }
    }

    /// The versioned write of `bytes` (empty: a tombstone) at `version` (PUT_SCRIPT).
    fn put_command(&self, customer_id: Uuid, version: i64, bytes: Vec<u8>) -> redis::Cmd {
        let mut command = redis::cmd("EVAL");
        command
            .arg(PUT_SCRIPT)
            .arg(1)
            .arg(self.key(customer_id))
            .arg(version)
            .arg(bytes)
            .arg(self.ttl.as_secs().max(1));
        command
    }

    async fn write(&self, customer_id: Uuid, version: i64, bytes: Vec<u8>) -> PutOutcome {
        let command = self.put_command(customer_id, version, bytes);
        let written = bounded(async {
            let mut connection = self.cache.connection().await?;
            command.query_async::<i64>(&mut connection).await
        })
        .await;
        match written {
            Some(1) => PutOutcome::Written,
            Some(_) => PutOutcome::Stale,
            None => PutOutcome::Unavailable,
        }
    }
}

/// `call` within [`REDIS_CALL_TIMEOUT`]; `None` (logged) on an error or timeout.
pub async fn bounded<T>(call: impl Future<Output = Result<T, redis::RedisError>>) -> Option<T> {
    match tokio::time::timeout(REDIS_CALL_TIMEOUT, call).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(err)) => {
            tracing::warn!(%err, "redis call failed; serving without the cache");
            None
        }
        Err(_) => {
            tracing::warn!("redis call timed out; serving without the cache");
            None
        }
    }
}
