//! Steering: what a migration changes on the running gateway, above the configuration. Traffic
//! shares, drained backends, the primary and a shadow target are set through `/admin/migration`
//! (by `hermes migrate apply`) and cleared by `hermes migrate rollback`, which returns routing to
//! exactly what `.env` and `policies/` say. It outlives reloads; a restart starts clean.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Steering {
    /// Replace HERMES_TRAFFIC_SHARES for these backends (0..1).
    #[serde(default)]
    pub shares: HashMap<String, f64>,
    /// Backends that take no new requests.
    #[serde(default)]
    pub drained: Vec<String>,
    /// Replaces HERMES_PRIMARY_BACKEND.
    #[serde(default)]
    pub primary: Option<String>,
    /// Shadow this share of requests to this backend (replaces policies' `[shadow]`).
    #[serde(default)]
    pub shadow: Option<ShadowTarget>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShadowTarget {
    pub backend: String,
    pub share: f64,
}

impl Steering {
    pub fn is_empty(&self) -> bool {
        *self == Steering::default()
    }

    /// Every name must be an enabled backend and every share within 0..1.
    pub fn check(&self, backends: &[&str]) -> Result<(), String> {
        let known = |name: &str| if backends.contains(&name) { Ok(()) } else { Err(format!("'{name}' is not an enabled backend")) };
        for (name, share) in &self.shares {
            known(name)?;
            if !(0.0..=1.0).contains(share) {
                return Err(format!("share {share} for '{name}' is not within 0..1"));
            }
        }
        self.drained.iter().try_for_each(|n| known(n))?;
        self.primary.as_deref().map_or(Ok(()), known)?;
        if let Some(s) = &self.shadow {
            known(&s.backend)?;
            if !(0.0..=1.0).contains(&s.share) {
                return Err(format!("shadow share {} is not within 0..1", s.share));
            }
        }
        if self.primary.as_ref().is_some_and(|p| self.drained.contains(p)) {
            return Err("the primary cannot also be drained".into());
        }
        Ok(())
    }
}

/// How shadowed answers compared with the ones clients got, per shadow backend.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ShadowTally {
    pub requests: u64,
    pub errors: u64,
    pub similarity_sum: f64,
    pub seconds_sum: f64,
    pub primary_seconds_sum: f64,
}

/// What one backend did since the steering last changed: a migration's check judges the stage
/// it just ran, not the backend's whole history.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StageTally {
    pub jobs: u64,
    pub failures: u64,
    /// Latencies of answered attempts, milliseconds (the first STAGE_SAMPLES of the stage).
    pub latencies_ms: Vec<f64>,
    pub ratings: u64,
    pub rating_sum: f64,
}

/// Latencies kept per backend and stage, enough for a median.
const STAGE_SAMPLES: usize = 2048;

#[derive(Default)]
pub struct Helm {
    steering: RwLock<Steering>,
    tallies: Mutex<HashMap<String, ShadowTally>>,
    stage: Mutex<HashMap<String, StageTally>>,
}

impl Helm {
    pub fn get(&self) -> Steering {
        self.steering.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Read without cloning (the request path).
    pub fn with<T>(&self, f: impl FnOnce(&Steering) -> T) -> T {
        f(&self.steering.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Whether a migration has drained this backend: it takes nothing new.
    pub fn drains(&self, backend: &str) -> bool {
        self.with(|s| s.drained.iter().any(|d| d == backend))
    }

    /// Replace the steering; a new shadow target starts a fresh tally.
    pub fn set(&self, steering: Steering) {
        let mut current = self.steering.write().unwrap_or_else(|p| p.into_inner());
        if current.shadow != steering.shadow {
            self.tallies.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        self.stage.lock().unwrap_or_else(|p| p.into_inner()).clear();
        *current = steering;
    }

    /// One attempt's outcome (None: says nothing of the backend, such as a 4xx or a client gone).
    pub fn attempted(&self, backend: &str, success: Option<bool>, latency_ms: f64) {
        let Some(ok) = success else { return };
        let mut stage = self.stage.lock().unwrap_or_else(|p| p.into_inner());
        let t = stage.entry(backend.to_string()).or_default();
        t.jobs += 1;
        if ok {
            if t.latencies_ms.len() < STAGE_SAMPLES {
                t.latencies_ms.push(latency_ms);
            }
        } else {
            t.failures += 1;
        }
    }

    pub fn rated(&self, backend: &str, rating: u8) {
        let mut stage = self.stage.lock().unwrap_or_else(|p| p.into_inner());
        let t = stage.entry(backend.to_string()).or_default();
        t.ratings += 1;
        t.rating_sum += f64::from(rating);
    }

    /// Each backend's tally since the steering last changed.
    pub fn stage(&self) -> HashMap<String, StageTally> {
        self.stage.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn tally(&self, backend: &str, ok: bool, similarity: f64, seconds: f64, primary_seconds: f64) {
        let mut t = self.tallies.lock().unwrap_or_else(|p| p.into_inner());
        let e = t.entry(backend.to_string()).or_default();
        e.requests += 1;
        if ok {
            e.similarity_sum += similarity;
            e.seconds_sum += seconds;
            e.primary_seconds_sum += primary_seconds;
        } else {
            e.errors += 1;
        }
    }

    pub fn tallies(&self) -> HashMap<String, ShadowTally> {
        self.tallies.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steering_names_only_enabled_backends_and_sane_shares() {
        let names = ["old", "new"];
        let ok = Steering { shares: HashMap::from([("new".into(), 0.5)]), drained: vec!["old".into()], primary: Some("new".into()), shadow: None };
        assert!(ok.check(&names).is_ok());
        let bad_share = Steering { shares: HashMap::from([("new".into(), 1.5)]), ..Steering::default() };
        assert!(bad_share.check(&names).unwrap_err().contains("0..1"));
        let unknown = Steering { drained: vec!["gone".into()], ..Steering::default() };
        assert!(unknown.check(&names).unwrap_err().contains("'gone'"));
        let both = Steering { drained: vec!["new".into()], primary: Some("new".into()), ..Steering::default() };
        assert!(both.check(&names).is_err());
        assert!(Steering::default().is_empty());
    }
}
