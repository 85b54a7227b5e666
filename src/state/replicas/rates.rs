//! Rate limits over every replica: requests per minute as GCRA (the whole minute's allowance
//! usable at once, refilled continuously, as governor does on one replica) for clients and
//! backends, and what an answer adds to a key's tokens per minute (a key's own limits are
//! taken with its budget in one script, budgets.rs). Both read Redis's own clock, so replicas
//! whose clocks differ still agree.

use super::{Down, Replicas};
use std::sync::LazyLock;
use std::time::Duration;

/// KEYS[1]: the limit's theoretical arrival time in µs. ARGV: requests per minute.
/// Returns [1, requests left] or [0, µs until one is allowed].
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = math.floor(60000000 / tonumber(ARGV[1]))
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local after = tat + interval
local allow_at = after - 60000000
if allow_at > now then return {0, allow_at - now} end
redis.call('SET', KEYS[1], string.format('%d', after), 'PX', math.ceil((after - now) / 1000) + 1000)
return {1, math.floor((now + 60000000 - after) / interval)}
";
static GCRA_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(GCRA));

/// KEYS[1]: a key's token bucket (`level`, `at` in µs), whose prompt tokens were taken on
/// admission (budgets.rs, ADMIT). ARGV: tokens per minute, and the tokens an answer used beyond
/// that (negative: gives some back); the bucket may be overdrawn, so the next request waits.
const CHARGE: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cap, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'level', 'at')
local level, at = tonumber(v[1]) or cap, tonumber(v[2]) or now
level = math.min(cap, level + (now - at) * cap / 60000000)
redis.call('HSET', KEYS[1], 'level', tostring(level - n), 'at', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], 120000)
return 1
";
static CHARGE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(CHARGE));

/// One request against a shared per-minute limit.
pub enum Counted {
    Allowed { remaining: u32 },
    Refused { retry_after: Duration },
}

impl Replicas {
    /// One request under `per_minute` for `what` (`key:<name>`, `client:<digest>`,
    /// `backend:<name>`): never a client's key itself.
    pub async fn request(&self, what: &str, per_minute: u32) -> Result<Counted, Down> {
        let mut call = GCRA_SCRIPT.prepare_invoke();
        call.key(format!("hermes:rate:{what}")).arg(per_minute.max(1));
        let reply: Vec<i64> = self.call(|mut c| async move { call.invoke_async(&mut c).await }).await?;
        Ok(match reply.as_slice() {
            [1, left, ..] => Counted::Allowed { remaining: (*left).clamp(0, i64::from(u32::MAX)) as u32 },
            [_, wait, ..] => Counted::Refused { retry_after: Duration::from_micros((*wait).max(0) as u64) },
            _ => Counted::Allowed { remaining: 0 },
        })
    }

    /// Charges what an answer used beyond what admission took (negative: gives some back).
    pub async fn charge_tokens(&self, key: &str, tpm: u32, tokens: i64) -> Result<(), Down> {
        let mut call = CHARGE_SCRIPT.prepare_invoke();
        call.key(format!("hermes:tokens:key:{key}")).arg(tpm.max(1)).arg(tokens);
        self.call(|mut c| async move { call.invoke_async::<i64>(&mut c).await }).await.map(|_| ())
    }
}
