//! Rate limits over every replica: requests per minute as GCRA (the whole minute's allowance
//! usable at once, refilled continuously, as governor does on one replica), and a key's tokens
//! per minute as a bucket an answer may overdraw. Both read Redis's own clock, so replicas
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

/// KEYS[1]: a bucket (`level`, `at` in µs). ARGV: tokens per minute, tokens, and `take` (only
/// when the bucket holds them, or all of it for a prompt bigger than a minute) or `charge`
/// (always, overdrawing). Returns [1, 0] or [0, ms until it would hold them].
const TOKENS: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cap, n = tonumber(ARGV[1]), tonumber(ARGV[2])
local v = redis.call('HMGET', KEYS[1], 'level', 'at')
local level, at = tonumber(v[1]) or cap, tonumber(v[2]) or now
level = math.min(cap, level + (now - at) * cap / 60000000)
if ARGV[3] == 'take' then
  local need = math.min(n, cap)
  if level < need then return {0, math.ceil((need - level) * 60000 / cap)} end
end
redis.call('HSET', KEYS[1], 'level', tostring(level - n), 'at', string.format('%d', now))
redis.call('PEXPIRE', KEYS[1], 120000)
return {1, 0}
";
static TOKENS_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(TOKENS));

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

    /// Takes a prompt's tokens from a key's minute; Ok(Err(wait)) while it cannot.
    pub async fn take_tokens(&self, key: &str, tpm: u32, tokens: u64) -> Result<Result<(), Duration>, Down> {
        let reply = self.tokens(key, tpm, tokens as i64, "take").await?;
        Ok(match reply.as_slice() {
            [0, wait, ..] => Err(Duration::from_millis((*wait).max(0) as u64)),
            _ => Ok(()),
        })
    }

    /// Charges what an answer used beyond what admission took (negative: gives some back).
    pub async fn charge_tokens(&self, key: &str, tpm: u32, tokens: i64) -> Result<(), Down> {
        self.tokens(key, tpm, tokens, "charge").await.map(|_| ())
    }

    async fn tokens(&self, key: &str, tpm: u32, tokens: i64, how: &str) -> Result<Vec<i64>, Down> {
        let mut call = TOKENS_SCRIPT.prepare_invoke();
        call.key(format!("hermes:tokens:key:{key}")).arg(tpm.max(1)).arg(tokens).arg(how);
        self.call(|mut c| async move { call.invoke_async(&mut c).await }).await
    }
}
