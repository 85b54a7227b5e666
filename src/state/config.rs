//! Configuration: the environment (spec's `.env` format) and `policies/` turned into one
//! validated [`Config`]. Raw strings are read first, then checked; every mistake names its variable.

mod backend;
mod env;
mod policies;
mod routing;

pub use backend::{BackendConfig, BackendKind, Secret, SimSettings};
pub use env::EnvSource;
pub use policies::{CachePolicy, ModelPrice, Policies, ShadowPolicy, CLASSIFIER_FILE};
pub use routing::{Balancing, Criteria, RoutingConfig};

use std::path::{Path, PathBuf};
use std::time::Duration;

/// A configuration mistake: the variable (or file) at fault and what is wrong with it.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(var: impl Into<String>, message: impl Into<String>) -> Self {
        Self { var: var.into(), message: message.into() }
    }
}

#[derive(Debug, Clone)]
pub struct FailoverPolicy {
    pub enabled: bool,
    /// Total tries for one request, the first included.
    pub max_attempts: u32,
    /// Ceiling on the pause between two tries.
    pub max_delay: Duration,
    pub order: FailoverOrder,
}

/// HERMES_FAILOVER_STRATEGY: where a failed request goes next. The spec's value lists both, in
/// the order they apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverOrder {
    /// `next_best`: the other ranked candidates, best first.
    pub next_best: bool,
    /// `any_available`: then any other healthy backend that serves the model, even one routing
    /// preferred not to use (it lacks the job's capability), in configuration order.
    pub any_available: bool,
}

impl FailoverOrder {
    pub const NEXT_BEST: FailoverOrder = FailoverOrder { next_best: true, any_available: false };

    fn from_env(env: &EnvSource) -> Result<FailoverOrder, ConfigError> {
        let var = "HERMES_FAILOVER_STRATEGY";
        let names = env.list(var);
        if names.is_empty() {
            return Ok(FailoverOrder::NEXT_BEST);
        }
        let mut order = FailoverOrder { next_best: false, any_available: false };
        for name in names {
            match name.as_str() {
                "next_best" => order.next_best = true,
                "any_available" => order.any_available = true,
                other => return Err(ConfigError::new(var, format!("'{other}' is not next_best or any_available"))),
            }
        }
        Ok(order)
    }

    pub fn describe(self) -> &'static str {
        match (self.next_best, self.any_available) {
            (true, true) => "next_best, then any_available",
            (true, false) => "next_best",
            (false, _) => "any_available",
        }
    }
}

#[derive(Debug, Clone)]
pub struct HealthPolicy {
    pub enabled: bool,
    pub interval: Duration,
    pub unhealthy_threshold: u32,
    pub auto_recovery: bool,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub db_path: PathBuf,
    /// Client keys; empty means the gateway is open.
    pub api_keys: Vec<Secret>,
    pub admin_key: Option<Secret>,
    /// Enabled backends, in the order HERMES_BACKENDS_ENABLED gives them.
    pub backends: Vec<BackendConfig>,
    pub primary: Option<String>,
    pub fallback: Option<String>,
    pub failover: FailoverPolicy,
    pub health: HealthPolicy,
    pub routing: RoutingConfig,
    pub max_body_bytes: usize,
    /// HERMES_MAX_ANSWER_BYTES: the most of an answer Hermes holds: a whole answer, or one line
    /// of a stream. Beyond it the attempt fails (an upstream cannot make Hermes hold unbounded memory).
    pub max_answer_bytes: usize,
    /// HERMES_SEND_TIMEOUT_SECONDS: how long a client may leave a write to it pending (a stream
    /// reader that stopped reading) before Hermes lets the request go.
    pub send_timeout: Duration,
    /// HERMES_RESPONSES_RETENTION_HOURS: how long stored responses of the Responses API are kept.
    pub responses_retention: Duration,
    /// `HERMES_*` / `BACKEND_*` variables that nothing reads (typos), with a guess at the intent.
    pub unknown_vars: Vec<String>,
    /// How long a client may take to send its request body.
    pub body_read_timeout: Duration,
    pub shutdown_grace: Duration,
    pub policies: Policies,
    /// HERMES_LOG_CONTENT: store prompts and answers in the analytics file.
    pub log_content: bool,
    /// HERMES_IMPLICIT_FEEDBACK: a complaint in the next turn counts as a rating (policies/routing.toml).
    pub implicit_feedback: bool,
    /// HERMES_RANDOM_SEED: repeatable routing draws (tests, simulations).
    pub random_seed: Option<u64>,
    /// HERMES_ANALYTICS_QUEUE: records that may wait for the writer before new ones are dropped.
    pub analytics_queue: usize,
    /// HERMES_ANALYTICS_MEMORY_MB: the most DuckDB may hold in memory (it spills to its file).
    pub analytics_memory_mb: u64,
    /// HERMES_TLS_CERT and HERMES_TLS_KEY: PEM files; HTTPS on HERMES_LISTEN when set.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// HERMES_REDIS_URL and its settings: what replicas share. None: all of it per process.
    pub redis: Option<RedisConfig>,
}

