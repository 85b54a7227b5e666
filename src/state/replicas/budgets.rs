//! Spend and reservations over every replica. Per scope (a key or a team) and window, Redis
//! holds each replica's share of the spend (`hermes:spend:<scope>:<window start>`, a hash of
//! replica -> micro-cents) and the holds of requests in flight (`hermes:holds:<scope>`, hold ->
//! "micro-cents expiry-ms"). One Lua script admits a keyed request in one round trip: its
//! requests and tokens per minute, and a hold on the key's and its team's budgets at once, so
//! concurrent requests on any replicas cannot together pass a budget.
//!
//! A replica only ever *sets* its own share to what it knows it spent (never adds): a lost
//! reply, a Redis restart or a stretch in fail-open mode is mended by the next call, which
//! writes the share again. Shares only grow within a window, so a late write cannot undo one.

use super::rates::LIMITS_LUA;
use super::{Down, Replicas};
use crate::state::keys::{Budget, Exhausted, KeyBook, KeySpec, OnBudget, Reservation, Scope};
use std::sync::Arc;
use std::sync::LazyLock;
use std::time::Duration;

/// A hold outlives its request by this much at most (a replica that died holding it).
const HOLD_TTL_MS: u64 = 15 * 60 * 1000;
/// Spend hashes outlive their window by a day (every window is at most 31 days).
const SPEND_TTL_SECONDS: u64 = 32 * 24 * 3600;
/// Money in Redis is whole micro-cents (doubles in Lua are exact far beyond any budget).
const MICRO: f64 = 1_000_000.0;

fn micro(cents: f64) -> i64 {
    (cents * MICRO).round() as i64
}

fn from_micro(micro: i64) -> f64 {
    micro as f64 / MICRO
}

fn scope_key(scope: &Scope) -> String {
    match scope {
        Scope::Key(n) => format!("key:{n}"),
        Scope::Team(n) => format!("team:{n}"),
    }
}

fn window_start(budget: Budget) -> i64 {
    budget.window.around(chrono::Utc::now()).0.timestamp()
}

/// What both budget scripts start with: this replica's share of a scope's spend written (only
/// ever up, since shares grow within a window) and the spend over every replica read back.
const SHARE_LUA: &str = r"
local function share(spend, me, mine, ttl)
  if tonumber(mine) > tonumber(redis.call('HGET', spend, me) or '0') then
    redis.call('HSET', spend, me, mine)
    redis.call('EXPIRE', spend, ttl)
  end
  local spent = 0
  for _, v in ipairs(redis.call('HVALS', spend)) do spent = spent + tonumber(v) end
  return spent
end
";

/// A keyed request's whole admission in one round trip, all or nothing: its requests per
/// minute (GCRA, the whole minute usable at once), its prompt's tokens per minute (a bucket an
/// answer may overdraw later), and a hold of its estimate on the key's and its team's budgets.
/// KEYS: the key's rate, its token bucket, then per scope its spend hash and holds hash.
/// ARGV: the hold's micro-cents, its name, its life in ms, whether a spent scope refuses even
/// free requests, this replica's name, the spend TTL, rpm (0: none), tpm (0: none), the prompt's
/// tokens, whether the limits count even when a budget refuses (a key that then goes on on
/// free local backends), then per scope its budget and this replica's share (micro-cents).
/// Returns [0, 0] (admitted), [1, µs until a request is allowed], [2, ms until the tokens are
/// there] or [3, the 1-based scope that refused], then per scope its spend and holds.
const ADMIT: &str = r"
local now = math.floor(now_us / 1000)
local need, hold, life, refuse, me, ttl = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1', ARGV[5], tonumber(ARGV[6])
local rpm, tpm, tokens, anyway = tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), ARGV[10] == '1'
local tat, level
if rpm > 0 then
  local wait
  tat, wait = gcra_after(KEYS[1], rpm)
  if wait > 0 then return {1, wait} end
end
if tpm > 0 then
  level = bucket_level(KEYS[2], tpm)
  local want = math.min(tokens, tpm)
  if level < want then return {2, math.ceil((want - level) * 60000 / tpm)} end
end
local function count()
  if rpm > 0 then gcra_set(KEYS[1], tat) end
  if tpm > 0 then bucket_set(KEYS[2], level - tokens) end
end
local n = (#KEYS - 2) / 2
local out = {0, 0}
local refused = 0
for i = 1, n do
  local spend, holds = KEYS[1 + 2 * i], KEYS[2 + 2 * i]
  local budget = tonumber(ARGV[9 + 2 * i])
  local spent = share(spend, me, ARGV[10 + 2 * i], ttl)
  local held = 0
  local all = redis.call('HGETALL', holds)
  for j = 1, #all, 2 do
    local amount, expiry = string.match(all[j + 1], '(%d+) (%d+)')
    if tonumber(expiry) < now then redis.call('HDEL', holds, all[j]) else held = held + tonumber(amount) end
  end
  out[1 + 2 * i], out[2 + 2 * i] = spent, held
  if refused == 0 and ((need > 0 and spent + held + need > budget) or (refuse and spent >= budget)) then refused = i end
end
if refused > 0 then
  if anyway then count() end
  out[1], out[2] = 3, refused
  return out
end
count()
if need > 0 then
  for i = 1, n do
    redis.call('HSET', KEYS[2 + 2 * i], hold, string.format('%d %d', need, now + life))
    redis.call('PEXPIRE', KEYS[2 + 2 * i], life)
  end
end
return out
";
static ADMIT_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(&format!("{LIMITS_LUA}{SHARE_LUA}{ADMIT}")));

