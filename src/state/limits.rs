//! Request limits with governor: BACKEND_<NAME>_RATE_LIMIT per backend (a backend over its limit is
//! skipped like a busy one) and HERMES_CLIENT_RATE_LIMIT per client key (429 with retry-after and
//! OpenAI's `x-ratelimit-*` headers).

use crate::state::config::Config;
use crate::state::lock;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

type ClientLimiter = DefaultKeyedRateLimiter<String, StateInformationMiddleware>;

pub struct Limits {
    backends: Vec<Option<Arc<DefaultDirectRateLimiter>>>,
    limits_per_minute: Vec<Option<u32>>,
    clients: Option<(Arc<ClientLimiter>, u32)>,
    checks: std::sync::atomic::AtomicU64,
}

/// A client's standing after a request was counted.
pub enum ClientVerdict {
    Unlimited,
    Allowed { limit: u32, remaining: u32 },
    Refused { limit: u32, retry_after: Duration },
}

fn per_minute(n: u32) -> Option<Quota> {
    NonZeroU32::new(n).map(Quota::per_minute)
}

impl Limits {
    pub fn new(config: &Config) -> Limits {
        let backends =
            config.backends.iter().map(|b| b.rate_limit_per_minute.and_then(per_minute).map(|q| Arc::new(DefaultDirectRateLimiter::direct(q)))).collect();
        let clients = config
            .routing
            .client_rate_limit
            .and_then(|n| per_minute(n).map(|q| (Arc::new(DefaultKeyedRateLimiter::keyed(q).with_middleware::<StateInformationMiddleware>()), n)));
        let limits_per_minute = config.backends.iter().map(|b| b.rate_limit_per_minute.filter(|n| *n > 0)).collect();
        Limits { backends, limits_per_minute, clients, checks: std::sync::atomic::AtomicU64::new(0) }
    }

    /// After a reload: unchanged backends keep what they have used of their allowance, and
    /// clients theirs when the client limit is the same.
    pub fn keep_from(&mut self, old: &Limits, same: &[Option<usize>]) {
        for (i, j) in same.iter().enumerate() {
            if let (Some(j), Some(slot)) = (j, self.backends.get_mut(i)) {
                if let Some(l) = old.backends.get(*j) {
                    *slot = l.clone();
                }
            }
        }
        if let (Some((_, now)), Some((limiter, before))) = (&self.clients, &old.clients) {
            if now == before {
                self.clients = Some((limiter.clone(), *now));
            }
        }
    }

    /// Takes one request from the backend's allowance; false when it has none left.
    pub fn backend_allows(&self, backend: usize) -> bool {
        match self.backends.get(backend) {
            Some(Some(limiter)) => limiter.check().is_ok(),
            _ => true,
        }
    }

    /// HERMES_CLIENT_RATE_LIMIT, when set.
    pub fn client_limit(&self) -> Option<u32> {
        self.clients.as_ref().map(|(_, n)| *n)
    }

    /// BACKEND_<NAME>_RATE_LIMIT, when set.
    pub fn backend_limit(&self, backend: usize) -> Option<u32> {
        self.limits_per_minute.get(backend).copied().flatten()
    }

    pub fn client(&self, key: &str) -> ClientVerdict {
        let Some((limiter, limit)) = &self.clients else { return ClientVerdict::Unlimited };
        // Forget clients whose allowance is whole again, so the table does not grow forever.
        if self.checks.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 4096 == 4095 {
            limiter.retain_recent();
        }
        match limiter.check_key(&key.to_string()) {
            Ok(state) => ClientVerdict::Allowed { limit: *limit, remaining: state.remaining_burst_capacity() },
            Err(not_until) => ClientVerdict::Refused { limit: *limit, retry_after: not_until.wait_time_from(DefaultClock::default().now()) },
        }
    }
}

/// Per virtual key: requests per minute (governor: the whole minute's allowance usable at once,
/// refilled continuously) and prompt-plus-completion tokens per minute.
#[derive(Default)]
pub struct KeyLimits {
    requests: std::sync::Mutex<std::collections::HashMap<(String, u32), Arc<DefaultDirectRateLimiter>>>,
    tokens: std::sync::Mutex<std::collections::HashMap<String, TokenBucket>>,
}

/// Tokens per minute as a bucket that refills continuously and that an answer may overdraw: a
/// request takes its prompt's tokens when admitted and its answer's when they are known, so
/// a long answer makes the next request wait rather than being cut off.
#[derive(Debug, Clone, Copy)]
struct TokenBucket {
    level: f64,
    per_minute: u32,
    at: std::time::Instant,
}

impl TokenBucket {
    fn refilled(mut self, per_minute: u32) -> TokenBucket {
        let now = std::time::Instant::now();
        let cap = f64::from(per_minute);
        self.level = (self.level + now.duration_since(self.at).as_secs_f64() * cap / 60.0).min(cap);
        TokenBucket { per_minute, at: now, ..self }
    }
}

impl KeyLimits {
    /// One request of `key` under its `rpm`; Err(wait) when it has none left.
    pub fn request(&self, key: &str, rpm: u32) -> Result<(), Duration> {
        let Some(quota) = per_minute(rpm) else { return Ok(()) };
        let limiter = lock(&self.requests).entry((key.to_string(), rpm)).or_insert_with(|| Arc::new(DefaultDirectRateLimiter::direct(quota))).clone();
        limiter.check().map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }

    /// Takes a prompt's `tokens` under `tpm`; Err(wait) while the bucket cannot hold them (a
    /// prompt larger than the whole minute needs a full bucket).
    pub fn take_tokens(&self, key: &str, tpm: u32, tokens: u64) -> Result<(), Duration> {
        if tpm == 0 {
            return Ok(());
        }
        let mut buckets = lock(&self.tokens);
        let cap = f64::from(tpm);
        let b = buckets.entry(key.to_string()).or_insert(TokenBucket { level: cap, per_minute: tpm, at: std::time::Instant::now() });
        *b = b.refilled(tpm);
        let need = (tokens as f64).min(cap);
        if b.level < need {
            return Err(Duration::from_secs_f64((need - b.level) * 60.0 / cap));
        }
        b.level -= tokens as f64;
        Ok(())
    }

    /// Charges `tokens` more (the real usage beyond what admission took; fewer gives some back)
    /// to the key's bucket, overdrawing it if need be.
    pub fn charge_tokens(&self, key: &str, tokens: i64) {
        if let Some(b) = lock(&self.tokens).get_mut(key) {
            *b = b.refilled(b.per_minute);
            b.level -= tokens as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_minute_is_usable_at_once_and_long_answers_overdraw_its_tokens() {
        let l = KeyLimits::default();
        assert!((0..5).all(|_| l.request("k", 5).is_ok()));
        assert!(l.request("k", 5).is_err());
        assert!(l.request("other", 5).is_ok(), "keys are counted apart");
        assert!(l.take_tokens("k", 1000, 400).is_ok());
        l.charge_tokens("k", 700);
        let wait = l.take_tokens("k", 1000, 10).unwrap_err();
        assert!(wait > Duration::from_secs(6), "100 tokens short at 1000 a minute: {wait:?}");
        assert!(l.take_tokens("big", 1000, 5000).is_ok(), "a full bucket takes any prompt");
    }
}
