//! Request limits with governor: BACKEND_<NAME>_RATE_LIMIT per backend (a backend over its limit is
//! skipped like a busy one) and HERMES_CLIENT_RATE_LIMIT per client key (429 with retry-after and
//! OpenAI's `x-ratelimit-*` headers).

use crate::state::config::Config;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

type ClientLimiter = DefaultKeyedRateLimiter<String, StateInformationMiddleware>;

pub struct Limits {
    backends: Vec<Option<Arc<DefaultDirectRateLimiter>>>,
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
        Limits { backends, clients, checks: std::sync::atomic::AtomicU64::new(0) }
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
