//! The running gateway's shared state: configuration, backends, health, and the in-flight count
//! that shutdown waits on. What outlives a reload (the learner, the analytics writer, the
//! in-flight count) lives in [`Shared`].

use crate::backends::Registry;
use crate::decide::classify::{Classification, Classifier, Weights};
use crate::decide::route::{self, Ask, Decision, Dice, Offer, Settings};
use crate::error::ApiError;
use crate::state::analytics::record::BackendRecord;
use crate::state::analytics::Analytics;
use crate::state::catalog::Catalog;
use crate::state::config::{Config, Sources};
use crate::state::health::{CheckResult, HealthBoard};
use crate::state::learn::implicit::{Conversations, Implicit};
use crate::state::learn::Band;
use crate::state::learn::{Learner, Priors};
use crate::state::limits::Limits;
use arc_swap::ArcSwap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

pub struct Gateway {
    pub config: Config,
    pub registry: Registry,
    pub health: HealthBoard,
    pub catalog: Catalog,
    pub classifier: Classifier,
    /// Complaints in a next turn as ratings; None when turned off.
    pub implicit: Option<Implicit>,
    pub limits: Limits,
    /// Every key this configuration holds, to be taken out of whatever upstreams send back.
    pub scrubber: Arc<crate::decide::scrub::Scrubber>,
    pub cache: crate::state::cache::AnswerCache,
    /// The connection pool, kept across reloads.
    upstream: Arc<crate::backends::upstream::Upstream>,
    /// The rendered `/v1/models` answer, briefly.
    pub model_list: moka::future::Cache<(), bytes::Bytes>,
    /// Requests at each backend now.
    backend_in_flight: Vec<AtomicUsize>,
    pub shared: Shared,
    /// Round-robin position.
    turns: AtomicU64,
}

/// What every generation of the gateway shares: shutdown sees requests of all of them, and what
/// was learned survives a reload.
#[derive(Clone)]
pub struct Shared {
    pub in_flight: Arc<AtomicUsize>,
    pub learner: Arc<Learner>,
    pub analytics: Analytics,
    /// What a migration in progress has changed above the configuration.
    pub helm: Arc<crate::ops::steering::Helm>,
    /// What the classifier read of recent requests, for corrections of their job type.
    pub readings: Arc<crate::decide::classify::Readings>,
    /// Who answered which conversation, for implicit feedback.
    pub conversations: Arc<Conversations>,
    /// Stored responses of the Responses API.
    pub responses: Arc<crate::state::responses::ResponseStore>,
    /// Virtual keys, teams and their spend.
    pub keys: Arc<crate::state::keys::KeyBook>,
    /// Each virtual key's requests and tokens per minute.
    pub key_limits: Arc<crate::state::limits::KeyLimits>,
    /// The state shared with other replicas through Redis (HERMES_REDIS_URL); None: per process.
    pub replicas: Option<Arc<crate::state::replicas::Replicas>>,
}

impl Shared {
    /// Open the analytics file and seed the learner from it.
    pub fn open(config: &Config) -> Result<Shared, String> {
        let (analytics, memory) = Analytics::open(&config.db_path, config.analytics_queue, config.analytics_memory_mb)?;
        let learner = Learner::seeded(config.random_seed, memory.seeds, memory.recent_choices);
        let responses = crate::state::responses::ResponseStore::new(config.responses_retention, analytics.clone(), memory.responses);
        let replicas = match &config.redis {
            Some(redis) => Some(crate::state::replicas::Replicas::connect(redis, crate::state::replicas::replica_name(&config.db_path))?),
            None => None,
        };
        let shared = Shared {
            replicas,
            keys: Arc::new(memory.keys),
            key_limits: Arc::default(),
            responses: Arc::new(responses),
            in_flight: Arc::new(AtomicUsize::new(0)),
            learner: Arc::new(learner),
            analytics,
            helm: Arc::default(),
            readings: Arc::default(),
            conversations: Arc::default(),
        };
        if let Some(r) = &shared.replicas {
            r.start(&shared);
        }
        Ok(shared)
    }

