//! Rate limits over every replica: requests per minute as GCRA (the whole minute's allowance
//! usable at once, refilled continuously, as governor does on one replica) for clients and
//! backends, and what an answer adds to a key's tokens per minute (a key's own limits are
//! taken with its budget in one script, budgets.rs). Both read Redis's own clock, so replicas
//! whose clocks differ still agree.

use super::{Down, Replicas};
use std::sync::LazyLock;
use std::time::Duration;

/// What every limit script starts with (this one's and budgets.rs's ADMIT): Redis's clock, and
/// the two kinds of limit, each read (what it would be after this request) apart from written
/// (once every check of the script has passed).
pub(super) const LIMITS_LUA: &str = r"
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
-- GCRA: the theoretical arrival time (µs) after one more request, the µs until that is
-- allowed (0: now; the whole minute is usable at once) and the interval between requests.
local function gcra_after(key, per_minute)
  local interval = math.floor(60000000 / per_minute)
  local tat = tonumber(redis.call('GET', key) or '0')
  if tat < now_us then tat = now_us end
  local after = tat + interval
  return after, math.max(0, after - 60000000 - now_us), interval
end
local function gcra_set(key, after)
  redis.call('SET', key, string.format('%d', after), 'PX', math.ceil((after - now_us) / 1000) + 1000)
end
-- A token bucket (`level`, `at` in µs) refilled to now; it may have been overdrawn.
local function bucket_level(key, cap)
  local v = redis.call('HMGET', key, 'level', 'at')
  local level = tonumber(v[1]) or cap
  return math.min(cap, level + (now_us - (tonumber(v[2]) or now_us)) * cap / 60000000)
end
local function bucket_set(key, level)
  redis.call('HSET', key, 'level', tostring(level), 'at', string.format('%d', now_us))
  redis.call('PEXPIRE', key, 120000)
end
";

/// KEYS[1]: the limit's theoretical arrival time in µs. ARGV: requests per minute.
/// Returns [1, requests left] or [0, µs until one is allowed].
const GCRA: &str = r"
local after, wait, interval = gcra_after(KEYS[1], tonumber(ARGV[1]))
if wait > 0 then return {0, wait} end
gcra_set(KEYS[1], after)
return {1, math.floor((now_us + 60000000 - after) / interval)}
";
static GCRA_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(&format!("{LIMITS_LUA}{GCRA}")));

/// KEYS[1]: a key's token bucket, whose prompt tokens were taken on admission (budgets.rs,
/// ADMIT). ARGV: tokens per minute, and the tokens an answer used beyond that (negative: gives
/// some back); the bucket may be overdrawn, so the next request waits.
const CHARGE: &str = r"
bucket_set(KEYS[1], bucket_level(KEYS[1], tonumber(ARGV[1])) - tonumber(ARGV[2]))
return 1
";
static CHARGE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(&format!("{LIMITS_LUA}{CHARGE}")));

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
