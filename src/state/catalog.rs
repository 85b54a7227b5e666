//! Which models each backend serves: its configured list merged with what the backend itself
//! reports at each health check. Swapped atomically so routing reads it without locks.

use arc_swap::ArcSwap;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};

pub struct Catalog {
    configured: Vec<Vec<String>>,
    lists: Vec<ArcSwap<Vec<String>>>,
    /// Every model served anywhere, for the per-request label check (lists may hold hundreds).
    known: ArcSwap<HashSet<String>>,
    /// Serialises rebuilding `known`, as checks report concurrently.
    rebuilding: Mutex<()>,
}

impl Catalog {
    pub fn new(configured: Vec<Vec<String>>) -> Catalog {
        let lists = configured.iter().map(|c| ArcSwap::from_pointee(c.clone())).collect();
        let known = ArcSwap::from_pointee(configured.iter().flatten().cloned().collect());
        Catalog { configured, lists, known, rebuilding: Mutex::new(()) }
    }

    /// After a reload: unchanged backends keep the models their checks discovered.
    pub fn keep_from(&mut self, old: &Catalog, same: &[Option<usize>]) {
        for (i, j) in same.iter().enumerate() {
            if let (Some(j), Some(list)) = (j, self.lists.get(i)) {
                if let Some(l) = old.lists.get(*j) {
                    list.store(l.load_full());
                }
            }
        }
        self.known.store(Arc::new(self.lists.iter().flat_map(|l| l.load().iter().cloned().collect::<Vec<_>>()).collect()));
    }

    /// Backend `i`'s models; configured ones first, so `auto` keeps asking for the configured default.
    pub fn models(&self, i: usize) -> Arc<Vec<String>> {
        self.lists.get(i).map(|l| l.load_full()).unwrap_or_default()
    }

    pub fn all(&self) -> Vec<Arc<Vec<String>>> {
        (0..self.lists.len()).map(|i| self.models(i)).collect()
    }

    pub fn discovered(&self, i: usize, reported: &[String]) {
        let (Some(configured), Some(list)) = (self.configured.get(i), self.lists.get(i)) else { return };
        let mut merged = configured.clone();
        merged.extend(reported.iter().filter(|m| !configured.contains(m)).cloned());
        if **list.load() != merged {
            let _guard = self.rebuilding.lock().unwrap_or_else(|p| p.into_inner());
            list.store(Arc::new(merged));
            self.known.store(Arc::new(self.lists.iter().flat_map(|l| l.load().iter().cloned().collect::<Vec<_>>()).collect()));
        }
    }

    /// Served somewhere: fit to be a metric label.
    pub fn is_known(&self, model: &str) -> bool {
        self.known.load().contains(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovered_models_join_the_configured_ones() {
        let c = Catalog::new(vec![vec!["a".into()], vec![]]);
        c.discovered(0, &["b".into(), "a".into()]);
        c.discovered(1, &["z".into()]);
        assert_eq!(*c.models(0), vec!["a".to_string(), "b".to_string()]);
        assert_eq!(*c.models(1), vec!["z".to_string()]);
        assert!(c.is_known("z") && !c.is_known("q"));
    }
}