    /// Nothing remembered and nothing written (tools that only need the routing).
    pub fn ephemeral(config: &Config) -> Shared {
        Shared {
            in_flight: Arc::new(AtomicUsize::new(0)),
            learner: Arc::new(Learner::new(config.random_seed)),
            analytics: Analytics::disabled(),
            responses: Arc::new(crate::state::responses::ResponseStore::new(config.responses_retention, Analytics::disabled(), Vec::new())),
            keys: Arc::default(),
            key_limits: Arc::default(),
            replicas: None,
            helm: Arc::default(),
            readings: Arc::default(),
            conversations: Arc::default(),
        }
    }
}

impl Gateway {
    pub fn new(config: Config, shared: Shared) -> Result<Arc<Gateway>, String> {
        Gateway::succeeding(config, shared, None)
    }

    /// A new generation (a reload) after `previous`: backends still there under the same settings
    /// keep their health, discovered models, rate-limit state and connections.
    pub fn succeeding(config: Config, shared: Shared, previous: Option<&Gateway>) -> Result<Arc<Gateway>, String> {
        let upstream = match previous {
            Some(p) if p.config.max_answer_bytes == config.max_answer_bytes => p.upstream.clone(),
            _ => crate::backends::upstream::Upstream::new(config.max_answer_bytes),
        };
        let registry = Registry::build(&config.backends, &upstream);
        let cooldown = config.health.auto_recovery.then_some(config.health.interval);
        let mut health = HealthBoard::new(config.backends.len(), config.health.unhealthy_threshold, cooldown);
        let mut catalog = Catalog::new(config.backends.iter().map(|b| b.models.clone()).collect());
        let backend_in_flight = config.backends.iter().map(|_| AtomicUsize::new(0)).collect();
        let weights = config.policies.classifier.clone().map_or(Weights::Shipped, Weights::Fitted);
        let classifier = Classifier::new(&config.policies.vocabulary, weights).map_err(|e| format!("policies/classify.toml: {e}"))?;
        let implicit = match (&config.policies.implicit_feedback, config.implicit_feedback) {
            (Some(policy), true) => Some(Implicit::new(policy).map_err(|e| format!("policies/routing.toml implicit_feedback: {e}"))?),
            _ => None,
        };
        let mut limits = Limits::new(&config);
        let secrets = config.backends.iter().filter_map(|b| b.api_key.as_ref()).chain(&config.api_keys).chain(config.admin_key.as_ref());
        let redis_password = config.redis.as_ref().and_then(|r| r.password());
        let scrubber = Arc::new(crate::decide::scrub::Scrubber::new(secrets.map(|s| s.expose()).chain(redis_password)));
        let mut cache = crate::state::cache::AnswerCache::new(&config.policies.cache);
        if let Some(old) = previous {
            let same: Vec<Option<usize>> = config.backends.iter().map(|b| old.config.backends.iter().position(|o| o == b)).collect();
            health.keep_from(&old.health, &same);
            catalog.keep_from(&old.catalog, &same);
            limits.keep_from(&old.limits, &same);
            cache.keep_from(&old.cache, old.config.backends == config.backends);
        }
        Ok(Arc::new(Gateway {
            config,
            registry,
            health,
            catalog,
            classifier,
            implicit,
            limits,
            scrubber,
            upstream,
            cache,
            model_list: moka::future::Cache::builder().max_capacity(1).time_to_live(std::time::Duration::from_secs(1)).build(),
            backend_in_flight,
            shared,
            turns: AtomicU64::new(0),
        }))
    }

    pub fn learner(&self) -> &Learner {
        &self.shared.learner
    }

    pub fn analytics(&self) -> &Analytics {
        &self.shared.analytics
    }

