//! What is kept of recent requests, by request id, for a rating or a correction that comes
//! later: a bounded cache whose table is sized in full at start-up and keyed by a hash of the id.
//!
//! Keyed by the id as a String, each insert allocated a copy of it, and each growth of a shard's
//! table rehashed every id in it on whichever request thread inserted: stalls of 0.4–2 ms, most
//! of the long busy periods of the one-connection tail's request threads (perf record of the
//! request threads with their context switches). Sized up front, the table does not grow; a
//! 64-bit key rehashes in nanoseconds if it ever must. The hasher's seed is random per process,
//! so a client cannot choose an id that lands on another's.

use quick_cache::sync::Cache;
use quick_cache::{UnitWeighter, Weighter};
use std::hash::BuildHasher;

pub struct Recent<V: Clone, W = UnitWeighter> {
    cache: Cache<u64, V, W>,
    ids: hashbrown::DefaultHashBuilder,
}

impl<V: Clone> Recent<V> {
    /// At most `items` requests.
    pub fn new(items: usize) -> Recent<V> {
        Recent::with_weighter(items, items as u64, UnitWeighter)
    }
}

impl<V: Clone, W: Weighter<u64, V> + Clone> Recent<V, W> {
    /// Up to `weight` as `weighter` counts it, with room reserved for `items` requests.
    pub fn with_weighter(items: usize, weight: u64, weighter: W) -> Recent<V, W> {
        let cache = Cache::with_weighter(items, weight, weighter);
        cache.reserve(items);
        Recent { cache, ids: hashbrown::DefaultHashBuilder::default() }
    }

    fn key(&self, request_id: &str) -> u64 {
        self.ids.hash_one(request_id)
    }

    pub fn insert(&self, request_id: &str, value: V) {
        self.cache.insert(self.key(request_id), value);
    }

    pub fn get(&self, request_id: &str) -> Option<V> {
        self.cache.get(&self.key(request_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_was_kept_and_forgets_past_its_bound() {
        let recent = Recent::new(1_000);
        for i in 0..5_000 {
            recent.insert(&format!("req_{i}"), i);
        }
        assert_eq!(recent.get("req_4999"), Some(4999));
        assert_eq!(recent.get("never"), None);
        let kept = (0..5_000).filter(|i| recent.get(&format!("req_{i}")).is_some()).count();
        assert!((500..=1_100).contains(&kept), "about 1,000 kept, not {kept}");
    }
}
