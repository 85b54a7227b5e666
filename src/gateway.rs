//! The running gateway's shared state: configuration, backends, health, and the in-flight count
//! that shutdown waits on.

use crate::backends::{self, Registry};
use crate::config::{BackendConfig, Config};
use crate::health::HealthBoard;
use crate::route::PlanInput;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Gateway {
    pub config: Config,
    pub registry: Registry,
    pub health: HealthBoard,
    /// Configured model names: the only model label values metrics may carry.
    known_models: HashSet<String>,
    in_flight: AtomicUsize,
}

impl Gateway {
    pub fn new(config: Config) -> Arc<Gateway> {
        let registry = Registry::build(&config.backends, &backends::http_client());
        let cooldown = config.health.auto_recovery.then_some(config.health.interval);
        let health = HealthBoard::new(config.backends.len(), config.health.unhealthy_threshold, cooldown);
        for b in &config.backends {
            crate::telemetry::set_backend_healthy(&b.name, true);
        }
        let known_models = config.backends.iter().flat_map(|b| b.models.iter().cloned()).collect();
        Arc::new(Gateway { config, registry, health, known_models, in_flight: AtomicUsize::new(0) })
    }

    pub fn backend_configs(&self) -> Vec<&BackendConfig> {
        self.config.backends.iter().collect()
    }

    pub fn plan_input<'a>(&'a self, backends: &'a [&'a BackendConfig], pinned: Option<&'a str>) -> PlanInput<'a> {
        PlanInput { backends, pinned, primary: self.config.primary.as_deref(), fallback: self.config.fallback.as_deref() }
    }

    /// A model name fit for a metric label: configured ones as they are, anything else `other`.
    pub fn model_label<'a>(&'a self, model: Option<&'a str>) -> &'a str {
        match model {
            None => "none",
            Some(m) if self.known_models.contains(m) => m,
            Some(_) => "other",
        }
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Acquire)
    }

    /// Counts a request as in flight until the guard drops.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        crate::telemetry::in_flight(1.0);
        InFlight(self.clone())
    }

    pub fn record_outcome(&self, backend: usize, ok: bool) {
        let before = self.health.available(backend);
        if ok {
            self.health.record_success(backend);
        } else {
            self.health.record_failure(backend);
        }
        let after = self.health.available(backend);
        if before != after {
            if let Some(b) = self.config.backends.get(backend) {
                crate::telemetry::set_backend_healthy(&b.name, after);
                log::warn!("backend {} is now {}", b.name, self.health.status(backend).as_str());
            }
        }
    }
}

pub struct InFlight(Arc<Gateway>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
        crate::telemetry::in_flight(-1.0);
    }
}