    /// The `backends` table rows for this configuration.
    pub fn backend_records(&self) -> Vec<BackendRecord> {
        self.config
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let config = serde_json::json!({
                    "base_url": crate::state::config::redact_url(&b.base_url),
                    "models": b.models,
                    "timeout_seconds": b.timeout.as_secs_f64(),
                    "price_per_mtok": {"input": b.price.input_per_mtok, "output": b.price.output_per_mtok},
                    "context_length": b.context_length,
                });
                BackendRecord {
                    name: b.name.clone(),
                    kind: b.kind.as_str(),
                    is_primary: self.config.primary.as_deref() == Some(b.name.as_str()),
                    config: config.to_string(),
                    capabilities: serde_json::Value::from(b.capabilities.clone()).to_string(),
                    quality: b.quality_score,
                    speed: b.speed_score,
                    cost_score: if b.kind.is_paid() { 0.0 } else { 1.0 },
                    health_status: self.health.status(i).as_str(),
                }
            })
            .collect()
    }

    /// Where this request may run, in order, and why (see `route::choose`).
    /// Quality, speed and reliability are what the learner makes of the configured priors and
    /// the results so far for this job type and model.
    pub fn decide(&self, ask: &Ask<'_>) -> Result<Decision, ApiError> {
        let models = self.catalog.all();
        let learner = self.learner();
        let steering = self.shared.helm.get();
        let offers: Vec<Offer<'_>> = self
            .config
            .backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let model = if ask.model == "auto" { models[i].first().map_or("auto", String::as_str) } else { ask.model };
                let prior = Priors { quality: b.quality_score, speed: b.speed_score, reliability: self.health.reliability(i) };
                let learned =
                    learner.estimate_mixed(&ask.job.likelihood, ask.job.job_type, Band::of(ask.job.complexity), &b.name, self.model_label(Some(model)), prior);
                Offer {
                    config: b,
                    models: &models[i],
                    available: self.health.available(i),
                    draining: steering.drained.contains(&b.name),
                    reliability: learned.reliability,
                    quality: learned.quality,
                    quality_draw: learned.quality_draw,
                    speed: learned.speed,
                    typical_latency: learned.typical_latency,
                    in_flight: self.backend_in_flight(i),
                }
            })
            .collect();
        // A migration's shares and primary replace the configured ones while it runs.
        let shares = if steering.shares.is_empty() {
            std::borrow::Cow::Borrowed(&self.config.routing.traffic_shares)
        } else {
            let mut merged = self.config.routing.traffic_shares.clone();
            merged.extend(steering.shares.clone());
            std::borrow::Cow::Owned(merged)
        };
        let settings = Settings {
            routing: &self.config.routing,
            shares: &shares,
            primary: steering.primary.as_deref().or(self.config.primary.as_deref()),
            fallback: self.config.fallback.as_deref(),
            failover: self.config.failover.order,
        };
        let dice = Dice { roll: learner.roll(), turn: self.turns.fetch_add(1, Ordering::Relaxed) };
        route::choose(ask, &offers, &settings, |i, m| self.config.price(&self.config.backends[i], m), &dice)
    }

    /// The request's classification; what was read is kept under its id for a correction.
    pub fn classify(&self, request: &crate::doors::openai::ApiRequest, request_id: &str) -> Classification {
        let mut features = Vec::with_capacity(256);
        let c = self.classifier.classify_with(request, &mut features);
        self.shared.readings.keep(request_id, &features);
        c
    }

    /// A model name fit for a metric label: served ones as they are, anything else `other`.
    pub fn model_label<'a>(&'a self, model: Option<&'a str>) -> &'a str {
        match model {
            None => "none",
            Some(m) if self.catalog.is_known(m) => m,
            Some(_) => "other",
        }
    }

    pub fn backend_in_flight(&self, backend: usize) -> usize {
        self.backend_in_flight.get(backend).map(|n| n.load(Ordering::SeqCst)).unwrap_or(0)
    }

    /// Counts a request at a backend; the gauge follows.
    pub fn backend_started(&self, backend: usize, delta: isize) {
        if let (Some(n), Some(b)) = (self.backend_in_flight.get(backend), self.config.backends.get(backend)) {
            if delta > 0 {
                n.fetch_add(1, Ordering::SeqCst);
            } else {
                n.fetch_sub(1, Ordering::SeqCst);
            }
            crate::state::telemetry::backend_in_flight(&b.name, delta as f64);
        }
    }

    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// Counts a request as in flight until the guard drops.
    pub fn enter(self: &Arc<Self>) -> InFlight {
        self.shared.in_flight.fetch_add(1, Ordering::AcqRel);
        crate::state::telemetry::in_flight(1.0);
        InFlight(self.clone())
    }

    pub fn record_outcome(&self, backend: usize, ok: bool) {
        self.health_changes(backend, |h| if ok { h.record_success(backend) } else { h.record_failure(backend) });
    }

    pub fn record_check(&self, backend: usize, outcome: Result<usize, String>) {
        self.health_changes(backend, |h| h.record_check(backend, outcome));
    }

    pub fn last_check(&self, backend: usize) -> Option<CheckResult> {
        self.health.last_check(backend)
    }

    /// Apply a health mark; log a change between in and out of rotation (the gauge is read at
    /// scrape time, since rests and cooldowns also end with time alone).
    fn health_changes(&self, backend: usize, mark: impl FnOnce(&HealthBoard)) {
        let before = self.health.available(backend);
        mark(&self.health);
        let after = self.health.available(backend);
        if before != after {
            if let Some(b) = self.config.backends.get(backend) {
                log::warn!("backend {} is now {}", b.name, self.health.status(backend).as_str());
            }
        }
    }
}

