//! Prometheus metrics: the names fixed by the contract, their buckets and help, recorded once at
//! the end of each request. Labels stay within bounded sets (configured backends and models).

use metrics::{counter, describe_counter, describe_gauge, describe_histogram, gauge, histogram, Counter, Gauge, Histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::hash::Hash;
use std::sync::{LazyLock, OnceLock, RwLock};
use std::time::Duration;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Sub-millisecond resolution for Hermes's own time.
const OVERHEAD_BUCKETS: &[f64] = &[0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1];
/// LLM answers take from milliseconds to minutes.
const LATENCY_BUCKETS: &[f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];

/// Install the global recorder (once per process) and describe every metric.
pub fn install() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Full("hermes_overhead_seconds".into()), OVERHEAD_BUCKETS)
            .and_then(|b| b.set_buckets(LATENCY_BUCKETS));
        let handle = match builder.and_then(|b| b.install_recorder()) {
            Ok(h) => h,
            // Another recorder is installed (only in unit tests): render from a private one.
            Err(_) => PrometheusBuilder::new().build_recorder().handle(),
        };
        describe();
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("metrics-upkeep".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(5));
                upkeep.run_upkeep();
            })
            .ok();
        handle
    })
}

pub fn render() -> String {
    install().render()
}

fn describe() {
    describe_counter!("hermes_requests_total", "API requests answered, by backend, model, job type and HTTP status.");
    describe_histogram!("hermes_request_duration_seconds", Unit::Seconds, "Whole request time as the client saw it.");
    describe_histogram!("hermes_time_to_first_token_seconds", Unit::Seconds, "Time from request to the first streamed byte sent to the client.");
    describe_histogram!("hermes_overhead_seconds", Unit::Seconds, "Hermes's own time per request: total minus time waiting on backends.");
    describe_counter!("hermes_failovers_total", "Requests sent on to another backend, by from, to and reason.");
    describe_counter!("hermes_tokens_total", "Tokens by backend, model and direction (input, output), from upstream usage.");
    describe_gauge!("hermes_key_spend_cents_total", "Running total of estimated spend in US cents by virtual key (its name) and team (only grows).");
    describe_gauge!("hermes_cost_cents_total", "Running total of estimated spend in US cents, by backend and model (only grows; use rate/increase).");
    describe_gauge!("hermes_backend_healthy", "1 when a backend is taking traffic, 0 when it is marked unhealthy.");
    describe_gauge!("hermes_backend_in_flight", "Requests currently at a backend.");
    describe_counter!("hermes_rate_limited_total", "Requests refused with 429 by Hermes's own limits.");
    describe_counter!("hermes_budget_rejections_total", "Requests refused because their estimated cost exceeded the budget.");
    describe_gauge!("hermes_in_flight_requests", "Requests Hermes is handling now.");
    describe_gauge!("hermes_backend_score", "The router's current view of a backend, 0..1, by kind: quality, speed, reliability.");
    describe_counter!("hermes_shadow_requests_total", "Shadow requests sent to a candidate backend, by backend and outcome.");
    describe_gauge!(
        "hermes_learned_score",
        "What the learner believes of a backend for one job type, 0..1, by kind: quality, speed, reliability (priors moved by results and ratings)."
    );
    describe_gauge!("hermes_analytics_queue_depth", "Analytics records waiting for the DuckDB writer.");
    describe_counter!(
        "hermes_analytics_dropped_total",
        "Analytics records lost, by reason: queue_full (the request was not slowed), write_error, writer_stopped."
    );
    describe_counter!("hermes_analytics_rows_written_total", "Rows the DuckDB writer has committed (jobs, attempts, selections).");
    describe_histogram!("hermes_analytics_flush_seconds", Unit::Seconds, "Time the DuckDB writer took per batch.");
    counter!("hermes_analytics_dropped_total", "reason" => "queue_full").absolute(0);
    counter!("hermes_analytics_rows_written_total").absolute(0);
    counter!("hermes_rate_limited_total").absolute(0);
    counter!("hermes_budget_rejections_total").absolute(0);
}

/// What one finished API request contributes to the metrics.
pub struct RequestRecord<'a> {
    /// The door's path below /v1 (`/chat/completions`, `/responses`, `/messages`, ...).
    pub endpoint: &'static str,
    pub backend: &'a str,
    pub model: &'a str,
    pub job_type: &'static str,
    pub status: u16,
    pub total: Duration,
    pub overhead: Duration,
    pub ttft: Option<Duration>,
    pub tokens: Option<crate::backends::sse::Usage>,
    pub cost_cents: Option<f64>,
}

/// The label values one request's metrics carry. Owned in the table, borrowed for the lookup,
/// hashed alike (`Box<str>` hashes as `str`), so a known combination costs no allocation.
#[derive(Hash, PartialEq, Eq)]
struct LabelsOwned {
    endpoint: &'static str,
    backend: Box<str>,
    model: Box<str>,
    job_type: &'static str,
    status: u16,
}

#[derive(Hash)]
struct Labels<'a> {
    endpoint: &'static str,
    backend: &'a str,
    model: &'a str,
    job_type: &'static str,
    status: u16,
}

impl hashbrown::Equivalent<LabelsOwned> for Labels<'_> {
    fn equivalent(&self, k: &LabelsOwned) -> bool {
        (self.endpoint, self.backend, self.model, self.job_type, self.status) == (k.endpoint, &*k.backend, &*k.model, k.job_type, k.status)
    }
}