/// HERMES_REDIS_URL, HERMES_REDIS_TIMEOUT_MS, HERMES_REDIS_FAIL_MODE.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// May carry a password: kept as a secret, never logged.
    pub url: Secret,
    /// The longest any request waits on Redis.
    pub timeout: Duration,
    /// `closed`: requests with a virtual key are refused (503) while Redis cannot be reached;
    /// `open` (default): local counters go on and are reconciled when it is back.
    pub fail_closed: bool,
}

impl RedisConfig {
    /// The password in `redis://user:password@host`, to be scrubbed like any other secret.
    pub fn password(&self) -> Option<&str> {
        let url = self.url.expose();
        let rest = &url[url.find("://")? + 3..];
        let userinfo = &rest[..rest.find('@')?];
        Some(userinfo.split_once(':').map_or(userinfo, |(_, p)| p)).filter(|p| !p.is_empty())
    }

    fn from_env(env: &EnvSource) -> Result<Option<RedisConfig>, ConfigError> {
        let Some(url) = env.get("HERMES_REDIS_URL") else { return Ok(None) };
        if !url.starts_with("redis://") && !url.starts_with("rediss://") && !url.starts_with("unix://") {
            return Err(ConfigError::new("HERMES_REDIS_URL", "must be redis://host:port/db (or rediss://, unix://)"));
        }
        let timeout = Duration::from_millis(env.number_or("HERMES_REDIS_TIMEOUT_MS", 50u64)?.max(1));
        let fail_closed = match env.get("HERMES_REDIS_FAIL_MODE").unwrap_or("open") {
            "open" => false,
            "closed" => true,
            other => return Err(ConfigError::new("HERMES_REDIS_FAIL_MODE", format!("'{other}' is not open or closed"))),
        };
        Ok(Some(RedisConfig { url: Secret::new(url), timeout, fail_closed }))
    }
}

/// Where the configuration comes from.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `--env-file`; without it `.env` in the working directory, when present.
    pub env_file: Option<PathBuf>,
    /// `--policies`; without it `policies/` in the working directory, when present.
    pub policies_dir: Option<PathBuf>,
    /// `--demo`: add three simulated backends.
    pub demo: bool,
}

impl Config {
    pub fn load(sources: &Sources) -> Result<Config, ConfigError> {
        let env = EnvSource::load(sources.env_file.as_deref())?;
        let policies_dir = sources.policies_dir.clone().unwrap_or_else(|| PathBuf::from("policies"));
        let policies = Policies::load(&policies_dir, sources.policies_dir.is_some())?;
        Config::from_env(&env, policies, sources.demo)
    }