pub struct InFlight(Arc<Gateway>);

impl InFlight {
    /// The gateway generation this request runs on (kept even if a reload swaps it).
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.0
    }
}

/// The gateway now serving, swapped whole by `reload` (POST /admin/reload, SIGHUP) without
/// disturbing requests already running on the previous one.
pub struct Live {
    current: ArcSwap<Gateway>,
    sources: Sources,
    shared: Shared,
}

impl Live {
    pub fn start(config: Config, sources: Sources) -> Result<Arc<Live>, String> {
        let shared = Shared::open(&config)?;
        let gateway = Gateway::new(config, shared.clone())?;
        shared.analytics.offer(crate::state::analytics::Event::Backends(gateway.backend_records()));
        Ok(Arc::new(Live { current: ArcSwap::new(gateway), sources, shared }))
    }

    pub fn current(&self) -> Arc<Gateway> {
        self.current.load_full()
    }

    pub fn in_flight(&self) -> usize {
        self.shared.in_flight.load(Ordering::Acquire)
    }

    /// Everything recorded so far into the file (shutdown); false if `within` ran out.
    pub fn flush_analytics(&self, within: std::time::Duration) -> bool {
        self.shared.analytics.flush(within)
    }

    /// Re-read `.env` and `policies/`; a bad configuration is refused and the old one keeps serving.
    pub fn reload(&self) -> Result<Arc<Gateway>, String> {
        let config = Config::load(&self.sources).map_err(|e| format!("configuration error: {e}"))?;
        let old = self.current();
        if config.listen != old.config.listen {
            log::warn!("HERMES_LISTEN changed to {}: a restart is needed to listen there", config.listen);
        }
        if config.db_path != old.config.db_path {
            log::warn!("HERMES_DB_PATH changed to {}: a restart is needed to write there", config.db_path.display());
        }
        let gateway = Gateway::succeeding(config, self.shared.clone(), Some(&old))?;
        self.shared.analytics.offer(crate::state::analytics::Event::Backends(gateway.backend_records()));
        self.current.store(gateway.clone());
        log::info!("configuration reloaded: {} backend(s)", gateway.config.backends.len());
        Ok(gateway)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.shared.in_flight.fetch_sub(1, Ordering::AcqRel);
        crate::state::telemetry::in_flight(-1.0);
    }
}
