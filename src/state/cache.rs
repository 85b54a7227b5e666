//! Answers kept for identical deterministic requests (non-streamed chat with `temperature: 0`),
//! when policies/routing.toml turns the cache on. A hit is marked `x-hermes-cache: hit`.

use crate::doors::openai::{ApiRequest, Endpoint};
use crate::state::config::CachePolicy;
use bytes::Bytes;
use moka::future::Cache;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct CachedAnswer {
    pub backend: usize,
    pub model: String,
    pub content_type: String,
    pub body: Bytes,
}

pub struct AnswerCache {
    answers: Option<Cache<u64, Arc<CachedAnswer>>>,
    policy: CachePolicy,
}

impl AnswerCache {
    pub fn new(policy: &CachePolicy) -> AnswerCache {
        let answers = policy.enabled.then(|| Cache::builder().max_capacity(policy.max_entries).time_to_live(Duration::from_secs(policy.ttl_seconds)).build());
        AnswerCache { answers, policy: policy.clone() }
    }

    /// After a reload with the same cache policy and the same backends in the same places,
    /// the answers kept stay (they name backends by place).
    pub fn keep_from(&mut self, old: &AnswerCache, backends_unchanged: bool) {
        if backends_unchanged && self.policy == old.policy {
            self.answers = old.answers.clone();
        }
    }

    /// The key for a request whose answer may be reused: same bytes, same routing hints.
    pub fn key(&self, request: &ApiRequest, raw: &Bytes, hints: &[Option<&str>]) -> Option<u64> {
        self.answers.as_ref()?;
        let deterministic = request.endpoint == Endpoint::ChatCompletions
            && !request.stream
            && request.body.get("temperature").and_then(serde_json::Value::as_f64) == Some(0.0);
        if !deterministic {
            return None;
        }
        let mut h = std::collections::hash_map::DefaultHasher::new();
        raw.hash(&mut h);
        hints.hash(&mut h);
        Some(h.finish())
    }

    pub async fn get(&self, key: u64) -> Option<Arc<CachedAnswer>> {
        self.answers.as_ref()?.get(&key).await
    }

    pub async fn put(&self, key: u64, answer: CachedAnswer) {
        if let Some(c) = &self.answers {
            c.insert(key, Arc::new(answer)).await;
        }
    }
}