/// KEYS: per scope its spend hash and holds hash. ARGV: the hold to drop ('' for none), this
/// replica's name, the spend TTL, then per scope this replica's share. Returns each scope's
/// spend over every replica.
const SETTLE: &str = r"
local hold, me, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
local out = {}
for i = 1, #KEYS / 2 do
  local spend, holds = KEYS[2 * i - 1], KEYS[2 * i]
  if hold ~= '' then redis.call('HDEL', holds, hold) end
  out[i] = share(spend, me, ARGV[3 + i], ttl)
end
return out
";
static SETTLE_SCRIPT: LazyLock<redis::Script> = LazyLock::new(|| redis::Script::new(&format!("{SHARE_LUA}{SETTLE}")));

/// What a keyed request's admission came to.
#[derive(Debug)]
pub enum Admitted {
    Held(Reservation),
    /// Over its requests per minute: when one is allowed again.
    Requests(Duration),
    /// Over its tokens per minute: when the prompt's tokens are there.
    Tokens(Duration),
    Budget(Exhausted),
}

fn keys_of(scopes: &[(Scope, Budget)]) -> Vec<String> {
    scopes.iter().flat_map(|(s, b)| [format!("hermes:spend:{}:{}", scope_key(s), window_start(*b)), format!("hermes:holds:{}", scope_key(s))]).collect()
}

impl Replicas {
    fn hold_name(&self, id: u64) -> String {
        format!("{}:{id}", self.me)
    }

    /// A keyed request's admission over every replica (see ADMIT): Err(Down) when Redis did
    /// not say, and the caller decides by what it knows itself.
    pub async fn admit(&self, book: &KeyBook, key: &KeySpec, cents: f64, prompt_tokens: u64) -> Result<Admitted, Down> {
        let scopes = book.budgets_over(key);
        let (rpm, tpm) = (key.rpm.unwrap_or(0), key.tpm.unwrap_or(0));
        let id = book.next_hold();
        if scopes.is_empty() && rpm == 0 && tpm == 0 {
            return Ok(Admitted::Held(book.hold(id, scopes, cents)));
        }
        let mut call = ADMIT_SCRIPT.prepare_invoke();
        call.key(format!("hermes:rate:key:{}", key.name)).key(format!("hermes:tokens:key:{}", key.name));
        for k in keys_of(&scopes) {
            call.key(k);
        }
        let refuse = if key.on_budget == OnBudget::Refuse { "1" } else { "0" };
        let anyway = if key.on_budget == OnBudget::Local { "1" } else { "0" };
        call.arg(micro(cents)).arg(self.hold_name(id)).arg(HOLD_TTL_MS).arg(refuse).arg(&self.me).arg(SPEND_TTL_SECONDS);
        call.arg(rpm).arg(tpm).arg(prompt_tokens).arg(anyway);
        for (s, b) in &scopes {
            call.arg(micro(b.cents)).arg(micro(book.mine(s, *b)));
        }
        let reply: Vec<i64> = self.call(|mut c| async move { call.invoke_async(&mut c).await }).await?;
        let at = |i: usize| reply.get(i).copied().unwrap_or(0);
        match at(0) {
            1 => return Ok(Admitted::Requests(Duration::from_micros(at(1).max(0) as u64))),
            2 => return Ok(Admitted::Tokens(Duration::from_millis(at(1).max(0) as u64))),
            _ => {}
        }
        for (i, (s, b)) in scopes.iter().enumerate() {
            book.heard(s, *b, window_start(*b), from_micro(at(2 + 2 * i)));
        }
        if at(0) == 3 {
            let refused = (at(1).max(1) as usize).min(scopes.len());
            let (scope, budget) = &scopes[refused - 1];
            let (spent, held) = (from_micro(at(2 * refused)), from_micro(at(2 * refused + 1)));
            // The script refused: so does this, even should rounding make the check differ.
            return Ok(Admitted::Budget(KeyBook::exhausted(scope, *budget, spent, held, cents)));
        }
        Ok(Admitted::Held(book.hold(id, scopes, cents)))
    }

    /// After `book.settle`: drops the hold in Redis and writes this replica's new share.
    pub async fn settle(&self, book: &KeyBook, r: &Reservation) -> Result<(), Down> {
        self.share(book, &r.scopes, &self.hold_name(r.id)).await
    }

    /// Writes this replica's share of each scope and reads back the total over all of them.
    async fn share(&self, book: &KeyBook, scopes: &[(Scope, Budget)], hold: &str) -> Result<(), Down> {
        if scopes.is_empty() {
            return Ok(());
        }
        let mut call = SETTLE_SCRIPT.prepare_invoke();
        for k in keys_of(scopes) {
            call.key(k);
        }
        call.arg(hold).arg(&self.me).arg(SPEND_TTL_SECONDS);
        for (s, b) in scopes {
            call.arg(micro(book.mine(s, *b)));
        }
        let totals: Vec<i64> = self.call(|mut c| async move { call.invoke_async(&mut c).await }).await?;
        for ((s, b), total) in scopes.iter().zip(totals) {
            book.heard(s, *b, window_start(*b), from_micro(total));
        }
        Ok(())
    }
}

/// Every half second: this replica's share of every budget written again (what a Redis that
/// restarted empty, or a stretch while it was away, lost) and the others' read back, so that
/// spend shown by any replica is everyone's.
pub async fn reconcile(replicas: Arc<Replicas>, book: Arc<KeyBook>) {
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !replicas.up() {
            continue;
        }
        let scopes = book.budgeted();
        for chunk in scopes.chunks(64) {
            if replicas.share(&book, chunk, "").await.is_err() {
                break;
            }
        }
    }
}