/// Registered handles for one label combination: a request bumps atomics, and the registry's
/// label building and hashing happen once per combination instead of once per request. Series a
/// request may not have (streams, usage, prices) are registered when first seen, as before, under
/// the request's own labels (the same as the key these handles are found by).
struct RequestMetrics {
    requests: Counter,
    duration: Histogram,
    ttft: OnceLock<Histogram>,
    tokens: OnceLock<(Counter, Counter, Counter)>,
    cost_cents: OnceLock<Gauge>,
}

impl RequestMetrics {
    fn register(l: &Labels<'_>) -> RequestMetrics {
        RequestMetrics {
            requests: counter!("hermes_requests_total", "endpoint" => l.endpoint, "backend" => l.backend.to_string(), "model" => l.model.to_string(),
                               "job_type" => l.job_type, "status" => l.status.to_string()),
            duration: histogram!("hermes_request_duration_seconds", "backend" => l.backend.to_string()),
            ttft: OnceLock::new(),
            tokens: OnceLock::new(),
            cost_cents: OnceLock::new(),
        }
    }

    fn record(&self, r: &RequestRecord<'_>) {
        let (backend, model) = (r.backend, r.model);
        self.requests.increment(1);
        self.duration.record(r.total.as_secs_f64());
        OVERHEAD.record(r.overhead.as_secs_f64());
        if let Some(t) = r.ttft {
            self.ttft.get_or_init(|| histogram!("hermes_time_to_first_token_seconds", "backend" => backend.to_string())).record(t.as_secs_f64());
        }
        if let Some(u) = r.tokens {
            // `cached_input` is the part of `input` the provider read from its prompt cache.
            let (i, o, cached) = self.tokens.get_or_init(|| {
                let series = |direction: &'static str| counter!("hermes_tokens_total", "backend" => backend.to_string(), "model" => model.to_string(), "direction" => direction);
                (series("input"), series("output"), series("cached_input"))
            });
            i.increment(u.prompt_tokens);
            o.increment(u.completion_tokens);
            cached.increment(u.cached_tokens);
        }
        if let Some(c) = r.cost_cents {
            // Cents are fractional and `metrics` counters count integers: a gauge that only grows
            // carries the running total; rate() and increase() read it like a counter.
            self.cost_cents.get_or_init(|| gauge!("hermes_cost_cents_total", "backend" => backend.to_string(), "model" => model.to_string())).increment(c);
        }
    }
}

/// Label sets are bounded (configured backends and known models), so the table stays small.
static REQUEST_METRICS: LazyLock<RwLock<hashbrown::HashMap<LabelsOwned, RequestMetrics>>> = LazyLock::new(Default::default);
static OVERHEAD: LazyLock<Histogram> = LazyLock::new(|| histogram!("hermes_overhead_seconds"));

pub fn record_request(r: &RequestRecord<'_>) {
    let labels = Labels { endpoint: r.endpoint, backend: r.backend, model: r.model, job_type: r.job_type, status: r.status };
    with_handles(
        &REQUEST_METRICS,
        &labels,
        || LabelsOwned { endpoint: r.endpoint, backend: r.backend.into(), model: r.model.into(), job_type: r.job_type, status: r.status },
        || RequestMetrics::register(&labels),
        |m| m.record(r),
    );
}

/// Use the handles registered for `key`, registering them the first time it is seen.
fn with_handles<K: Hash + Eq, Q: Hash + hashbrown::Equivalent<K> + ?Sized, V>(
    table: &RwLock<hashbrown::HashMap<K, V>>,
    key: &Q,
    owned: impl FnOnce() -> K,
    register: impl FnOnce() -> V,
    apply: impl FnOnce(&V),
) {
    if let Some(v) = table.read().unwrap_or_else(|e| e.into_inner()).get(key) {
        return apply(v);
    }
    let mut table = table.write().unwrap_or_else(|e| e.into_inner());
    apply(table.entry(owned()).or_insert_with(register));
}

pub fn record_failover(from: &str, to: &str, reason: &'static str) {
    counter!("hermes_failovers_total", "from" => from.to_string(), "to" => to.to_string(), "reason" => reason).increment(1);
}

pub fn set_backend_healthy(backend: &str, healthy: bool) {
    gauge!("hermes_backend_healthy", "backend" => backend.to_string()).set(if healthy { 1.0 } else { 0.0 });
}

/// What the router believes of a backend now (0..1 each).
pub fn set_backend_scores(backend: &str, quality: f64, speed: f64, reliability: f64) {
    for (kind, v) in [("quality", quality), ("speed", speed), ("reliability", reliability)] {
        gauge!("hermes_backend_score", "backend" => backend.to_string(), "kind" => kind).set(v);
    }
}

/// What the learner believes of a backend for one job type (0..1 each).
pub fn set_learned_scores(backend: &str, job_type: &'static str, quality: f64, speed: f64, reliability: f64) {
    for (kind, v) in [("quality", quality), ("speed", speed), ("reliability", reliability)] {
        gauge!("hermes_learned_score", "backend" => backend.to_string(), "job_type" => job_type, "kind" => kind).set(v);
    }
}

pub fn set_analytics_queue(depth: usize) {
    gauge!("hermes_analytics_queue_depth").set(depth as f64);
}

static BACKEND_IN_FLIGHT: LazyLock<RwLock<hashbrown::HashMap<Box<str>, Gauge>>> = LazyLock::new(Default::default);
static IN_FLIGHT: LazyLock<Gauge> = LazyLock::new(|| gauge!("hermes_in_flight_requests"));

pub fn backend_in_flight(backend: &str, delta: f64) {
    with_handles(
        &BACKEND_IN_FLIGHT,
        backend,
        || backend.into(),
        || gauge!("hermes_backend_in_flight", "backend" => backend.to_string()),
        |g| g.increment(delta),
    );
}

pub fn in_flight(delta: f64) {
    IN_FLIGHT.increment(delta);
}
