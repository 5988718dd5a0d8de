//! Rate limits in Redis (RESOURCE_EXHAUSTED RATE_LIMITED, metadata retry_after_seconds):
//! a fixed one-minute window per (RPC, subject), counted with one Lua script (INCR and
//! the window's expiry together). Subjects are a customer id, a national-id keyed hash
//! or a device id, always inside a `{...}` hash tag. With Redis unreachable the limits
//! are not enforced (logged): Redis is never a reason to refuse a customer, and the
//! ledger's posting still guards every fen.

use microloan_platform::cache::Cache;

use crate::{error::AccountError, line_cache::bounded};

/// Window length (seconds).
pub const WINDOW_SECONDS: u64 = 60;

/// Counts one call and returns {count, seconds left in the window}.
const COUNT_SCRIPT: &str = r"
local count = redis.call('INCR', KEYS[1])
if count == 1 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then
  redis.call('EXPIRE', KEYS[1], ARGV[1])
  ttl = tonumber(ARGV[1])
end
return {count, ttl}
";

/// One limit to check: `rpc` by `kind` (`customer`, `device`) for `subject`, at most
/// `per_minute` calls (0 = unlimited).
#[derive(Debug, Clone, Copy)]
pub struct Limit<'a> {
    pub rpc: &'static str,
    pub kind: &'static str,
    pub subject: &'a str,
    pub per_minute: u32,
}

/// Counts the call against every limit; RATE_LIMITED naming the longest wait if any is
/// exceeded. Empty subjects (an unknown device) are skipped.
pub async fn check(cache: &Cache, limits: &[Limit<'_>]) -> Result<(), AccountError> {
    let active: Vec<&Limit<'_>> = limits
        .iter()
        .filter(|limit| limit.per_minute > 0 && !limit.subject.is_empty())
        .collect();
    if active.is_empty() {
        return Ok(());
    }
    // Every counter in one pipeline: one Redis round trip however many limits apply.
    let mut pipeline = redis::pipe();
    for limit in &active {
        let key = cache.key(&format!(
            "ratelimit:{}:{}:{{{}}}",
            limit.rpc, limit.kind, limit.subject
        ));
        pipeline
            .cmd("EVAL")
            .arg(COUNT_SCRIPT)
            .arg(1)
            .arg(key)
            .arg(WINDOW_SECONDS);
    }
    let counted = bounded(async {
        let mut connection = cache.connection().await?;
        pipeline
            .query_async::<Vec<(u64, i64)>>(&mut connection)
            .await
    })
    .await
    .unwrap_or_default();
    let mut retry_after_seconds = 0;
    for (limit, (count, ttl_seconds)) in active.iter().zip(counted) {
        if count > u64::from(limit.per_minute) {
            let wait = u64::try_from(ttl_seconds.max(1)).unwrap_or(WINDOW_SECONDS);
            retry_after_seconds = retry_after_seconds.max(wait);
        }
    }
    if retry_after_seconds > 0 {
        return Err(AccountError::RateLimited {
            retry_after_seconds,
        });
    }
    Ok(())
}

/// [`check`] for one RPC per customer and per device: `limits` = (per customer, per
/// device) calls a minute.
pub async fn check_customer_and_device(
    cache: &Cache,
    rpc: &'static str,
    customer: &str,
    device: &str,
    limits: (u32, u32),
) -> Result<(), AccountError> {
    check(
        cache,
        &[
            Limit {
                rpc,
                kind: "customer",
                subject: customer,
                per_minute: limits.0,
            },
            Limit {
                rpc,
                kind: "device",
                subject: device,
                per_minute: limits.1,
            },
        ],
    )
    .await
}