    pub fn from_env(env: &EnvSource, policies: Policies, demo: bool) -> Result<Config, ConfigError> {
        let mut names = env.list("HERMES_BACKENDS_ENABLED");
        let demo_env;
        let env = if demo {
            for demo_name in backend::DEMO_BACKENDS {
                if !names.iter().any(|n| n == demo_name) {
                    names.push(demo_name.to_string());
                }
            }
            demo_env = env.with_defaults(backend::DEMO_ENV);
            &demo_env
        } else {
            env
        };
        let mut backends = Vec::new();
        for name in names {
            let prefix = format!("BACKEND_{}_", name.to_ascii_uppercase());
            if !env.bool_or(&format!("{prefix}ENABLED"), true)? {
                continue;
            }
            if backends.iter().any(|b: &BackendConfig| b.name == name) {
                return Err(ConfigError::new("HERMES_BACKENDS_ENABLED", format!("backend '{name}' is listed twice")));
            }
            backends.push(BackendConfig::from_env(env, &name)?);
        }
        if backends.is_empty() {
            return Err(ConfigError::new("HERMES_BACKENDS_ENABLED", "no backend is enabled: list at least one (or run `hermes serve --demo`)"));
        }
        let known = |var: &str| -> Result<Option<String>, ConfigError> {
            match env.get(var) {
                Some(name) if !backends.iter().any(|b| b.name == name) => Err(ConfigError::new(var, format!("'{name}' is not an enabled backend"))),
                other => Ok(other.map(str::to_string)),
            }
        };
        let primary = known("HERMES_PRIMARY_BACKEND")?;
        let fallback = known("HERMES_FALLBACK_BACKEND")?;
        let failover = FailoverPolicy {
            enabled: env.bool_or("HERMES_FAILOVER_ENABLED", true)?,
            max_attempts: env.number_or("HERMES_MAX_FAILOVER_ATTEMPTS", 3u32)?.max(1),
            max_delay: env.seconds_or("HERMES_FAILOVER_DELAY_SECONDS", 10.0)?,
            order: FailoverOrder::from_env(env)?,
        };
        let health = HealthPolicy {
            enabled: env.bool_or("HERMES_HEALTH_CHECK_ENABLED", true)?,
            interval: env.seconds_or("HERMES_HEALTH_CHECK_INTERVAL", 30.0)?,
            unhealthy_threshold: env.number_or("HERMES_UNHEALTHY_THRESHOLD", 3u32)?.max(1),
            auto_recovery: env.bool_or("HERMES_AUTO_RECOVERY_ENABLED", true)?,
        };
        let routing = RoutingConfig::from_env(env)?;
        for (var, name) in routing.named_backends() {
            if !backends.iter().any(|b| b.name == name) {
                return Err(ConfigError::new(var, format!("'{name}' is not an enabled backend")));
            }
        }
        if let Some(name) = policies.shadow.as_ref().map(|s| s.backend.as_str()) {
            if !backends.iter().any(|b| b.name == name) {
                return Err(ConfigError::new("policies/routing.toml [shadow]", format!("'{name}' is not an enabled backend")));
            }
        }
        let tls = match (env.get("HERMES_TLS_CERT"), env.get("HERMES_TLS_KEY")) {
            (None, None) => None,
            (Some(cert), Some(key)) => {
                for (var, path) in [("HERMES_TLS_CERT", cert), ("HERMES_TLS_KEY", key)] {
                    std::fs::File::open(path).map_err(|e| ConfigError::new(var, format!("cannot read {path}: {e}")))?;
                }
                Some((PathBuf::from(cert), PathBuf::from(key)))
            }
            (Some(_), None) => return Err(ConfigError::new("HERMES_TLS_KEY", "HERMES_TLS_CERT is set: set the key file too")),
            (None, Some(_)) => return Err(ConfigError::new("HERMES_TLS_CERT", "HERMES_TLS_KEY is set: set the certificate file too")),
        };
        Ok(Config {
            tls,
            routing,
            listen: env.get("HERMES_LISTEN").unwrap_or("127.0.0.1:8080").to_string(),
            db_path: PathBuf::from(env.get("HERMES_DB_PATH").unwrap_or("./hermes.duckdb")),
            api_keys: env.list("HERMES_API_KEYS").into_iter().map(Secret::new).collect(),
            admin_key: env.get("HERMES_ADMIN_KEY").map(Secret::new),
            backends,
            primary,
            fallback,
            failover,
            health,
            max_body_bytes: env.number_or("HERMES_MAX_BODY_BYTES", 10 * 1024 * 1024usize)?,
            max_answer_bytes: env.number_or("HERMES_MAX_ANSWER_BYTES", 16 * 1024 * 1024usize)?.max(1024),
            send_timeout: env.seconds_or("HERMES_SEND_TIMEOUT_SECONDS", 30.0)?,
            responses_retention: env.seconds_or("HERMES_RESPONSES_RETENTION_HOURS", 720.0).map(|h| h.mul_f64(3600.0))?,
            unknown_vars: env.unknown(),
            shutdown_grace: env.seconds_or("HERMES_SHUTDOWN_GRACE_SECONDS", 10.0)?,
            body_read_timeout: env.seconds_or("HERMES_BODY_READ_TIMEOUT_SECONDS", 30.0)?,
            policies,
            log_content: env.bool_or("HERMES_LOG_CONTENT", false)?,
            implicit_feedback: env.bool_or("HERMES_IMPLICIT_FEEDBACK", true)?,
            random_seed: env.number("HERMES_RANDOM_SEED")?,
            analytics_queue: env.number_or("HERMES_ANALYTICS_QUEUE", 65_536usize)?.max(1),
            analytics_memory_mb: env.number_or("HERMES_ANALYTICS_MEMORY_MB", 64u64)?.max(16),
            redis: RedisConfig::from_env(env)?,
        })
    }

    pub fn backend(&self, name: &str) -> Option<&BackendConfig> {
        self.backends.iter().find(|b| b.name == name)
    }

