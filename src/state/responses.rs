//! Stored responses of the Responses API: what `GET /v1/responses/{id}` returns and what
//! `previous_response_id` continues. Kept in memory for HERMES_RESPONSES_RETENTION_HOURS and
//! written to the analytics file (table `responses`), from which a restart reads them back.
//! A response is visible only to the client key that made it.

use crate::state::analytics::{Analytics, Event};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use std::time::Duration;

/// One stored response.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: String,
    /// SHA-256 of the client's key (hex); of the empty string on an open gateway.
    pub owner: String,
    pub created_at: u64,
    pub response: Value,
    /// The chat messages up to and including this response's output.
    pub conversation: Vec<Value>,
}

/// The owner of what a client key stores: a digest, so the analytics file never holds the key.
pub fn owner(client_key: Option<&str>) -> String {
    let digest = Sha256::digest(client_key.unwrap_or("").as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// How many stored responses are held at most (the oldest go first).
const MOST: u64 = 100_000;

pub struct ResponseStore {
    held: moka::sync::Cache<String, Arc<Stored>>,
    analytics: Analytics,
    retention: Duration,
}

impl ResponseStore {
    pub fn new(retention: Duration, analytics: Analytics, earlier: Vec<Stored>) -> ResponseStore {
        let held = moka::sync::Cache::builder().max_capacity(MOST).time_to_live(retention.max(Duration::from_secs(1))).build();
        let store = ResponseStore { held, analytics, retention };
        store.analytics.offer(Event::ForgetResponsesBefore(store.cutoff()));
        for s in earlier.into_iter().filter(|s| s.created_at >= store.cutoff()) {
            store.held.insert(s.id.clone(), Arc::new(s));
        }
        store
    }

    /// Responses created before this (seconds since the epoch) are past retention.
    fn cutoff(&self) -> u64 {
        crate::backends::now_secs().saturating_sub(self.retention.as_secs())
    }

    /// The response `id` if `owner` made it: another key's response does not exist for it.
    pub fn get(&self, id: &str, owner: &str) -> Option<Arc<Stored>> {
        self.held.get(id).filter(|s| s.owner == owner && s.created_at >= self.cutoff())
    }

    pub fn put(&self, stored: Stored) {
        let stored = Arc::new(stored);
        self.held.insert(stored.id.clone(), stored.clone());
        self.analytics.offer(Event::Response(stored));
    }

    /// True when there was such a response of this owner.
    pub fn delete(&self, id: &str, owner: &str) -> bool {
        if self.get(id, owner).is_none() {
            return false;
        }
        self.held.invalidate(id);
        self.analytics.offer(Event::ResponseDeleted(id.to_string()));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_response_is_only_visible_to_its_key() {
        let store = ResponseStore::new(Duration::from_secs(60), Analytics::disabled(), Vec::new());
        let mine = owner(Some("sk-mine"));
        store.put(Stored { id: "resp_1".into(), owner: mine.clone(), created_at: crate::backends::now_secs(), response: json!({}), conversation: Vec::new() });
        assert!(store.get("resp_1", &mine).is_some());
        assert!(store.get("resp_1", &owner(Some("sk-other"))).is_none());
        assert!(!store.delete("resp_1", &owner(None)));
        assert!(store.delete("resp_1", &mine));
        assert!(store.get("resp_1", &mine).is_none());
        assert_eq!(mine.len(), 64);
        assert!(!mine.contains("mine"));
    }
}