    /// Price of one model on one backend: policies/ per model first, then the backend's own.
    pub fn price(&self, backend: &BackendConfig, model: &str) -> ModelPrice {
        if !backend.kind.is_paid() {
            return ModelPrice::FREE;
        }
        self.policies.price(model).unwrap_or(backend.price)
    }

    /// A human summary for `hermes check-config`; keys are shown only as set/unset.
    pub fn describe(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "listen            {}{}",
            self.listen,
            self.tls.as_ref().map_or(String::new(), |(cert, _)| format!(" (HTTPS, certificate {})", cert.display()))
        );
        let _ = writeln!(
            out,
            "analytics         {} (content {}, queue {})",
            self.db_path.display(),
            if self.log_content { "stored" } else { "not stored" },
            self.analytics_queue
        );
        let _ = writeln!(
            out,
            "classifier        {}; implicit feedback {}",
            if self.policies.classifier.is_some() { "fitted (policies classifier.bin)" } else { "shipped corpus" },
            match (&self.policies.implicit_feedback, self.implicit_feedback) {
                (Some(p), true) => format!("on ({} phrases, rating {})", p.negative.len(), p.rating),
                (None, true) => "off (no [implicit_feedback] in routing.toml)".to_string(),
                (_, false) => "off (HERMES_IMPLICIT_FEEDBACK)".to_string(),
            }
        );
        let _ = writeln!(
            out,
            "client auth       {}",
            if self.api_keys.is_empty() { "open (HERMES_API_KEYS unset)".to_string() } else { format!("{} key(s)", self.api_keys.len()) }
        );
        let _ = writeln!(out, "primary/fallback  {} / {}", self.primary.as_deref().unwrap_or("-"), self.fallback.as_deref().unwrap_or("-"));
        let _ = writeln!(
            out,
            "failover          {} (max {} attempts, {}, backoff capped at {:?})",
            if self.failover.enabled { "on" } else { "off" },
            self.failover.max_attempts,
            self.failover.order.describe(),
            self.failover.max_delay
        );
        let r = &self.routing;
        let _ = writeln!(
            out,
            "routing           {} by default, at most {}¢ a job, min quality {}, max response time {}",
            r.criteria.as_str(),
            r.max_cost_per_job_cents,
            r.min_quality,
            r.max_response_time.map_or("none".to_string(), |d| format!("{}s", d.as_secs_f64()))
        );
        let mut jobs: Vec<String> = r.job_type_backends.iter().map(|(j, b)| format!("{} → {b}", j.as_str())).collect();
        jobs.sort();
        let _ = writeln!(out, "job-type routing  {}", if jobs.is_empty() { "off".to_string() } else { jobs.join(", ") });
        let _ = writeln!(out, "load balancing    {}", r.balancing.map_or("off".to_string(), |b| format!("{b:?}")));
        let mut shares: Vec<String> = r.traffic_shares.iter().map(|(b, s)| format!("{b} {:.0}%", s * 100.0)).collect();
        shares.sort();
        let _ = writeln!(out, "traffic shares    {}", if shares.is_empty() { "none".to_string() } else { shares.join(", ") });
        let _ = writeln!(out, "client limit      {}", r.client_rate_limit.map_or("none".to_string(), |n| format!("{n} requests/minute per key")));
        let _ = writeln!(out, "backends:");
        for b in &self.backends {
            let _ = writeln!(
                out,
                "  {:<14} {:<10} {:<40} key={} timeout={:?}",
                b.name,
                b.kind.as_str(),
                redact_url(&b.base_url),
                if b.api_key.is_some() { "set" } else { "unset" },
                b.timeout
            );
            for m in &b.models {
                let p = self.price(b, m);
                let _ = writeln!(out, "      model {:<36} ${}/M in, ${}/M out", m, p.input_per_mtok, p.output_per_mtok);
            }
        }
        out
    }
}

/// A URL fit to show: credentials in it and its query are hidden.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if !u.username().is_empty() || u.password().is_some() {
                let _ = u.set_username("***");
                let _ = u.set_password(None);
            }
            if u.query().is_some() {
                u.set_query(Some("***"));
            }
            u.to_string().trim_end_matches('/').to_string()
        }
        Err(_) => "***".into(),
    }
}

/// `policies/` as given on the command line must exist; the default folder may be absent.
pub(crate) fn read_optional(path: &Path, required: bool) -> Result<Option<String>, ConfigError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
        Err(e) => Err(ConfigError::new(path.display().to_string(), e.to_string())),
    }
}
